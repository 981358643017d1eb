/* node_nccl.c - reads an NCCL topology XML (the NCCL_TOPO_FILE / NCCL_TOPO_DUMP_FILE format).
 *
 * Many cloud users have only such a file.  A small strict tokenizer builds an element tree (no
 * dependency on libxml2); elements and attributes are checked against what NCCL writes, so a typo
 * or a file of another kind is reported rather than half-read.  Mapping to the node model:
 *   <cpu numaid affinity>  NUMA node and its CPUs (hex mask, 32-bit groups, most significant first)
 *   <pci class=0x03....>   GPU (vendor attribute, else NVIDIA unless <gpu gcn=...> says AMD)
 *   <pci><nic><net name>   one RDMA NIC per <net>; a <pci class=0x0207..> alone = InfiniBand NIC
 *                          named by its bus id; <pci class=0x0200..> alone = plain Ethernet NIC
 *   <pci class=0x0604..>   a PCIe switch, as NCCL folds each switch into one element
 *   <gpu><nvlink target count tclass>  NVLink links to a GPU (tclass 0x03..) or NVSwitch (0x0680..)
 * PCIe relations: one switch between two devices = PIX, more = PXB, through the CPU = PHB, across
 * <cpu> elements = SYS (NCCL's file has no host-bridge level, so NODE never appears).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

#define MAX_ATTR 24
#define MAX_DEPTH 64
#define MAX_ELEMS 200000

struct xel {
	char tag[16];
	int line;
	int nattr;
	char *an[MAX_ATTR], *av[MAX_ATTR];
	struct xel *parent, *first, *last, *next;
};

struct parser {
	const char *p, *end, *src;
	int line, nel;
	char *err;
	size_t errlen;
};

static void xel_free(struct xel *e)
{
	while (e) {
		struct xel *next = e->next;
		xel_free(e->first);
		for (int i = 0; i < e->nattr; i++)
			free(e->an[i]), free(e->av[i]);
		free(e);
		e = next;
	}
}

static const char *attr(const struct xel *e, const char *name)
{
	for (int i = 0; i < e->nattr; i++)
		if (!strcmp(e->an[i], name))
			return e->av[i];
	return NULL;
}

static int perr(struct parser *ps, const char *what)
{
	return mt_seterr(ps->err, ps->errlen, MT_EPARSE, "%s: line %d: %s (not a valid NCCL topology XML)", ps->src,
			 ps->line, what);
}

static void skip_ws(struct parser *ps)
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

static size_t read_name(struct parser *ps, char *buf, size_t len)
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
static char *read_value(struct parser *ps)
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
	char *v = malloc(n + 1), *w = v;
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
		if (k == 5) {
			free(v);
			return NULL;
		}
		*w++ = ents[k].c;
		r += strlen(ents[k].e);
	}
	*w = 0;
	ps->p++;
	return v;
}

static int skip_until(struct parser *ps, const char *endmark)
{
	size_t l = strlen(endmark);
	while (ps->p + l <= ps->end && strncmp(ps->p, endmark, l))
		ps->line += *ps->p++ == '\n';
	if (ps->p + l > ps->end)
		return -1;
	ps->p += l;
	return 0;
}

/* Parses the whole document into a tree rooted at *root. */
static int parse(struct parser *ps, struct xel **root)
{
	struct xel *cur = NULL;
	int depth = 0;
	*root = NULL;
	for (;;) {
		skip_ws(ps);
		if (ps->p >= ps->end)
			break;
		if (*ps->p != '<')
			return perr(ps, "unexpected text outside tags");
		if (!strncmp(ps->p, "<?", 2)) {
			if (cur || *root || skip_until(ps, "?>") < 0)
				return perr(ps, "misplaced or unterminated <? ?>");
			continue;
		}
		if (!strncmp(ps->p, "<!--", 4)) {
			ps->p += 4;
			if (skip_until(ps, "-->") < 0)
				return perr(ps, "unterminated comment");
			continue;
		}
		if (!strncmp(ps->p, "<!", 2)) {
			if (cur || *root || skip_until(ps, ">") < 0)
				return perr(ps, "misplaced or unterminated <!...>");
			continue;
		}
		if (ps->p[1] == '/') { /* end tag */
			char name[32];
			ps->p += 2;
			if (!read_name(ps, name, sizeof(name)) || !cur || strcmp(name, cur->tag))
				return perr(ps, "mismatched end tag");
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '>')
				return perr(ps, "bad end tag");
			ps->p++;
			cur = cur->parent;
			depth--;
			continue;
		}
		/* start tag */
		ps->p++;
		if (!cur && *root)
			return perr(ps, "content after the root element");
		if (++ps->nel > MAX_ELEMS || depth >= MAX_DEPTH)
			return perr(ps, "too many or too deeply nested elements");
		struct xel *e = calloc(1, sizeof(*e));
		if (!e)
			return mt_seterr(ps->err, ps->errlen, MT_ENOMEM, "out of memory");
		e->line = ps->line;
		e->parent = cur;
		if (!cur)
			*root = e;
		else if (cur->last)
			cur->last = cur->last->next = e;
		else
			cur->first = cur->last = e;
		if (!read_name(ps, e->tag, sizeof(e->tag)))
			return perr(ps, "bad or too long element name");
		for (;;) {
			const char *before = ps->p;
			skip_ws(ps);
			if (ps->p >= ps->end)
				return perr(ps, "truncated start tag");
			if (*ps->p == '/' || *ps->p == '>')
				break;
			char an[32];
			if (ps->p == before || !read_name(ps, an, sizeof(an)))
				return perr(ps, "bad attribute");
			skip_ws(ps);
			if (ps->p >= ps->end || *ps->p != '=')
				return perr(ps, "attribute without value");
			ps->p++;
			skip_ws(ps);
			if (ps->p >= ps->end)
				return perr(ps, "truncated attribute");
			if (e->nattr >= MAX_ATTR || attr(e, an))
				return perr(ps, "too many or repeated attributes");
			char *v = read_value(ps);
			char *n = mt_strdup(an);
			if (!v || !n) {
				free(v), free(n);
				return perr(ps, "bad attribute value");
			}
			e->an[e->nattr] = n;
			e->av[e->nattr++] = v;
		}
		if (*ps->p == '/') {
			if (ps->p + 1 >= ps->end || ps->p[1] != '>')
				return perr(ps, "bad empty-element tag");
			ps->p += 2;
		} else {
			ps->p++;
			cur = e;
			depth++;
		}
	}
	if (cur)
		return perr(ps, "truncated: unclosed elements at end of file");
	if (!*root)
		return perr(ps, "no root element");
	return MT_OK;
}

