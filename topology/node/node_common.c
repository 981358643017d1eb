/* node_common.c - node-model plumbing: names, errors, PCI ids, cpu lists, free and subset. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

const char *mt_rel_name(enum mt_rel r)
{
	static const char *const names[] = {"X", "PIX", "PXB", "PHB", "NODE", "SYS"};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

const char *mt_link_layer_name(enum mt_link_layer l)
{
	return l == MT_LL_IB ? "infiniband" : l == MT_LL_ETH ? "ethernet" : "unknown";
}

static bool parse_hex(const char **pp, unsigned maxdigits, unsigned long *v)
{
	const char *p = *pp;
	unsigned n = 0;
	*v = 0;
	while (isxdigit((unsigned char)*p) && n < maxdigits) {
		int c = tolower((unsigned char)*p);
		*v = *v * 16 + (unsigned long)(isdigit(c) ? c - '0' : c - 'a' + 10);
		p++, n++;
	}
	if (!n)
		return false;
	*pp = p;
	return true;
}

/* Accepts "dddd:bb:dd.f" and "bb:dd.f" (domain 0); domains up to 8 hex digits (VMD, Hyper-V). */
static bool pci_parse(const char *s, unsigned long *dom, unsigned long *bus, unsigned long *dev,
		      unsigned long *fn)
{
	const char *p = s;
	unsigned long a, b;
	if (!s || !parse_hex(&p, 8, &a) || *p++ != ':' || !parse_hex(&p, 2, &b))
		return false;
	if (*p == ':') { /* domain:bus:dev.fn */
		p++;
		*dom = a, *bus = b;
		if (!parse_hex(&p, 2, dev))
			return false;
	} else { /* bus:dev.fn */
		*dom = 0, *bus = a, *dev = b;
		if (a > 0xff)
			return false;
	}
	if (*p++ != '.' || !parse_hex(&p, 1, fn) || *p)
		return false;
	return *bus <= 0xff && *dev <= 0x1f && *fn <= 7;
}

long long mt_pci_key(const char *pci)
{
	unsigned long d, b, v, f;
	if (!pci_parse(pci, &d, &b, &v, &f))
		return -1;
	return (long long)d << 16 | (long long)b << 8 | (long long)(v << 3 | f);
}

bool mt_pci_norm(const char *in, char out[MT_PCI_LEN])
{
	unsigned long d, b, v, f;
	if (!pci_parse(in, &d, &b, &v, &f) || d > 0xffff)
		return false;
	snprintf(out, MT_PCI_LEN, "%04lx:%02lx:%02lx.%lx", d, b, v, f);
	return true;
}

static int gpu_cmp(const void *a, const void *b)
{
	long long ka = mt_pci_key(((const struct mt_gpu *)a)->pci);
	long long kb = mt_pci_key(((const struct mt_gpu *)b)->pci);
	return ka < kb ? -1 : ka > kb;
}

void mt_sort_gpus(struct mt_node *n)
{
	if (n->n_gpus > 1)
		qsort(n->gpus, (size_t)n->n_gpus, sizeof(*n->gpus), gpu_cmp);
	for (int i = 0; i < n->n_gpus; i++)
		n->gpus[i].index = i;
}

void mt_node_free(struct mt_node *n)
{
	if (!n)
		return;
	for (int i = 0; n->gpus && i < n->n_gpus; i++)
		free(n->gpus[i].cpuset);
	free(n->gpus);
	free(n->nics);
	for (int i = 0; n->numa_cpusets && i < n->n_numa; i++)
		free(n->numa_cpusets[i]);
	free(n->numa_cpusets);
	free(n->numa_os);
	free(n->cpuset);
	for (int i = 0; n->core_cpusets && i < n->n_cores; i++)
		free(n->core_cpusets[i]);
	free(n->core_cpusets);
	free(n->pcie);
	free(n->nvlink);
	free(n);
}

