/* hostlist.c - expands Slurm hostlist expressions ("gb-r[01-04]-n[01-18],login1").
 *
 * Items are separated by commas (outside brackets) or white space.  An item is literal text and
 * bracket groups of numbers and ranges; several groups expand as nested loops, the first group
 * varying slowest, exactly as Slurm orders them.  A range whose low bound has a leading zero is
 * zero-padded to that width ("[08-10]" -> 08 09 10).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "mt_common.h"

#define HL_MAX_GROUPS 8
#define HL_MAX_NAME 256

struct range {
	unsigned long lo, hi;
	int width; /* zero-pad width, 0 = none */
};

struct group {
	size_t lit_off, lit_len; /* literal text before this group, as offsets into the item */
	struct range *r;
	int nr;
	unsigned long count; /* values in the group */
};

static bool name_char(int c)
{
	return isalnum(c) || c == '-' || c == '_' || c == '.';
}

static int parse_num(const char **p, unsigned long *v, int *digits)
{
	const char *s = *p;
	unsigned long x = 0;
	int d = 0;
	while (isdigit((unsigned char)*s)) {
		if (d >= 9)
			return -1; /* keeps every value below 10^9: no overflow, sane names */
		x = x * 10 + (unsigned long)(*s - '0');
		s++;
		d++;
	}
	if (!d)
		return -1;
	*p = s;
	*v = x;
	*digits = d;
	return 0;
}

/* One message for both caps: memory is what they bound, and a caller may hit either. */
static int too_big(const char *expr, char *err, size_t errlen)
{
	return mt_seterr(err, errlen, MT_EPARSE,
			 "hostlist '%.80s%s' expands to more than %d names or %d MiB of names (the limits of one "
			 "list)", expr, strlen(expr) > 80 ? "..." : "", MT_HOSTLIST_MAX_NAMES, MT_HOSTLIST_MAX_BYTES >> 20);
}

/* Parses the inside of one bracket group, s points after '['; on success *end points after ']'. */
static int parse_group(const char *expr, const char *s, const char **end, struct group *g, char *err,
		       size_t errlen)
{
	int cap = 4;
	g->r = malloc(sizeof(*g->r) * (size_t)cap);
	g->nr = 0;
	g->count = 0;
	if (!g->r)
		return MT_ENOMEM;
	for (;;) {
		struct range r;
		int dlo, dhi;
		const char *at = s;
		if (parse_num(&s, &r.lo, &dlo))
			return mt_seterr(err, errlen, MT_EPARSE,
				    "hostlist '%s': expected a number at column %d (ranges look like [01-18,20])",
				    expr, (int)(at - expr) + 1);
		r.hi = r.lo;
		r.width = (dlo > 1 && at[0] == '0') ? dlo : 0;
		if (*s == '-') {
			s++;
			at = s;
			if (parse_num(&s, &r.hi, &dhi))
				return mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': expected a number after '-' at column %d",
					    expr, (int)(at - expr) + 1);
			if (r.hi < r.lo)
				return mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': range %lu-%lu runs backwards", expr,
					    r.lo, r.hi);
		}
		if (g->nr == cap) {
			cap *= 2;
			struct range *nr = realloc(g->r, sizeof(*g->r) * (size_t)cap);
			if (!nr)
				return MT_ENOMEM;
			g->r = nr;
		}
		g->r[g->nr++] = r;
		g->count += r.hi - r.lo + 1;
		if (g->count > MT_HOSTLIST_MAX_NAMES)
			return too_big(expr, err, errlen);
		if (*s == ',') {
			s++;
			continue;
		}
		if (*s == ']') {
			*end = s + 1;
			return 0;
		}
		if (!*s)
			return mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': '[' without a closing ']'", expr);
		return mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': unexpected '%c' at column %d inside brackets", expr,
			    *s, (int)(s - expr) + 1);
	}
}

static void free_groups(struct group *g, int n)
{
	for (int i = 0; i < n; i++)
		free(g[i].r);
}

/* Value number k (0-based) of group g, written into buf. */
static int group_value(const struct group *g, unsigned long k, char *buf, size_t len)
{
	for (int i = 0; i < g->nr; i++) {
		unsigned long n = g->r[i].hi - g->r[i].lo + 1;
		if (k < n)
			return snprintf(buf, len, "%0*lu", g->r[i].width, g->r[i].lo + k);
		k -= n;
	}
	return -1;
}

#define PUSH_FULL 1 /* push(): the byte cap is reached */
struct out {
	char **names;
	int n, cap;
	size_t bytes; /* name lengths + 1, against MT_HOSTLIST_MAX_BYTES */
};

static int push(struct out *o, const char *name, size_t len)
{
	if (o->bytes + len + 1 > MT_HOSTLIST_MAX_BYTES)
		return PUSH_FULL;
	o->bytes += len + 1;
	if (o->n == o->cap) {
		int cap = o->cap ? o->cap * 2 : 64;
		char **nn = realloc(o->names, sizeof(*nn) * (size_t)cap);
		if (!nn)
			return MT_ENOMEM;
		o->names = nn;
		o->cap = cap;
	}
	char *s = malloc(len + 1);
	if (!s)
		return MT_ENOMEM;
	memcpy(s, name, len);
	s[len] = '\0';
	o->names[o->n++] = s;
	return 0;
}