/* What NCCL writes (xml.cc / topo dump), plus RCCL's gcn/arch and xgmi; "keep" is legal everywhere. */
static const struct {
	const char *tag, *parents, *attrs;
} schema[] = {
	{"system", "", " version "},
	{"cpu", " system ", " numaid affinity arch vendor familyid modelid host_hash "},
	{"pci", " cpu pci ", " busid class vendor device subsystem_vendor subsystem_device link_speed link_width "},
	{"gpu", " pci ", " dev sm rank gdr gcn arch "},
	{"nvlink", " gpu ", " target count tclass "},
	{"xgmi", " gpu ", " target count tclass "},
	{"c2c", " gpu ", " bw count "},
	{"nic", " pci cpu ", " "},
	{"net", " nic ", " name dev speed port latency guid maxconn gdr coll net gin "},
};

static bool in_list(const char *list, const char *word)
{
	size_t l = strlen(word);
	for (const char *p = strstr(list, word); p; p = strstr(p + 1, word))
		if (p[-1] == ' ' && p[l] == ' ')
			return true;
	return false;
}

static int validate(const struct xel *e, struct parser *ps)
{
	for (; e; e = e->next) {
		size_t k, nk = sizeof(schema) / sizeof(schema[0]);
		for (k = 0; k < nk; k++)
			if (!strcmp(schema[k].tag, e->tag))
				break;
		ps->line = e->line;
		char msg[MT_ERRLEN / 2];
		if (k == nk) {
			snprintf(msg, sizeof(msg), "unknown element <%.20s> (valid: system, cpu, pci, gpu, nvlink, xgmi, c2c, nic, net)",
				 e->tag);
			return perr(ps, msg);
		}
		const char *parent = e->parent ? e->parent->tag : "";
		if (e->parent ? !in_list(schema[k].parents, parent) : k != 0) {
			snprintf(msg, sizeof(msg), "<%s> is not allowed %s%s%s", e->tag, e->parent ? "inside <" : "as root",
				 parent, e->parent ? ">" : "");
			return perr(ps, msg);
		}
		for (int i = 0; i < e->nattr; i++)
			if (strcmp(e->an[i], "keep") && !in_list(schema[k].attrs, e->an[i])) {
				snprintf(msg, sizeof(msg), "unknown attribute '%.24s' on <%s> (valid:%s)", e->an[i], e->tag,
					 schema[k].attrs);
				return perr(ps, msg);
			}
		int rc = validate(e->first, ps);
		if (rc < 0)
			return rc;
	}
	return MT_OK;
}

