/* domains.c - the NVLink domain map: node name -> domain name.
 *
 * Reads Slurm's topology.conf in block syntax (BlockName=b1 Nodes=...: each block is a domain) or
 * tree syntax (each leaf SwitchName=s1 Nodes=... is a domain; switches of switches are ignored),
 * and a plain two-column "node domain" file (node may be a hostlist).  '#' starts a comment and a
 * trailing '\' continues a line, as in slurm.conf.  Keys are case-insensitive, as Slurm reads them.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plan_int.h"

struct mt_domains {
	struct mt_strmap map; /* node name -> index into node_dom */
	struct mt_strmap dmap; /* domain name -> index into dnames */
	char **nodes;         /* owned node names */
	int *node_dom;
	int n_nodes, cap_nodes;
	size_t bytes;         /* node name lengths + 1: the whole map stays within one hostlist's caps */
	char **dnames;
	int n_dn, cap_dn;
};

void mt_domains_free(struct mt_domains *d)
{
	if (!d)
		return;
	mt_strmap_free(&d->map);
	mt_strmap_free(&d->dmap);
	for (int i = 0; i < d->n_nodes; i++)
		free(d->nodes[i]);
	for (int i = 0; i < d->n_dn; i++)
		free(d->dnames[i]);
	free(d->nodes);
	free(d->node_dom);
	free(d->dnames);
	free(d);
}

const char *mt_domains_lookup(const struct mt_domains *d, const char *node)
{
	if (!d || !node)
		return NULL;
	int i = mt_strmap_get(&d->map, node);
	return i < 0 ? NULL : d->dnames[d->node_dom[i]];
}

int mt_domains_count(const struct mt_domains *d)
{
	return d ? d->n_dn : 0;
}

int mt_domains_nodes(const struct mt_domains *d)
{
	return d ? d->n_nodes : 0;
}

static int add_domain(struct mt_domains *d, const char *name)
{
	int have = mt_strmap_get(&d->dmap, name);
	if (have >= 0)
		return have;
	if (d->n_dn == d->cap_dn) {
		int cap = d->cap_dn ? d->cap_dn * 2 : 16;
		char **nn = realloc(d->dnames, sizeof(char *) * (size_t)cap);
		if (!nn)
			return MT_ENOMEM;
		d->dnames = nn;
		d->cap_dn = cap;
	}
	size_t n = strlen(name) + 1;
	if (!(d->dnames[d->n_dn] = malloc(n)))
		return MT_ENOMEM;
	memcpy(d->dnames[d->n_dn], name, n);
	if (mt_strmap_put(&d->dmap, d->dnames[d->n_dn], d->n_dn) < 0) {
		free(d->dnames[d->n_dn]);
		return MT_ENOMEM;
	}
	return d->n_dn++;
}

/* Adds every node of hostlist `expr` to domain `dom`. */
static int add_nodes(struct mt_domains *d, const char *path, int line, const char *expr, const char *dom, char *err,
		     size_t errlen)
{
	char **names;
	int n, rc;
	char e2[MT_ERRLEN];
	if ((rc = mt_hostlist_expand(expr, &names, &n, e2, sizeof(e2))))
		return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: %s", path, line, e2);
	size_t bytes = 0;
	for (int k = 0; k < n; k++)
		bytes += strlen(names[k]) + 1;
	if (d->n_nodes + (long long)n > MT_HOSTLIST_MAX_NAMES || d->bytes + bytes > MT_HOSTLIST_MAX_BYTES) {
		mt_hostlist_free(names, n);
		return mt_seterr(err, errlen, MT_EPARSE,
				 "%s:%d: the domain map would hold more than %d node names or %d MiB of them (the "
				 "limits of one hostlist hold for the whole map)",
				 path, line, MT_HOSTLIST_MAX_NAMES, MT_HOSTLIST_MAX_BYTES >> 20);
	}
	int di = add_domain(d, dom);
	if (di < 0) {
		mt_hostlist_free(names, n);
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	}
	if (d->n_nodes + n > d->cap_nodes) {
		int cap = d->cap_nodes ? d->cap_nodes : 64;
		while (cap < d->n_nodes + n)
			cap *= 2;
		char **nn = realloc(d->nodes, sizeof(char *) * (size_t)cap);
		if (nn)
			d->nodes = nn;
		int *nd = realloc(d->node_dom, sizeof(int) * (size_t)cap);
		if (nd)
			d->node_dom = nd;
		if (!nn || !nd) {
			mt_hostlist_free(names, n);
			return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		}
		d->cap_nodes = cap;
	}
	rc = 0;
	int k;
	for (k = 0; k < n; k++) {
		int idx = mt_strmap_put(&d->map, names[k], d->n_nodes);
		if (idx < 0) {
			rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
			break;
		}
		if (idx != d->n_nodes) {
			rc = mt_seterr(err, errlen, MT_EPARSE, "%s:%d: node '%s' is already in domain '%s'", path,
					 line, names[k], d->dnames[d->node_dom[idx]]);
			break;
		}
		d->nodes[d->n_nodes] = names[k]; /* the map borrows the name we now own */
		d->node_dom[d->n_nodes++] = di;
		d->bytes += strlen(names[k]) + 1;
		names[k] = NULL;
	}
	mt_hostlist_free(names, n);
	return rc;
}