/* Expands one item [b, e) of expr. */
static int expand_item(const char *expr, const char *b, const char *e, struct out *o, char *err,
		       size_t errlen)
{
	struct group g[HL_MAX_GROUPS];
	int ng = 0, rc = 0;
	const char *s = b, *lit = b;
	unsigned long total = 1;
	while (s < e) {
		if (*s == '[') {
			if (ng == HL_MAX_GROUPS) {
				rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': more than %d bracket groups in one name",
					  expr, HL_MAX_GROUPS);
				goto out;
			}
			g[ng].lit_off = (size_t)(lit - b);
			g[ng].lit_len = (size_t)(s - lit);
			const char *end = s;
			rc = parse_group(expr, s + 1, &end, &g[ng], err, errlen);
			ng++;
			if (rc)
				goto out;
			total *= g[ng - 1].count;
			if (total > MT_HOSTLIST_MAX_NAMES) {
				rc = too_big(expr, err, errlen);
				goto out;
			}
			s = lit = end;
			continue;
		}
		if (!name_char((unsigned char)*s)) {
			rc = mt_seterr(err, errlen, MT_EPARSE,
				  "hostlist '%s': unexpected '%c' at column %d (names use letters, digits, - _ .)",
				  expr, *s, (int)(s - expr) + 1);
			goto out;
		}
		s++;
	}
	/* both caps checked before expanding: the shortest name of the item times the count is a lower
	 * bound of its bytes (the digits of each group's low bound, padded, are the fewest it writes) */
	size_t shortest = (size_t)(e - lit);
	for (int i = 0; i < ng; i++) {
		size_t fewest = SIZE_MAX;
		for (int k = 0; k < g[i].nr; k++) {
			char d[24];
			size_t l = (size_t)snprintf(d, sizeof(d), "%0*lu", g[i].r[k].width, g[i].r[k].lo);
			fewest = l < fewest ? l : fewest;
		}
		shortest += g[i].lit_len + fewest;
	}
	if ((unsigned long)o->n + total > MT_HOSTLIST_MAX_NAMES ||
	    o->bytes + total * (shortest + 1) > MT_HOSTLIST_MAX_BYTES) {
		rc = too_big(expr, err, errlen);
		goto out;
	}
	/* odometer over the groups, last group fastest */
	unsigned long idx[HL_MAX_GROUPS] = {0};
	const char *tail = lit;
	size_t tail_len = (size_t)(e - lit);
	for (;;) {
		char name[HL_MAX_NAME];
		size_t len = 0;
		for (int i = 0; i < ng; i++) {
			if (len + g[i].lit_len + 12 >= sizeof(name))
				goto toolong;
			memcpy(name + len, b + g[i].lit_off, g[i].lit_len);
			len += g[i].lit_len;
			len += (size_t)group_value(&g[i], idx[i], name + len, sizeof(name) - len);
		}
		if (len + tail_len >= sizeof(name))
			goto toolong;
		memcpy(name + len, tail, tail_len);
		len += tail_len;
		if ((rc = push(o, name, len))) {
			if (rc == PUSH_FULL)
				rc = too_big(expr, err, errlen);
			else
				rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory expanding hostlist");
			goto out;
		}
		int i = ng - 1;
		while (i >= 0 && ++idx[i] == g[i].count)
			idx[i--] = 0;
		if (i < 0)
			break;
	}
	goto out;
toolong:
	rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': a name is longer than %d characters", expr, HL_MAX_NAME - 1);
out:
	free_groups(g, ng);
	return rc;
}

int mt_hostlist_expand(const char *expr, char ***names, int *count, char *err, size_t errlen)
{
	struct out o = {0};
	int rc = 0;
	*names = NULL;
	*count = 0;
	if (!expr)
		return mt_seterr(err, errlen, MT_EPARSE, "hostlist is missing");
	const char *s = expr;
	for (;;) {
		while (*s == ',' || isspace((unsigned char)*s)) {
			if (*s == ',' && (s == expr || s[1] == ',' || s[1] == '\0')) {
				rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': empty name at column %d", expr,
					  (int)(s - expr) + 1);
				goto fail;
			}
			s++;
		}
		if (!*s)
			break;
		const char *b = s;
		int depth = 0;
		while (*s && (depth || (*s != ',' && !isspace((unsigned char)*s)))) {
			if (*s == '[') {
				if (depth) {
					rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': nested '[' at column %d", expr,
						  (int)(s - expr) + 1);
					goto fail;
				}
				depth = 1;
			} else if (*s == ']') {
				if (!depth) {
					rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': ']' without '[' at column %d", expr,
						  (int)(s - expr) + 1);
					goto fail;
				}
				depth = 0;
			}
			s++;
		}
		if (depth) {
			rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s': '[' without a closing ']'", expr);
			goto fail;
		}
		if ((rc = expand_item(expr, b, s, &o, err, errlen)))
			goto fail;
	}
	if (!o.n) {
		rc = mt_seterr(err, errlen, MT_EPARSE, "hostlist '%s' names no hosts", expr);
		goto fail;
	}
	*names = o.names;
	*count = o.n;
	return 0;
fail:
	mt_hostlist_free(o.names, o.n);
	return rc;
}

void mt_hostlist_free(char **names, int count)
{
	if (!names)
		return;
	for (int i = 0; i < count; i++)
		free(names[i]);
	free(names);
}