/* "0000,00000000,000000ff" -> cpu list; NULL on a malformed mask. */
static char *affinity_list(const char *hex, unsigned char *mask, int *count)
{
	memset(mask, 0, MT_MAXCPU);
	int bit = 0;
	*count = 0;
	for (const char *p = hex + strlen(hex); p > hex;) {
		char c = *--p;
		if (c == ',')
			continue;
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (v < 0)
			return NULL;
		for (int b = 0; b < 4; b++, bit++)
			if (v >> b & 1) {
				if (bit >= MT_MAXCPU)
					return NULL;
				mask[bit] = 1;
				(*count)++;
			}
	}
	char *buf = malloc(MT_MAXCPU * 6);
	if (buf && mt_cpulist_format(mask, MT_MAXCPU, buf, MT_MAXCPU * 6) < 0)
		buf[0] = 0;
	return buf;
}

static long hexattr(const struct xel *e, const char *name, long dflt)
{
	const char *v = attr(e, name);
	char *end;
	if (!v || !*v)
		return dflt;
	long x = strtol(v, &end, 16);
	return *end ? -1 : x;
}

/* A device found while walking: the element used for relations, and its node slot. */
struct dev {
	const struct xel *el;
	int cpu; /* index into the node's NUMA list */
};

struct walk {
	struct mt_node *n;
	struct dev *gdev, *ndev;
	int cap_g, cap_n;
	int cpu;
	struct parser *ps;
};

static int grow(void **arr, int *cap, int need, size_t sz)
{
	if (need <= *cap)
		return 0;
	int nc = *cap ? *cap * 2 : 16;
	while (nc < need)
		nc *= 2;
	void *p = realloc(*arr, (size_t)nc * sz);
	if (!p)
		return -1;
	*arr = p;
	*cap = nc;
	return 0;
}

static int add_nic(struct walk *w, const struct xel *el, const char *name, const char *pci, bool rdma,
		   enum mt_link_layer ll, int port)
{
	struct mt_node *n = w->n;
	int cap = w->cap_n;
	if (grow((void **)&n->nics, &cap, n->n_nics + 1, sizeof(*n->nics)) < 0 ||
	    grow((void **)&w->ndev, &w->cap_n, n->n_nics + 1, sizeof(*w->ndev)) < 0)
		return MT_ENOMEM;
	struct mt_nic *c = &n->nics[n->n_nics];
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->pci, sizeof(c->pci), "%s", pci);
	c->rdma = rdma;
	c->link = ll;
	c->ports = port > 0 ? 1 : 0;
	c->numa = n->numa_os[w->cpu];
	c->rail = -1;
	w->ndev[n->n_nics].el = el;
	w->ndev[n->n_nics].cpu = w->cpu;
	n->n_nics++;
	return MT_OK;
}