/* One logical line (comments and continuations already removed). */
static int parse_line(struct mt_domains *d, const char *path, int line, char *text, char *err, size_t errlen)
{
	char *tok[64];
	int nt = 0;
	for (char *s = text; *s;) {
		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		if (nt == 64)
			return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: too many words on one line", path, line);
		tok[nt++] = s;
		while (*s && !isspace((unsigned char)*s))
			s++;
		if (*s)
			*s++ = '\0';
	}
	if (!nt)
		return 0;
	if (!strchr(tok[0], '=')) {
		if (nt != 2)
			return mt_seterr(err, errlen, MT_EPARSE,
					   "%s:%d: expected 'NODE DOMAIN' or topology.conf 'BlockName=... Nodes=...' / "
					   "'SwitchName=... Nodes=...', got %d words",
					   path, line, nt);
		return add_nodes(d, path, line, tok[0], tok[1], err, errlen);
	}
	const char *block = NULL, *sw = NULL, *nodes = NULL, *switches = NULL;
	for (int i = 0; i < nt; i++) {
		char *eq = strchr(tok[i], '=');
		if (!eq)
			return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: '%s' is not KEY=VALUE", path, line, tok[i]);
		*eq = '\0';
		const char *k = tok[i], *v = eq + 1;
		if (!*v)
			return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: %s= has no value", path, line, k);
		if (!strcasecmp(k, "BlockName"))
			block = v;
		else if (!strcasecmp(k, "SwitchName"))
			sw = v;
		else if (!strcasecmp(k, "Nodes"))
			nodes = v;
		else if (!strcasecmp(k, "Switches"))
			switches = v;
		else if (strcasecmp(k, "LinkSpeed") && strcasecmp(k, "BlockSizes"))
			return mt_seterr(err, errlen, MT_EPARSE,
					   "%s:%d: unknown key '%s' (valid: BlockName, SwitchName, Nodes, Switches, "
					   "LinkSpeed, BlockSizes)",
					   path, line, k);
	}
	if (block && sw)
		return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: BlockName and SwitchName on one line", path, line);
	if (block) {
		if (!nodes)
			return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: BlockName=%s has no Nodes=", path, line, block);
		return add_nodes(d, path, line, nodes, block, err, errlen);
	}
	if (sw) {
		if (nodes && switches)
			return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: SwitchName=%s has both Nodes= and Switches=",
					   path, line, sw);
		if (!nodes && !switches)
			return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: SwitchName=%s has neither Nodes= nor Switches=",
					   path, line, sw);
		return nodes ? add_nodes(d, path, line, nodes, sw, err, errlen) : 0;
	}
	if (nodes || switches)
		return mt_seterr(err, errlen, MT_EPARSE, "%s:%d: Nodes=/Switches= without BlockName= or SwitchName=",
				   path, line);
	return 0; /* BlockSizes= / LinkSpeed= alone */
}

struct mt_domains *mt_domains_new(void)
{
	struct mt_domains *d = calloc(1, sizeof(*d));
	if (d && (mt_strmap_init(&d->map, 64) || mt_strmap_init(&d->dmap, 16))) {
		mt_domains_free(d);
		d = NULL;
	}
	return d;
}

int mt_domains_add(struct mt_domains *d, const char *nodes, const char *domain, char *err, size_t errlen)
{
	if (!d || !nodes || !domain || !*domain)
		return mt_seterr(err, errlen, MT_EINVAL, "domain map entry needs nodes and a domain name");
	return add_nodes(d, "map", 0, nodes, domain, err, errlen);
}

int mt_domains_load(const char *path, struct mt_domains **out, char *err, size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(path, "r");
	if (!f)
		return mt_seterr(err, errlen, MT_ENOENT, "cannot open domain map '%s': %m", path);
	struct mt_domains *d = calloc(1, sizeof(*d));
	char *logical = NULL, *buf = NULL;
	size_t cap = 0, llen = 0, lcap = 0;
	int rc = 0, lineno = 0, start = 0;
	if (!d || mt_strmap_init(&d->map, 64) || mt_strmap_init(&d->dmap, 16)) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto out;
	}
	ssize_t n;
	while ((n = getline(&buf, &cap, f)) >= 0) {
		lineno++;
		if (!llen)
			start = lineno;
		if (memchr(buf, '\0', (size_t)n)) {
			rc = mt_seterr(err, errlen, MT_EPARSE, "%s:%d: binary data in a text file", path, lineno);
			goto out;
		}
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		size_t len = strlen(buf);
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		bool cont = !hash && len && buf[len - 1] == '\\';
		if (cont) /* "Nodes=a[1-2],\ + b3" joins to "Nodes=a[1-2],b3"; else words stay apart */
			buf[len - 1] = len > 1 && (buf[len - 2] == ',' || buf[len - 2] == '=') ? '\0' : ' ';
		char *text = buf;
		if (llen) /* a continuation line: its indentation is layout, not content */
			while (*text == ' ' || *text == '\t')
				text++;
		len = strlen(text);
		if (llen + len + 2 > lcap) {
			lcap = (llen + len + 2) * 2;
			char *nl = realloc(logical, lcap);
			if (!nl) {
				rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
				goto out;
			}
			logical = nl;
		}
		memcpy(logical + llen, text, len);
		llen += len;
		logical[llen] = '\0';
		if (cont)
			continue;
		if ((rc = parse_line(d, path, start, logical, err, errlen)))
			goto out;
		llen = 0;
	}
	if (llen && (rc = parse_line(d, path, start, logical, err, errlen)))
		goto out;
	if (!d->n_nodes)
		rc = mt_seterr(err, errlen, MT_EPARSE,
				 "domain map '%s' names no nodes (expected 'BlockName=... Nodes=...', leaf "
				 "'SwitchName=... Nodes=...' or 'NODE DOMAIN' lines)",
				 path);
out:
	fclose(f);
	free(buf);
	free(logical);
	if (rc)
		mt_domains_free(d);
	else
		*out = d;
	return rc;
}
