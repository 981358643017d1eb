/* node_xml.c - a small strict XML tokenizer for topology files (no libxml2 dependency).
 *
 * Builds an element tree (NCCL topology files) or only checks that a document is well formed and
 * calls a hook per element (hwloc files, before hwloc's own parser sees them: hwloc 2.9 crashes or
 * leaks on some broken files).  Errors are one line: "FILE: line N: what (not a valid KIND)".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

#define MAX_ELEMS 1000000

void mt_xml_free_attrs(struct mt_xel *e)
{
	for (int i = 0; i < e->nattr; i++)
		free(e->an[i]), free(e->av[i]);
	e->nattr = 0;
}

void mt_xml_free(struct mt_xel *e)
{
	while (e) {
		struct mt_xel *next = e->next;
		mt_xml_free(e->first);
		mt_xml_free_attrs(e);
		free(e);
		e = next;
	}
}

const char *mt_xml_attr(const struct mt_xel *e, const char *name)
{
	for (int i = 0; i < e->nattr; i++)
		if (!strcmp(e->an[i], name))
			return e->av[i];
	return NULL;
}

int mt_xml_err(struct mt_xml *ps, const char *what)
{
	return mt_seterr(ps->err, ps->errlen, MT_EPARSE, "%s: line %d: %s (not a valid %s)", ps->src, ps->line,
			 what, ps->kind);
}

static void skip_ws(struct mt_xml *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\r' || *ps->p == '\n')) {
		ps->line += *ps->p == '\n';
		ps->p++;
	}
}

static bool name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
	       (!first && ((c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':'));
}

static size_t read_name(struct mt_xml *ps, char *buf, size_t len)
{
	size_t i = 0;
	while (ps->p < ps->end && name_char(*ps->p, i == 0)) {
		if (i + 1 >= len)
			return 0;
		buf[i++] = *ps->p++;
	}
	buf[i] = 0;
	return i;
}

/* Attribute value with the five predefined entities decoded; NULL on error. */
/* Room for an attribute: malloc'ed when building a tree, else in the arena (reset per element),
 * so that checking a large hwloc file costs no allocation per attribute. */
static char *scratch(struct mt_xml *ps, size_t n)
{
	if (!ps->arena)
		return malloc(n);
	if (ps->arena_used + n > ps->arena_len)
		return NULL;
	char *p = ps->arena + ps->arena_used;
	ps->arena_used += n;
	return p;
}

static void release(struct mt_xml *ps, struct mt_xel *e)
{
	if (ps->arena) {
		e->nattr = 0;
		ps->arena_used = 0;
	}
}