static int walk_pci(struct walk *w, const struct xel *e)
{
	struct mt_node *n = w->n;
	for (; e; e = e->next) {
		if (!strcmp(e->tag, "nic") && !strcmp(e->parent->tag, "cpu")) { /* no PCI place */
			for (const struct xel *net = e->first; net; net = net->next) {
				const char *nm = attr(net, "name");
				const char *port = attr(net, "port");
				int rc = add_nic(w, net, nm ? nm : "", "", true, MT_LL_UNKNOWN, port ? atoi(port) : 1);
				if (rc < 0)
					return rc;
			}
			continue;
		}
		if (strcmp(e->tag, "pci"))
			continue;
		const char *busid = attr(e, "busid");
		long cls = hexattr(e, "class", 0);
		char pci[MT_PCI_LEN];
		w->ps->line = e->line;
		if (!busid || mt_pci_key(busid) < 0)
			return perr(w->ps, "<pci> without a valid busid");
		if (cls < 0)
			return perr(w->ps, "<pci> with a bad class");
		bool bridge = (cls >> 8) == 0x0604;
		const struct xel *gpu = NULL, *nic = NULL;
		for (const struct xel *c = e->first; c; c = c->next) {
			if (!strcmp(c->tag, "gpu"))
				gpu = c;
			if (!strcmp(c->tag, "nic"))
				nic = c;
		}
		if (!bridge && !mt_pci_norm(busid, pci))
			return perr(w->ps, "<pci> busid is not dddd:bb:dd.f");
		if (!bridge && ((cls >> 16) == 0x03 || gpu)) {
			int cap = w->cap_g;
			if (grow((void **)&n->gpus, &cap, n->n_gpus + 1, sizeof(*n->gpus)) < 0 ||
			    grow((void **)&w->gdev, &w->cap_g, n->n_gpus + 1, sizeof(*w->gdev)) < 0)
				return MT_ENOMEM;
			struct mt_gpu *g = &n->gpus[n->n_gpus];
			memset(g, 0, sizeof(*g));
			snprintf(g->pci, sizeof(g->pci), "%s", pci);
			long vendor = hexattr(e, "vendor", gpu && attr(gpu, "gcn") ? 0x1002 : 0x10de);
			g->vendor = vendor < 0 ? 0 : (unsigned)vendor;
			long dev = hexattr(e, "device", 0);
			g->device = dev < 0 ? 0 : (unsigned)dev;
			g->supported = g->vendor == 0x10de && (cls >> 16) == 0x03;
			const char *sm = gpu ? attr(gpu, "sm") : NULL;
			if (sm && atoi(sm) > 0)
				snprintf(g->model, sizeof(g->model), "sm_%d", atoi(sm));
			g->numa = n->numa_os[w->cpu];
			g->rail = -1;
			if (!(g->cpuset = mt_strdup(n->numa_cpusets[w->cpu])))
				return MT_ENOMEM;
			w->gdev[n->n_gpus].el = e;
			w->gdev[n->n_gpus].cpu = w->cpu;
			n->n_gpus++;
		} else if (!bridge && nic) {
			for (const struct xel *net = nic->first; net; net = net->next) {
				const char *nm = attr(net, "name"), *port = attr(net, "port");
				int rc = add_nic(w, e, nm && *nm ? nm : pci, pci, true,
						 (cls >> 8) == 0x0207 ? MT_LL_IB : MT_LL_UNKNOWN, port ? atoi(port) : 1);
				if (rc < 0)
					return rc;
			}
		} else if (!bridge && (cls >> 8) == 0x0207) {
			int rc = add_nic(w, e, pci, pci, true, MT_LL_IB, 0);
			if (rc < 0)
				return rc;
		} else if (!bridge && (cls >> 8) == 0x0200) {
			int rc = add_nic(w, e, pci, pci, false, MT_LL_ETH, 0);
			if (rc < 0)
				return rc;
		}
		int rc = walk_pci(w, e->first);
		if (rc < 0)
			return rc;
	}
	return MT_OK;
}

