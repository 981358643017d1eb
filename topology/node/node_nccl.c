/* node_nccl.c - reads an NCCL topology XML (the NCCL_TOPO_FILE / NCCL_TOPO_DUMP_FILE format).
 *
 * Many cloud users have only such a file.  node_xml.c builds the element tree; elements and
 * attributes are checked against what NCCL writes, so a typo or a file of another kind is reported
 * rather than half-read.  A dump of several hosts (host_hash) is read for its first host.
 * Mapping to the node model:
 *   <cpu numaid affinity>  NUMA node and its CPUs (hex mask, 32-bit groups, most significant first)
 *   <pci class=0x03....>   GPU (vendor attribute, else NVIDIA unless <gpu gcn=...> says AMD), but not
 *                          a BMC's or VM's display controller without <gpu> (mt_pci_display_only)
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

static int validate(const struct mt_xel *e, struct mt_xml *ps)
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
			return mt_xml_err(ps, msg);
		}
		const char *parent = e->parent ? e->parent->tag : "";
		if (e->parent ? !in_list(schema[k].parents, parent) : k != 0) {
			snprintf(msg, sizeof(msg), "<%s> is not allowed %s%s%s", e->tag, e->parent ? "inside <" : "as root",
				 parent, e->parent ? ">" : "");
			return mt_xml_err(ps, msg);
		}
		for (int i = 0; i < e->nattr; i++)
			if (strcmp(e->an[i], "keep") && !in_list(schema[k].attrs, e->an[i])) {
				const char *v = schema[k].attrs + 1; /* the list without its outer blanks */
				int vl = (int)(strlen(v) > 0 ? strlen(v) - 1 : 0);
				snprintf(msg, sizeof(msg), "unknown attribute '%.24s' on <%s> (valid: %.*s%skeep)", e->an[i],
					 e->tag, vl, v, vl ? ", " : "");
				return mt_xml_err(ps, msg);
			}
		int rc = validate(e->first, ps);
		if (rc < 0)
			return rc;
	}
	return MT_OK;
}

/* "0000,00000000,000000ff" -> cpu list, its CPUs set in mask[0..*hi) (mask is all zero before);
 * NULL on a malformed mask.  Costs the length of the text and of the list, never MT_MAXCPU: a file
 * of a million <cpu> elements must not cost a million times a full-size CPU mask. */
static char *affinity_list(const char *hex, unsigned char *mask, int *hi)
{
	int bit = 0;
	*hi = 0;
	for (const char *p = hex + strlen(hex); p > hex;) {
		char c = *--p;
		if (c == ',')
			continue;
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		for (int b = 0; v > 0 && b < 4; b++)
			if (v >> b & 1) {
				if (bit + b >= MT_MAXCPU)
					v = -1;
				else
					mask[bit + b] = 1, *hi = bit + b + 1;
			}
		if (v < 0) {
			memset(mask, 0, (size_t)*hi);
			return NULL;
		}
		bit += 4;
	}
	size_t len = (size_t)*hi * 6 + 1; /* "NNNN," per CPU at most */
	char *buf = malloc(len);
	if (buf && mt_cpulist_format(mask, *hi, buf, len) < 0)
		buf[0] = 0;
	return buf;
}

static long hexattr(const struct mt_xel *e, const char *name, long dflt)
{
	const char *v = mt_xml_attr(e, name);
	char *end;
	if (!v || !*v)
		return dflt;
	long x = strtol(v, &end, 16);
	return *end ? -1 : x;
}

/* A device found while walking: the element used for relations, and its node slot. */
struct dev {
	const struct mt_xel *el;
	int cpu; /* index into the node's NUMA list */
};