int mt_cpulist_parse(const char *list, unsigned char *mask, int maxcpu)
{
	if (!list || !mask || maxcpu <= 0)
		return MT_EINVAL;
	memset(mask, 0, (size_t)maxcpu);
	const char *p = list;
	while (isspace((unsigned char)*p))
		p++;
	if (!*p)
		return 0;
	int count = 0;
	for (;;) {
		char *end;
		if (!isdigit((unsigned char)*p))
			return MT_EPARSE;
		long a = strtol(p, &end, 10), b = a;
		p = end;
		if (*p == '-') {
			p++;
			if (!isdigit((unsigned char)*p))
				return MT_EPARSE;
			b = strtol(p, &end, 10);
			p = end;
		}
		if (a > b || b >= maxcpu)
			return MT_EPARSE;
		for (long c = a; c <= b; c++)
			if (!mask[c]) {
				mask[c] = 1;
				count++;
			}
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			return count;
		if (*p++ != ',')
			return MT_EPARSE;
	}
}

int mt_cpulist_format(const unsigned char *mask, int maxcpu, char *buf, size_t len)
{
	if (!mask || !buf || !len || maxcpu < 0)
		return MT_EINVAL;
	size_t used = 0;
	buf[0] = 0;
	for (int c = 0; c < maxcpu;) {
		if (!mask[c]) {
			c++;
			continue;
		}
		int e = c;
		while (e + 1 < maxcpu && mask[e + 1])
			e++;
		int w = e > c ? snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", c, e)
			      : snprintf(buf + used, len - used, "%s%d", used ? "," : "", c);
		if (w < 0 || (size_t)w >= len - used) {
			buf[0] = 0;
			return MT_ENOMEM; /* buffer too small */
		}
		used += (size_t)w;
		c = e + 1;
	}
	return (int)used;
}

/* Deep copy of everything but the GPU-indexed parts, which the caller fills. */
static struct mt_node *copy_shell(const struct mt_node *n, int n_gpus)
{
	struct mt_node *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	memcpy(c->source, n->source, sizeof(c->source));
	memcpy(c->hostname, n->hostname, sizeof(c->hostname));
	c->n_cores = n->n_cores, c->n_pus = n->n_pus;
	c->nvlink_is_bw = n->nvlink_is_bw, c->nvswitch = n->nvswitch;
	c->n_gpus = n_gpus;
	c->n_nics = n->n_nics;
	c->n_numa = n->n_numa;
	c->gpus = calloc((size_t)(n_gpus ? n_gpus : 1), sizeof(*c->gpus));
	c->nics = calloc((size_t)(n->n_nics ? n->n_nics : 1), sizeof(*c->nics));
	c->numa_os = calloc((size_t)(n->n_numa ? n->n_numa : 1), sizeof(int));
	c->numa_cpusets = calloc((size_t)(n->n_numa ? n->n_numa : 1), sizeof(char *));
	c->cpuset = mt_strdup(n->cpuset ? n->cpuset : "");
	if (!c->gpus || !c->nics || !c->numa_os || !c->numa_cpusets || !c->cpuset)
		goto fail;
	if (n->n_nics)
		memcpy(c->nics, n->nics, (size_t)n->n_nics * sizeof(*c->nics));
	for (int i = 0; i < n->n_numa; i++) {
		c->numa_os[i] = n->numa_os[i];
		if (!(c->numa_cpusets[i] = mt_strdup(n->numa_cpusets[i] ? n->numa_cpusets[i] : "")))
			goto fail;
	}
	if (n->core_cpusets && n->n_cores > 0) {
		if (!(c->core_cpusets = calloc((size_t)n->n_cores, sizeof(char *))))
			goto fail;
		for (int i = 0; i < n->n_cores; i++)
			if (!(c->core_cpusets[i] = mt_strdup(n->core_cpusets[i] ? n->core_cpusets[i] : "")))
				goto fail;
	}
	return c;
fail:
	c->n_gpus = 0; /* no gpu cpusets allocated yet */
	mt_node_free(c);
	return NULL;
}