static enum mt_rel rel(const struct xel *a, const struct xel *b)
{
	if (a == b)
		return MT_REL_PIX; /* two NICs (ports) of one PCI function, or the same GPU */
	const struct xel *up[MAX_DEPTH + 2];
	int na = 0;
	for (const struct xel *p = a->parent; p && na < MAX_DEPTH + 2; p = p->parent)
		up[na++] = p;
	const struct xel *lca = NULL;
	int bb = 0;
	for (const struct xel *p = b->parent; p && !lca; p = p->parent) {
		for (int i = 0; i < na; i++)
			if (up[i] == p)
				lca = p;
		if (!lca && !strcmp(p->tag, "pci"))
			bb++;
	}
	if (!lca || !strcmp(lca->tag, "system"))
		return MT_REL_SYS;
	if (!strcmp(lca->tag, "cpu"))
		return MT_REL_PHB;
	int ba = 0;
	for (const struct xel *p = a->parent; p != lca; p = p->parent)
		ba += !strcmp(p->tag, "pci");
	/* a <nic> element sits one level below its <pci>: do not count that as a switch */
	return ba + bb == 0 ? MT_REL_PIX : MT_REL_PXB;
}

/* NVLink link counts between GPUs; through NVSwitch, two GPUs get the smaller of their counts. */
static int nvlinks(struct walk *w)
{
	struct mt_node *n = w->n;
	int G = n->n_gpus;
	bool any = false;
	double *m = calloc((size_t)(G ? G * G : 1), sizeof(double));
	double *sw = calloc((size_t)(G ? G : 1), sizeof(double));
	if (!m || !sw) {
		free(m), free(sw);
		return MT_ENOMEM;
	}
	for (int g = 0; g < G; g++) {
		const struct xel *gpu = NULL;
		for (const struct xel *c = w->gdev[g].el->first; c; c = c->next)
			if (!strcmp(c->tag, "gpu"))
				gpu = c;
		for (const struct xel *l = gpu ? gpu->first : NULL; l; l = l->next) {
			if (strcmp(l->tag, "nvlink"))
				continue;
			const char *cnt = attr(l, "count"), *tgt = attr(l, "target");
			long tclass = hexattr(l, "tclass", 0);
			double c = cnt ? atof(cnt) : 0;
			if (c <= 0)
				continue;
			any = true;
			if ((tclass >> 8) == 0x0680) {
				sw[g] += c;
				n->nvswitch = true;
			} else if ((tclass >> 16) == 0x03 && tgt) {
				long long k = mt_pci_key(tgt);
				for (int h = 0; h < G; h++)
					if (h != g && mt_pci_key(n->gpus[h].pci) == k)
						m[g * G + h] += c;
			}
		}
	}
	for (int i = 0; i < G; i++)
		for (int j = 0; j < G; j++)
			if (i != j && sw[i] > 0 && sw[j] > 0) {
				double s = sw[i] < sw[j] ? sw[i] : sw[j];
				if (s > m[i * G + j])
					m[i * G + j] = s;
			}
	free(sw);
	if (any && G)
		n->nvlink = m;
	else
		free(m);
	return MT_OK;
}