struct walk {
	struct mt_node *n;
	struct dev *gdev, *ndev;
	int cap_g, cap_n;
	int cpu;
	struct mt_xml *ps;
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

static int add_nic(struct walk *w, const struct mt_xel *el, const char *name, const char *pci, bool rdma,
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

static int walk_pci(struct walk *w, const struct mt_xel *e)
{
	struct mt_node *n = w->n;
	for (; e; e = e->next) {
		if (!strcmp(e->tag, "nic") && !strcmp(e->parent->tag, "cpu")) { /* no PCI place */
			for (const struct mt_xel *net = e->first; net; net = net->next) {
				const char *nm = mt_xml_attr(net, "name");
				const char *port = mt_xml_attr(net, "port");
				int rc = add_nic(w, net, nm ? nm : "", "", true, MT_LL_UNKNOWN, port ? atoi(port) : 1);
				if (rc < 0)
					return rc;
			}
			continue;
		}
		if (strcmp(e->tag, "pci"))
			continue;
		const char *busid = mt_xml_attr(e, "busid");
		long cls = hexattr(e, "class", 0);
		char pci[MT_PCI_LEN];
		w->ps->line = e->line;
		if (!busid || mt_pci_key(busid) < 0)
			return mt_xml_err(w->ps, "<pci> without a valid busid");
		if (cls < 0)
			return mt_xml_err(w->ps, "<pci> with a bad class");
		bool bridge = (cls >> 8) == 0x0604;
		const struct mt_xel *gpu = NULL, *nic = NULL;
		for (const struct mt_xel *c = e->first; c; c = c->next) {
			if (!strcmp(c->tag, "gpu"))
				gpu = c;
			if (!strcmp(c->tag, "nic"))
				nic = c;
		}
		if (!bridge && !mt_pci_norm(busid, pci))
			return mt_xml_err(w->ps, "<pci> busid is not dddd:bb:dd.f");
		long vendor = hexattr(e, "vendor", gpu && mt_xml_attr(gpu, "gcn") ? 0x1002 : 0x10de);
		bool display = !gpu && mt_pci_display_only(vendor < 0 ? 0 : (unsigned)vendor, (unsigned)(cls >> 8));
		if (!bridge && !display && ((cls >> 16) == 0x03 || gpu)) {
			int cap = w->cap_g;
			if (grow((void **)&n->gpus, &cap, n->n_gpus + 1, sizeof(*n->gpus)) < 0 ||
			    grow((void **)&w->gdev, &w->cap_g, n->n_gpus + 1, sizeof(*w->gdev)) < 0)
				return MT_ENOMEM;
			struct mt_gpu *g = &n->gpus[n->n_gpus];
			memset(g, 0, sizeof(*g));
			snprintf(g->pci, sizeof(g->pci), "%s", pci);
			g->vendor = vendor < 0 ? 0 : (unsigned)vendor;
			long dev = hexattr(e, "device", 0);
			g->device = dev < 0 ? 0 : (unsigned)dev;
			g->supported = g->vendor == 0x10de && (cls >> 16) == 0x03;
			const char *sm = gpu ? mt_xml_attr(gpu, "sm") : NULL;
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
			for (const struct mt_xel *net = nic->first; net; net = net->next) {
				const char *nm = mt_xml_attr(net, "name"), *port = mt_xml_attr(net, "port");
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

static enum mt_rel rel(const struct mt_xel *a, const struct mt_xel *b)
{
	if (a == b)
		return MT_REL_PIX; /* two NICs (ports) of one PCI function, or the same GPU */
	const struct mt_xel *up[MT_XML_MAX_DEPTH + 2];
	int na = 0;
	for (const struct mt_xel *p = a->parent; p && na < MT_XML_MAX_DEPTH + 2; p = p->parent)
		up[na++] = p;
	const struct mt_xel *lca = NULL;
	int bb = 0;
	for (const struct mt_xel *p = b->parent; p && !lca; p = p->parent) {
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
	for (const struct mt_xel *p = a->parent; p != lca; p = p->parent)
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
		const struct mt_xel *gpu = NULL;
		for (const struct mt_xel *c = w->gdev[g].el->first; c; c = c->next)
			if (!strcmp(c->tag, "gpu"))
				gpu = c;
		for (const struct mt_xel *l = gpu ? gpu->first : NULL; l; l = l->next) {
			if (strcmp(l->tag, "nvlink"))
				continue;
			const char *cnt = mt_xml_attr(l, "count"), *tgt = mt_xml_attr(l, "target");
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

static int build(struct mt_xel *root, struct mt_xml *ps, struct mt_node **out)
{
	struct walk w = {.ps = ps};
	unsigned char *mask = calloc(1, MT_MAXCPU), *all = calloc(1, MT_MAXCPU);
	struct mt_node *n = calloc(1, sizeof(*n));
	int rc = MT_ENOMEM, ncpu = 0;
	if (!mask || !all || !n)
		goto fail;
	w.n = n;
	snprintf(n->source, sizeof(n->source), "%s", ps->src);
	const char *host = NULL;
	for (const struct mt_xel *c = root->first; c; c = c->next)
		if (!strcmp(c->tag, "cpu") && !ncpu++)
			host = mt_xml_attr(c, "host_hash");
	n->numa_os = calloc((size_t)(ncpu ? ncpu : 1), sizeof(int));
	n->numa_cpusets = calloc((size_t)(ncpu ? ncpu : 1), sizeof(char *));
	if (!n->numa_os || !n->numa_cpusets)
		goto fail;
	for (const struct mt_xel *c = root->first; c; c = c->next) {
		const char *h = mt_xml_attr(c, "host_hash");
		if (strcmp(c->tag, "cpu") || (host && (!h || strcmp(h, host))))
			continue; /* other hosts of a multi-host dump */
		const char *numaid = mt_xml_attr(c, "numaid"), *aff = mt_xml_attr(c, "affinity");
		char *end = NULL;
		long id = numaid ? strtol(numaid, &end, 10) : n->n_numa;
		ps->line = c->line;
		if ((numaid && (*end || id < 0 || id > 65535))) {
			rc = mt_xml_err(ps, "<cpu> numaid is not a number");
			goto fail;
		}
		int hi = 0;
		char *list = aff ? affinity_list(aff, mask, &hi) : mt_strdup("");
		if (!list) {
			rc = aff ? mt_xml_err(ps, "<cpu> affinity is not a hex cpu mask") : MT_ENOMEM;
			goto fail;
		}
		for (int i = 0; i < hi; i++) {
			all[i] |= mask[i];
			mask[i] = 0;
		}
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
				rc = mt_xml_err(ps, "two GPUs with the same busid");
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
	/* NCCL itself reads at most 256 nodes per host (NCCL_TOPO_XML_MAX_NODES); multi-host dumps hold a
	 * few thousand.  The cap bounds the element tree (under 1 KiB per element) to a few MiB. */
	struct mt_xml ps = {.p = buf, .end = buf + len, .src = source, .kind = "NCCL topology XML", .line = 1,
			    .err = err, .errlen = errlen, .max_elems = 16384};
	struct mt_xel *root = NULL;
	int rc = mt_xml_parse(&ps, &root);
	if (rc == MT_OK)
		rc = validate(root, &ps);
	if (rc == MT_OK)
		rc = build(root, &ps, out);
	mt_xml_free(root);
	return rc;
}