int mt_node_subset(const struct mt_node *n, const char *const *pci, int count, struct mt_node **out,
		   char *err, size_t errlen)
{
	if (out)
		*out = NULL;
	if (!n || !out || count < 0 || (count && !pci))
		return mt_seterr(err, errlen, MT_EINVAL, "mt_node_subset: bad arguments");
	int *pick = calloc((size_t)(n->n_gpus ? n->n_gpus : 1), sizeof(int));
	if (!pick)
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	for (int k = 0; k < count; k++) {
		char want[MT_PCI_LEN];
		int found = -1;
		if (mt_pci_norm(pci[k], want))
			for (int g = 0; g < n->n_gpus; g++)
				if (!strcmp(n->gpus[g].pci, want))
					found = g;
		if (found < 0 || pick[found]) {
			char valid[MT_ERRLEN / 2] = "";
			size_t u = 0;
			for (int g = 0; g < n->n_gpus && u + MT_PCI_LEN + 2 < sizeof(valid); g++)
				u += (size_t)snprintf(valid + u, sizeof(valid) - u, "%s%s", g ? ", " : "",
						      n->gpus[g].pci);
			free(pick);
			if (found >= 0)
				return mt_seterr(err, errlen, MT_EINVAL, "GPU %s listed twice", pci[k]);
			return mt_seterr(err, errlen, MT_EINVAL, "GPU '%s' is not on this node (valid: %s)",
					 pci[k], u ? valid : "none");
		}
		pick[found] = 1;
	}
	struct mt_node *c = copy_shell(n, count);
	int *map = malloc((size_t)(count ? count : 1) * sizeof(int));
	if (!c || !map)
		goto nomem;
	int k = 0;
	for (int g = 0; g < n->n_gpus; g++)
		if (pick[g])
			map[k++] = g;
	for (k = 0; k < count; k++) {
		c->gpus[k] = n->gpus[map[k]];
		c->gpus[k].index = k;
		c->gpus[k].cpuset = NULL;
	}
	for (k = 0; k < count; k++)
		if (!(c->gpus[k].cpuset = mt_strdup(n->gpus[map[k]].cpuset ? n->gpus[map[k]].cpuset : "")))
			goto nomem;
	if (n->pcie) {
		int oc = n->n_gpus + n->n_nics, nc = count + n->n_nics;
		if (!(c->pcie = malloc((size_t)(count ? count : 1) * (size_t)nc * sizeof(*c->pcie))))
			goto nomem;
		for (int i = 0; i < count; i++) {
			for (int j = 0; j < count; j++)
				c->pcie[i * nc + j] = n->pcie[map[i] * oc + map[j]];
			for (int j = 0; j < n->n_nics; j++)
				c->pcie[i * nc + count + j] = n->pcie[map[i] * oc + n->n_gpus + j];
		}
	}
	if (n->nvlink) {
		if (!(c->nvlink = malloc((size_t)(count ? count * count : 1) * sizeof(double))))
			goto nomem;
		for (int i = 0; i < count; i++)
			for (int j = 0; j < count; j++)
				c->nvlink[i * count + j] = n->nvlink[map[i] * n->n_gpus + map[j]];
	}
	free(map);
	free(pick);
	*out = c;
	return MT_OK;
nomem:
	free(map);
	free(pick);
	mt_node_free(c);
	return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
}

bool mt_pci_display_only(unsigned vendor, unsigned class_id)
{
	static const unsigned vga_only[] = {
		0x1a03, /* ASPEED (AST2xxx BMC) */
		0x102b, /* Matrox (G200e on Dell, HPE, Lenovo BMCs) */
		0x19e5, /* Huawei (iBMC Hi171x) */
		0x103c, /* HP / HPE (iLO) */
		0x1d0f, /* Amazon (EC2 VGA) */
		0x1234, /* QEMU / Bochs standard VGA */
		0x1013, /* Cirrus Logic (emulated by QEMU) */
		0x15ad, /* VMware SVGA */
		0x1b36, /* Red Hat QXL */
		0x1af4, /* Red Hat virtio-gpu */
		0x1414, /* Microsoft Hyper-V */
	};
	if (class_id != 0x0300)
		return false;
	for (size_t i = 0; i < sizeof(vga_only) / sizeof(vga_only[0]); i++)
		if (vendor == vga_only[i])
			return true;
	return false;
}