static int build(struct xel *root, struct parser *ps, struct mt_node **out)
{
	struct walk w = {.ps = ps};
	unsigned char *mask = malloc(MT_MAXCPU), *all = calloc(1, MT_MAXCPU);
	struct mt_node *n = calloc(1, sizeof(*n));
	int rc = MT_ENOMEM, ncpu = 0;
	if (!mask || !all || !n)
		goto fail;
	w.n = n;
	snprintf(n->source, sizeof(n->source), "%s", ps->src);
	const char *host = NULL;
	for (const struct xel *c = root->first; c; c = c->next)
		if (!strcmp(c->tag, "cpu") && !ncpu++)
			host = attr(c, "host_hash");
	n->numa_os = calloc((size_t)(ncpu ? ncpu : 1), sizeof(int));
	n->numa_cpusets = calloc((size_t)(ncpu ? ncpu : 1), sizeof(char *));
	if (!n->numa_os || !n->numa_cpusets)
		goto fail;
	for (const struct xel *c = root->first; c; c = c->next) {
		const char *h = attr(c, "host_hash");
		if (strcmp(c->tag, "cpu") || (host && (!h || strcmp(h, host))))
			continue; /* other hosts of a multi-host dump */
		const char *numaid = attr(c, "numaid"), *aff = attr(c, "affinity");
		char *end = NULL;
		long id = numaid ? strtol(numaid, &end, 10) : n->n_numa;
		ps->line = c->line;
		if ((numaid && (*end || id < 0 || id > 65535))) {
			rc = perr(ps, "<cpu> numaid is not a number");
			goto fail;
		}
		int cnt = 0;
		char *list = aff ? affinity_list(aff, mask, &cnt) : mt_strdup("");
		if (!list) {
			rc = aff ? perr(ps, "<cpu> affinity is not a hex cpu mask") : MT_ENOMEM;
			goto fail;
		}
		for (int i = 0; aff && i < MT_MAXCPU; i++)
			all[i] |= mask[i];
		w.cpu = n->n_numa;
		n->numa_os[n->n_numa] = (int)id;
		n->numa_cpusets[n->n_numa++] = list;
		if ((rc = walk_pci(&w, c->first)) < 0)
			goto fail;
	}
	rc = MT_ENOMEM;
	int pus = 0;
	for (int i = 0; i < MT_MAXCPU; i++)
		pus += all[i];
	n->n_pus = pus;
	if (!(n->cpuset = malloc(MT_MAXCPU * 6)))
		goto fail;
	mt_cpulist_format(all, MT_MAXCPU, n->cpuset, MT_MAXCPU * 6);
	if (!n->n_gpus && !n->n_nics) {
		rc = mt_seterr(ps->err, ps->errlen, MT_ENOPCI, "%s: the NCCL topology has no GPU or NIC <pci> elements",
			       ps->src);
		goto fail;
	}
	/* GPUs in PCI order, keeping their element for relations */
	for (int i = 1; i < n->n_gpus; i++)
		for (int j = i; j > 0 && mt_pci_key(n->gpus[j - 1].pci) > mt_pci_key(n->gpus[j].pci); j--) {
			struct mt_gpu t = n->gpus[j];
			struct dev d = w.gdev[j];
			n->gpus[j] = n->gpus[j - 1], w.gdev[j] = w.gdev[j - 1];
			n->gpus[j - 1] = t, w.gdev[j - 1] = d;
		}
	for (int i = 0; i < n->n_gpus; i++) {
		n->gpus[i].index = i;
		for (int j = 0; j < i; j++)
			if (!strcmp(n->gpus[i].pci, n->gpus[j].pci)) {
				ps->line = w.gdev[i].el->line;
				rc = perr(ps, "two GPUs with the same busid");
				goto fail;
			}
	}
	int G = n->n_gpus, cols = G + n->n_nics;
	if (!(n->pcie = malloc((size_t)(G ? G : 1) * (size_t)(cols ? cols : 1) * sizeof(*n->pcie))))
		goto fail;
	for (int g = 0; g < G; g++) {
		for (int h = 0; h < G; h++)
			n->pcie[g * cols + h] = g == h ? MT_REL_X : rel(w.gdev[g].el, w.gdev[h].el);
		for (int c = 0; c < n->n_nics; c++)
			n->pcie[g * cols + G + c] = rel(w.gdev[g].el, w.ndev[c].el);
	}
	if ((rc = nvlinks(&w)) < 0)
		goto fail;
	if ((rc = mt_node_finish(n, ps->err, ps->errlen)) < 0)
		goto fail;
	free(w.gdev), free(w.ndev), free(mask), free(all);
	*out = n;
	return MT_OK;
fail:
	if (rc == MT_ENOMEM)
		mt_seterr(ps->err, ps->errlen, rc, "out of memory while reading %s", ps->src);
	free(w.gdev), free(w.ndev), free(mask), free(all);
	mt_node_free(n);
	return rc;
}

int mt_node_from_nccl_xml(const char *buf, size_t len, const char *source, struct mt_node **out, char *err,
			  size_t errlen)
{
	struct parser ps = {.p = buf, .end = buf + len, .src = source, .line = 1, .err = err, .errlen = errlen};
	struct xel *root = NULL;
	int rc = parse(&ps, &root);
	if (rc == MT_OK)
		rc = validate(root, &ps);
	if (rc == MT_OK)
		rc = build(root, &ps, out);
	xel_free(root);
	return rc;
}