static char *read_value(struct mt_xml *ps)
{
	char q = *ps->p;
	if (q != '"' && q != '\'')
		return NULL;
	const char *s = ++ps->p;
	while (ps->p < ps->end && *ps->p != q && *ps->p != '<')
		ps->line += *ps->p++ == '\n';
	if (ps->p >= ps->end || *ps->p != q)
		return NULL;
	size_t n = (size_t)(ps->p - s);
	char *v = scratch(ps, n + 1), *w = v;
	if (!v)
		return NULL;
	for (const char *r = s; r < ps->p;) {
		if (*r != '&') {
			*w++ = *r++;
			continue;
		}
		static const struct { const char *e; char c; } ents[] = {
			{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
		size_t k;
		for (k = 0; k < 5; k++)
			if ((size_t)(ps->p - r) >= strlen(ents[k].e) && !strncmp(r, ents[k].e, strlen(ents[k].e)))
				break;
		if (k == 5) { /* &#NN; / &#xHH; (hwloc escapes control characters so) */
			const char *semi = memchr(r, ';', (size_t)(ps->p - r));
			if (r + 2 >= ps->p || r[1] != '#' || !semi || semi - r > 12) {
				if (!ps->arena)
					free(v);
				return NULL;
			}
			*w++ = '?';
			r = semi + 1;
			continue;
		}
		*w++ = ents[k].c;
		r += strlen(ents[k].e);
	}
	*w = 0;
	ps->p++;
	return v;
}

static int skip_until(struct mt_xml *ps, const char *endmark)
{
	size_t l = strlen(endmark);
	while (ps->p + l <= ps->end && strncmp(ps->p, endmark, l))
		ps->line += *ps->p++ == '\n';
	if (ps->p + l > ps->end)
		return -1;
	ps->p += l;
	return 0;
}

/* Parses the whole document; with root != NULL into a tree, else only checks it is well formed
 * (the hwloc reader uses that, so that hwloc's own parser never sees a broken file). */
static int parse_doc(struct mt_xml *ps, struct mt_xel **root)
{
	struct mt_xel *cur = NULL;
	char stack[MT_XML_MAX_DEPTH][32];
	int depth = 0;
	bool seen_root = false;
	if (root)
		*root = NULL;
	for (;;) {
		skip_ws(ps);
		if (ps->p >= ps->end)
			break;
		if (*ps->p != '<') {
			/* hwloc keeps numbers as element text (distances); NCCL files have none */
			char word[40];
			if (depth)
				snprintf(word, sizeof(word), " %s ", stack[depth - 1]);
			if (root || !depth || !ps->text_in || !strstr(ps->text_in, word))
				return mt_xml_err(ps, "unexpected text outside tags");
			for (; ps->p < ps->end && *ps->p != '<'; ps->p++) {
				char c = *ps->p;
				ps->line += c == '\n';
				if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				      c == ':' || c == '_' || c == '-' || c == '+' || c == '/' || c == '=' || c == ' ' ||
				      c == '\n' || c == '\t' || c == '\r'))
					return mt_xml_err(ps, "unexpected character in element text");
			}
			continue;
		}
		if (!strncmp(ps->p, "<?", 2)) {
			if (depth || seen_root || skip_until(ps, "?>") < 0)
				return mt_xml_err(ps, "misplaced or unterminated <? ?>");
			continue;
		}
		if (!strncmp(ps->p, "<!--", 4)) {
			ps->p += 4;
			if (skip_until(ps, "-->") < 0)
				return mt_xml_err(ps, "unterminated comment");
			continue;
		}
		if (!strncmp(ps->p, "<!", 2)) {
			if (depth || seen_root || skip_until(ps, ">") < 0)
				return mt_xml_err(ps, "misplaced or unterminated <!...>");
			continue;
		}
		if (ps->p + 1 < ps->end && ps->p[1] == '/') { /* end tag */
			char name[32];
			ps->p += 2;
			if (!read_name(ps, name, sizeof(name)) || !depth || strcmp(name, stack[depth - 1]))
				return mt_xml_err(ps, "mismatched end tag");
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '>')
				return mt_xml_err(ps, "bad end tag");
			ps->p++;
			if (cur)
				cur = cur->parent;
			depth--;
			continue;
		}
		/* start tag */
		ps->p++;
		if (!depth && seen_root)
			return mt_xml_err(ps, "content after the root element");
		if (++ps->nel > (ps->max_elems > 0 ? ps->max_elems : MAX_ELEMS)) {
			char msg[64];
			snprintf(msg, sizeof(msg), "more than %d elements", ps->max_elems > 0 ? ps->max_elems : MAX_ELEMS);
			return mt_xml_err(ps, msg);
		}
		if (depth >= MT_XML_MAX_DEPTH)
			return mt_xml_err(ps, "elements nested too deeply");
		seen_root = true;
		struct mt_xel tmp, *e = &tmp;
		memset(&tmp, 0, sizeof(tmp));
		if (root) {
			if (!(e = calloc(1, sizeof(*e))))
				return mt_seterr(ps->err, ps->errlen, MT_ENOMEM, "out of memory");
			e->parent = cur;
			if (!cur)
				*root = e;
			else if (cur->last)
				cur->last = cur->last->next = e;
			else
				cur->first = cur->last = e;
		}
		e->line = ps->line;
		if (!read_name(ps, e->tag, sizeof(e->tag)))
			return mt_xml_err(ps, "bad or too long element name");
		for (;;) {
			const char *before = ps->p;
			skip_ws(ps);
			if (ps->p >= ps->end)
				{
				release(ps, e);
				return mt_xml_err(ps, "truncated start tag");
			}
			if (*ps->p == '/' || *ps->p == '>')
				break;
			char an[32];
			if (ps->p == before || !read_name(ps, an, sizeof(an)))
				{
				release(ps, e);
				return mt_xml_err(ps, "bad attribute");
			}
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '=')
				{
				release(ps, e);
				return mt_xml_err(ps, "attribute without value");
			}
			ps->p++;
			skip_ws(ps);
			if (ps->p >= ps->end)
				{
				release(ps, e);
				return mt_xml_err(ps, "truncated attribute");
			}
			if (e->nattr >= MT_XML_MAX_ATTR || mt_xml_attr(e, an)) {
				release(ps, e);
				return mt_xml_err(ps, "too many or repeated attributes");
			}
			char *v = read_value(ps);
			char *n = v ? scratch(ps, strlen(an) + 1) : NULL;
			if (!v || !n) {
				if (!ps->arena)
					free(v);
				release(ps, e);
				return v ? mt_seterr(ps->err, ps->errlen, MT_ENOMEM, "out of memory")
					 : mt_xml_err(ps, "bad attribute value");
			}
			strcpy(n, an);
			e->an[e->nattr] = n;
			e->av[e->nattr++] = v;
		}
		if (ps->cb) {
			int rc = ps->cb(ps, e);
			if (rc < 0) {
				release(ps, e);
				return rc;
			}
		}
		release(ps, e);
		if (*ps->p == '/') {
			if (ps->p + 1 >= ps->end || ps->p[1] != '>')
				return mt_xml_err(ps, "bad empty-element tag");
			ps->p += 2;
		} else {
			ps->p++;
			snprintf(stack[depth++], sizeof(stack[0]), "%s", e->tag);
			if (root)
				cur = e;
		}
	}
	if (depth)
		return mt_xml_err(ps, "truncated: unclosed elements at end of file");
	if (!seen_root)
		return mt_xml_err(ps, "no root element");
	return MT_OK;
}




int mt_xml_parse(struct mt_xml *ps, struct mt_xel **root)
{
	ps->arena = NULL;
	ps->arena_used = 0;
	if (!root) {
		/* every element's names and values together are shorter than the document */
		ps->arena_len = (size_t)(ps->end - ps->p) + 2 * MT_XML_MAX_ATTR + 1;
		if (!(ps->arena = malloc(ps->arena_len)))
			return mt_seterr(ps->err, ps->errlen, MT_ENOMEM, "out of memory");
	}
	int rc = parse_doc(ps, root);
	free(ps->arena);
	ps->arena = NULL;
	return rc;
}
