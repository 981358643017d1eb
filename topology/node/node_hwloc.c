/* node_hwloc.c - builds the node model from an hwloc topology (XML buffer or the live machine).
 *
 * GPUs are found by PCI class (display 0x03xx or processing accelerator 0x12xx), not by CUDA/NVML
 * OS devices, because many real exports have none.  RDMA NICs are OpenFabrics OS devices; other
 * network OS devices are plain NICs.  PCIe relations come from the PCI tree (see pci_rel).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hwloc.h>

#include "node_int.h"

#define VENDOR_NVIDIA 0x10de

/* The plugin's build opens libhwloc at run time (node_hwloc_dl.c); the others link it. */
#ifdef MT_HWLOC_DLOPEN
#define open_hwloc mt_hwloc_open
#else
static int open_hwloc(char *err, size_t errlen) { return MT_OK; }
#endif

/* Files describe another machine: skip what hwloc would compute from this one's memory attributes
 * and CPU kinds (and the environment variables that tune them). */
#if HWLOC_API_VERSION >= 0x00020800
#define FILE_FLAGS (HWLOC_TOPOLOGY_FLAG_NO_MEMATTRS | HWLOC_TOPOLOGY_FLAG_NO_CPUKINDS)
#else
#define FILE_FLAGS 0
#endif

static char *bitmap_list(hwloc_const_bitmap_t b)
{
	char *s = NULL;
	if (!b || hwloc_bitmap_iszero(b))
		return mt_strdup("");
	if (hwloc_bitmap_list_asprintf(&s, b) < 0 || !s)
		return NULL;
	return s;
}

/* Display (0x03xx) and accelerator (0x12xx) functions, but not a BMC's or VM's display controller. */
static bool is_gpu(hwloc_obj_t o)
{
	unsigned cls = o->attr->pcidev.class_id >> 8;
	if (cls != 0x03 && cls != 0x12)
		return false;
	return !mt_pci_display_only(o->attr->pcidev.vendor_id, o->attr->pcidev.class_id);
}

static bool is_nvswitch(hwloc_obj_t o)
{
	return o->attr->pcidev.vendor_id == VENDOR_NVIDIA && o->attr->pcidev.class_id == 0x0680;
}

static void pci_name(hwloc_obj_t o, char out[MT_PCI_LEN])
{
	snprintf(out, MT_PCI_LEN, "%04x:%02x:%02x.%01x", (unsigned)o->attr->pcidev.domain & 0xffff,
		 o->attr->pcidev.bus, o->attr->pcidev.dev, o->attr->pcidev.func & 7);
}

static void copy_name(char *dst, const char *src)
{
	snprintf(dst, MT_NAME_LEN, "%s", src ? src : "");
}

/* NUMA node of an I/O object: its locality's NUMA node when that is a single one, else the first. */
static void locality(hwloc_topology_t t, hwloc_obj_t o, int *numa, char **cpuset)
{
	hwloc_obj_t a = hwloc_get_non_io_ancestor_obj(t, o);
	*numa = -1;
	if (a && a->nodeset && !hwloc_bitmap_iszero(a->nodeset))
		*numa = hwloc_bitmap_first(a->nodeset);
	if (cpuset)
		*cpuset = bitmap_list(a ? a->cpuset : NULL);
}

static bool is_host_bridge(hwloc_obj_t o)
{
	return o->type == HWLOC_OBJ_BRIDGE && o->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST;
}

/* nvidia-smi topo -m classes from the PCI tree.  A PCIe switch shows in hwloc as an upstream port
 * bridge with one downstream port bridge per device: two devices under one switch meet at the
 * upstream port with one bridge each below it (PIX); each further switch adds bridges (PXB). */
static enum mt_rel pci_rel(hwloc_obj_t a, hwloc_obj_t b)
{
	if (a == b)
		return MT_REL_X;
	hwloc_obj_t up[128];
	int na = 0;
	for (hwloc_obj_t p = a->parent; p && na < 128; p = p->parent)
		up[na++] = p;
	hwloc_obj_t lca = NULL;
	int bb = 0; /* bridges strictly between b and the common ancestor */
	for (hwloc_obj_t p = b->parent; p && !lca; p = p->parent) {
		for (int i = 0; i < na; i++)
			if (up[i] == p)
				lca = p;
		if (!lca && p->type == HWLOC_OBJ_BRIDGE)
			bb++;
	}
	if (!lca)
		return MT_REL_UNKNOWN;
	if (lca->type == HWLOC_OBJ_BRIDGE) {
		if (is_host_bridge(lca))
			return MT_REL_PHB;
		int ba = 0;
		for (hwloc_obj_t p = a->parent; p != lca; p = p->parent)
			ba += p->type == HWLOC_OBJ_BRIDGE;
		int extra = (ba > 1 ? ba - 1 : 0) + (bb > 1 ? bb - 1 : 0);
		return extra ? MT_REL_PXB : MT_REL_PIX;
	}
	if (lca->type == HWLOC_OBJ_PCI_DEVICE || lca->type == HWLOC_OBJ_OS_DEVICE)
		return MT_REL_PIX; /* functions of one device */
	/* different host bridges: same NUMA node or across the SMP interconnect */
	return lca->nodeset && hwloc_bitmap_weight(lca->nodeset) <= 1 ? MT_REL_NODE : MT_REL_SYS;
}

static int cmp_pciobj(const void *x, const void *y)
{
	hwloc_obj_t a = *(hwloc_obj_t const *)x, b = *(hwloc_obj_t const *)y;
	char pa[MT_PCI_LEN], pb[MT_PCI_LEN];
	pci_name(a, pa);
	pci_name(b, pb);
	long long ka = mt_pci_key(pa), kb = mt_pci_key(pb);
	return ka < kb ? -1 : ka > kb;
}

static hwloc_obj_t osdev_child(hwloc_obj_t pci, int osdev_type)
{
	for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling)
		if (c->type == HWLOC_OBJ_OS_DEVICE && (int)c->attr->osdev.type == osdev_type)
			return c;
	return NULL;
}

static void fill_gpu(hwloc_topology_t t, hwloc_obj_t o, struct mt_gpu *g)
{
	pci_name(o, g->pci);
	g->vendor = o->attr->pcidev.vendor_id;
	g->device = o->attr->pcidev.device_id;
	g->supported = g->vendor == VENDOR_NVIDIA && (o->attr->pcidev.class_id >> 8) == 0x03;
	g->rail = -1;
	locality(t, o, &g->numa, &g->cpuset);
	const char *model = NULL;
	for (hwloc_obj_t c = o->io_first_child; c; c = c->next_sibling) {
		if (c->type != HWLOC_OBJ_OS_DEVICE || !c->name)
			continue;
		const char *m = hwloc_obj_get_info_by_name(c, "GPUModel");
		if (m && !model)
			model = m;
		if (!strncmp(c->name, "cuda", 4))
			copy_name(g->cuda, c->name);
		else if (!strncmp(c->name, "nvml", 4)) {
			copy_name(g->nvml, c->name);
			copy_name(g->uuid, hwloc_obj_get_info_by_name(c, "NVIDIAUUID"));
		}
	}
	if (!model)
		model = hwloc_obj_get_info_by_name(o, "PCIDevice");
	copy_name(g->model, model);
}

/* Port<N>LinkLayer when hwloc recorded it; otherwise a non-zero LID means InfiniBand (RoCE ports
 * have LID 0), and the PCI class tells InfiniBand (0x0207) from Ethernet (0x0200, RoCE on mlx). */
static enum mt_link_layer link_layer(hwloc_obj_t ofed, int *ports)
{
	enum mt_link_layer ll = MT_LL_UNKNOWN, guess = MT_LL_UNKNOWN;
	hwloc_obj_t pci = ofed->parent;
	*ports = 0;
	if (pci->attr->pcidev.class_id == 0x0207)
		guess = MT_LL_IB;
	else if (pci->attr->pcidev.class_id == 0x0200 && pci->attr->pcidev.vendor_id == 0x15b3)
		guess = MT_LL_ETH;
	for (unsigned i = 0; i < ofed->infos_count; i++) {
		const char *n = ofed->infos[i].name, *v = ofed->infos[i].value;
		unsigned port;
		char rest[32];
		if (!n || !v || sscanf(n, "Port%u%31s", &port, rest) != 2)
			continue;
		if (!strcmp(rest, "State"))
			(*ports)++;
		else if (!strcmp(rest, "LinkLayer") && ll == MT_LL_UNKNOWN)
			ll = !strcmp(v, "InfiniBand") ? MT_LL_IB : !strcmp(v, "Ethernet") ? MT_LL_ETH : MT_LL_UNKNOWN;
		else if (!strcmp(rest, "LID") && strtoul(v, NULL, 0) != 0)
			guess = MT_LL_IB;
	}
	return ll != MT_LL_UNKNOWN ? ll : guess;
}

/* Bandwidth of NVLinkBandwidth distances (MB/s in hwloc) into GB/s between GPUs.  A heterogeneous
 * matrix (GPUs + NVSwitches, as on DGX-2) gives each GPU its bandwidth to the switches; two GPUs on
 * the switch fabric then get the smaller of the two. */
static int nvlink_from_distances(hwloc_topology_t t, struct mt_node *n, hwloc_obj_t *gpu_obj)
{
	struct hwloc_distances_s *d[4];
	unsigned nr = 4;
	if (hwloc_distances_get_by_name(t, "NVLinkBandwidth", &nr, d, 0) < 0 || !nr)
		return 0;
	if (nr > 4)
		nr = 4;
	int G = n->n_gpus;
	double *m = calloc((size_t)(G ? G * G : 1), sizeof(double));
	double *to_sw = calloc((size_t)(G ? G : 1), sizeof(double));
	int *idx = NULL;
	int rc = 0;
	if (!m || !to_sw) {
		rc = MT_ENOMEM;
		goto out;
	}
	bool any = false;
	for (unsigned k = 0; k < nr; k++) {
		unsigned no = d[k]->nbobjs;
		free(idx);
		if (!(idx = malloc((no ? no : 1) * sizeof(int)))) {
			rc = MT_ENOMEM;
			goto out;
		}
		for (unsigned i = 0; i < no; i++) {
			hwloc_obj_t o = d[k]->objs[i];
			idx[i] = -1;
			if (o && o->type == HWLOC_OBJ_OS_DEVICE)
				o = o->parent;
			if (!o || o->type != HWLOC_OBJ_PCI_DEVICE)
				continue;
			for (int g = 0; g < G; g++)
				if (gpu_obj[g] == o)
					idx[i] = g;
			if (idx[i] == -1) { /* a PCI peer on NVLink that is no GPU: an NVSwitch */
				idx[i] = -2;
				n->nvswitch = true;
			}
		}
		for (unsigned i = 0; i < no; i++)
			for (unsigned j = 0; j < no; j++) {
				double bw = (double)d[k]->values[i * no + j] / 1000.0;
				if (i == j || idx[i] == -1 || idx[j] == -1 || bw <= 0)
					continue;
				if (idx[i] >= 0 && idx[j] >= 0)
					m[idx[i] * G + idx[j]] = bw, any = true;
				else if (idx[i] >= 0 && idx[j] == -2)
					to_sw[idx[i]] += bw, any = true;
			}
	}
	for (int i = 0; i < G; i++)
		for (int j = 0; j < G; j++)
			if (i != j && to_sw[i] > 0 && to_sw[j] > 0) {
				double s = to_sw[i] < to_sw[j] ? to_sw[i] : to_sw[j];
				if (s > m[i * G + j])
					m[i * G + j] = s;
			}
	if (any && G) {
		n->nvlink = m;
		n->nvlink_is_bw = true;
		m = NULL;
	}
out:
	free(idx);
	free(m);
	free(to_sw);
	for (unsigned k = 0; k < nr; k++)
		hwloc_distances_release(t, d[k]);
	return rc;
}

static int build(hwloc_topology_t t, const char *source, bool live, struct mt_node **out, char *err,
		 size_t errlen)
{
	struct mt_node *n = calloc(1, sizeof(*n));
	hwloc_obj_t *gobj = NULL, *nobj = NULL;
	if (!n)
		goto nomem;
	snprintf(n->source, sizeof(n->source), "%s", source);
	hwloc_obj_t root = hwloc_get_root_obj(t);
	copy_name(n->hostname, hwloc_obj_get_info_by_name(root, "HostName"));
	if (!n->hostname[0] && live)
		gethostname(n->hostname, sizeof(n->hostname) - 1);

	int npci = 0, ngpu = 0, nnet = 0;
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_pcidev(t, o));) {
		npci++;
		ngpu += is_gpu(o);
		if (is_nvswitch(o))
			n->nvswitch = true;
	}
	if (!npci && !live) {
		mt_node_free(n);
		return mt_seterr(err, errlen, MT_ENOPCI,
				 "%s: the topology has no PCI objects (export it with I/O devices: "
				 "moetopo export, or lstopo --whole-io)", source);
	}
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_osdev(t, o));)
		nnet++;

	/* NUMA nodes and CPUs */
	int nn = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
	n->numa_os = calloc((size_t)(nn > 0 ? nn : 1), sizeof(int));
	n->numa_cpusets = calloc((size_t)(nn > 0 ? nn : 1), sizeof(char *));
	if (!n->numa_os || !n->numa_cpusets)
		goto nomem;
	for (int i = 0; i < nn; i++) {
		hwloc_obj_t o = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i);
		n->numa_os[i] = (int)o->os_index;
		n->n_numa = i + 1;
		if (!(n->numa_cpusets[i] = bitmap_list(o->cpuset)))
			goto nomem;
	}
	if (!(n->cpuset = bitmap_list(hwloc_topology_get_topology_cpuset(t))))
		goto nomem;
	n->n_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
	n->n_pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
	/* each core's PUs, for Slurm's allocated cores (mt_node_core_cpus) */
	if (n->n_cores > 0 && !(n->core_cpusets = calloc((size_t)n->n_cores, sizeof(char *))))
		goto nomem;
	for (int i = 0; i < n->n_cores; i++)
		if (!(n->core_cpusets[i] = bitmap_list(hwloc_get_obj_by_type(t, HWLOC_OBJ_CORE, (unsigned)i)->cpuset)))
			goto nomem;

	/* GPUs in PCI bus id order */
	n->gpus = calloc((size_t)(ngpu ? ngpu : 1), sizeof(*n->gpus));
	gobj = calloc((size_t)(ngpu ? ngpu : 1), sizeof(*gobj));
	if (!n->gpus || !gobj)
		goto nomem;
	int k = 0;
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_pcidev(t, o));)
		if (is_gpu(o))
			gobj[k++] = o;
	qsort(gobj, (size_t)ngpu, sizeof(*gobj), cmp_pciobj);
	for (k = 0; k < ngpu; k++) {
		n->n_gpus = k + 1;
		n->gpus[k].index = k;
		fill_gpu(t, gobj[k], &n->gpus[k]);
		if (!n->gpus[k].cpuset)
			goto nomem;
	}

	/* NICs: one per OpenFabrics device (RDMA), plus network devices of PCI functions without one */
	n->nics = calloc((size_t)(nnet ? nnet : 1), sizeof(*n->nics));
	nobj = calloc((size_t)(nnet ? nnet : 1), sizeof(*nobj));
	if (!n->nics || !nobj)
		goto nomem;
	for (hwloc_obj_t o = NULL; (o = hwloc_get_next_osdev(t, o));) {
		hwloc_obj_t p = o->parent;
		int ty = (int)o->attr->osdev.type;
		if (!p || p->type != HWLOC_OBJ_PCI_DEVICE || !o->name)
			continue; /* virtual devices (soft-RoCE, bonds) have no PCI place */
		if (ty == HWLOC_OBJ_OSDEV_NETWORK && osdev_child(p, HWLOC_OBJ_OSDEV_OPENFABRICS))
			continue; /* netdev of an RDMA device: recorded as its netdev */
		if (ty != HWLOC_OBJ_OSDEV_OPENFABRICS && ty != HWLOC_OBJ_OSDEV_NETWORK)
			continue;
		struct mt_nic *c = &n->nics[n->n_nics];
		nobj[n->n_nics++] = p;
		copy_name(c->name, o->name);
		pci_name(p, c->pci);
		c->rail = -1;
		locality(t, p, &c->numa, NULL);
		if (ty == HWLOC_OBJ_OSDEV_OPENFABRICS) {
			c->rdma = true;
			c->link = link_layer(o, &c->ports);
			hwloc_obj_t net = osdev_child(p, HWLOC_OBJ_OSDEV_NETWORK);
			copy_name(c->netdev, net ? net->name : "");
		} else {
			/* IPoIB hardware addresses are 20 bytes, Ethernet MACs 6 */
			const char *addr = hwloc_obj_get_info_by_name(o, "Address");
			c->link = addr && strlen(addr) > 17 ? MT_LL_IB : MT_LL_ETH;
			copy_name(c->netdev, o->name);
			c->ports = 1;
		}
	}

	/* PCIe relations: rows GPUs, columns GPUs then NICs */
	int cols = n->n_gpus + n->n_nics;
	n->pcie = calloc((size_t)(n->n_gpus ? n->n_gpus : 1) * (size_t)(cols ? cols : 1), sizeof(*n->pcie));
	if (!n->pcie)
		goto nomem;
	for (int g = 0; g < n->n_gpus; g++) {
		for (int h = 0; h < n->n_gpus; h++)
			n->pcie[g * cols + h] = pci_rel(gobj[g], gobj[h]);
		for (int c = 0; c < n->n_nics; c++)
			n->pcie[g * cols + n->n_gpus + c] = pci_rel(gobj[g], nobj[c]);
	}
	if (nvlink_from_distances(t, n, gobj) < 0)
		goto nomem;
	free(gobj);
	free(nobj);
	gobj = nobj = NULL;
	int rc = mt_node_finish(n, err, errlen);
	if (rc < 0) {
		mt_node_free(n);
		return rc;
	}
	*out = n;
	return MT_OK;
nomem:
	free(gobj);
	free(nobj);
	mt_node_free(n);
	return mt_seterr(err, errlen, MT_ENOMEM, "out of memory while reading %s", source);
}

static bool bitmap_ok(const char *v)
{
	/* "0x0000ffff,,0xff000000", and "0xf...f,..." for infinite sets */
	if (!strncmp(v, "0xf...f", 7))
		v += 7 + (v[7] == ',');
	for (;;) {
		if (*v == ',') {
			v++;
			continue;
		}
		if (!*v)
			return true;
		if (v[0] != '0' || v[1] != 'x')
			return false;
		v += 2;
		int n = 0;
		while ((*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'f') || (*v >= 'A' && *v <= 'F'))
			v++, n++;
		if (!n || n > 8 || (*v && *v != ','))
			return false;
	}
}

static bool int_ok(const char *v)
{
	v += *v == '-';
	if (!*v)
		return false;
	for (; *v; v++)
		if (*v < '0' || *v > '9')
			return false;
	return true;
}

static bool in_list(const char *const *list, const char *w)
{
	for (; *list; list++)
		if (!strcmp(*list, w))
			return true;
	return false;
}

/* Checks each <object> before hwloc reads it: hwloc 2.9 dereferences a missing complete_cpuset
 * and trusts set and number syntax.  Unknown attributes are left to hwloc (newer versions add some). */
static int hwloc_element(struct mt_xml *x, const struct mt_xel *e)
{
	char msg[160];
	/* hwloc 2.9 fails (and leaks) on elements and object types it does not know: refuse them first */
	static const char *const tags[] = {"object", "info", "page_type", "indexes", "u64values", "topology",
					   "distances", "distances2", "distances2hetero", "latency", "memattr",
					   "memattr_value", "cpukind", "pci_locality", "support", "userdata", NULL};
	static const char *const types[] = {"PU", "Core", "L1Cache", "L2Cache", "L3Cache", "NUMANode", "Package",
					    "Group", "Machine", "PCIDev", "Bridge", "OSDev", "Misc", "L1iCache",
					    "L2iCache", "L3iCache", "L4Cache", "L5Cache", "Die", "MemCache", "System",
					    "Socket", "Node", "Cache", NULL};
	static const char *const normal_types[] = {"PU", "Core", "NUMANode", "Package", "Group", "Machine", "Die",
						   "System", "Socket", "Node", "Cache", NULL};
	if (!in_list(tags, e->tag)) {
		snprintf(msg, sizeof(msg), "unknown element <%s>", e->tag);
		return mt_xml_err(x, msg);
	}
	if (!strcmp(e->tag, "info") && (!mt_xml_attr(e, "name") || !mt_xml_attr(e, "value")))
		return mt_xml_err(x, "<info> without name or value");
	if (strcmp(e->tag, "object"))
		return 0;
	const char *type = mt_xml_attr(e, "type");
	if (!type)
		return mt_xml_err(x, "<object> without a type");
	if (!in_list(types, type)) {
		snprintf(msg, sizeof(msg), "unknown object type \"%.24s\"", type);
		return mt_xml_err(x, msg);
	}
	if ((!strcmp(type, "PU") || !strcmp(type, "NUMANode") || !strcmp(type, "Node")) && !mt_xml_attr(e, "os_index")) {
		snprintf(msg, sizeof(msg), "<object type=\"%s\"> without os_index", type);
		return mt_xml_err(x, msg);
	}
	static const char *const nums[] = {"gp_index", "os_index", "depth", "cache_size", "cache_linesize",
					   "cache_associativity", "cache_type", "local_memory", "osdev_type",
					   "kind", "subkind", "os_level", NULL};
	for (int i = 0; i < e->nattr; i++) {
		const char *n = e->an[i], *v = e->av[i];
		size_t l = strlen(n);
		bool bad = false;
		if (l > 3 && !strcmp(n + l - 3, "set"))
			bad = !bitmap_ok(v);
		else if (!strcmp(n, "pci_busid"))
			bad = mt_pci_key(v) < 0;
		else if (in_list(nums, n))
			bad = !int_ok(v);
		if (bad) {
			snprintf(msg, sizeof(msg), "<object type=\"%.20s\"> has a bad %s=\"%.24s\"", type, n, v);
			return mt_xml_err(x, msg);
		}
	}
	size_t tl = strlen(type);
	bool normal = in_list(normal_types, type);
	normal = normal || (tl > 5 && !strcmp(type + tl - 5, "Cache"));
	static const char *const pairs[][2] = {{"cpuset", "complete_cpuset"}, {"nodeset", "complete_nodeset"}};
	for (int k = 0; k < 2; k++)
		for (int j = 0; j < 2; j++)
			if ((mt_xml_attr(e, pairs[k][!j]) || (normal && !k)) && !mt_xml_attr(e, pairs[k][j])) {
				snprintf(msg, sizeof(msg), "<object type=\"%.20s\"> lacks %s", type, pairs[k][j]);
				return mt_xml_err(x, msg);
			}
	return 0;
}

/* hwloc 2.x cannot import the 3.0 XML format, whose only differences that matter here are the
 * version and OS device types as a bitmask (3.0) instead of an enum (2.x): rewrite those. */
static char *xml_v3_to_v2(const char *buf, size_t len)
{
	char *o = malloc(len + 1), *w = o;
	if (!o)
		return NULL;
	static const char ver3[] = "version=\"3.", attr[] = "osdev_type=\"";
	const char *p = buf, *end = buf + len, *v = strstr(buf, ver3);
	while (p < end) {
		if (p == v) {
			memcpy(w, "version=\"2.", 11);
			w += 11, p += 11;
			continue;
		}
		if (!strncmp(p, attr, sizeof(attr) - 1)) {
			memcpy(w, attr, sizeof(attr) - 1);
			w += sizeof(attr) - 1, p += sizeof(attr) - 1;
			char *e;
			unsigned long m = strtoul(p, &e, 10);
			if (e == p)
				continue;
			p = e;
			int t = m & 32 ? HWLOC_OBJ_OSDEV_OPENFABRICS : m & 8 ? HWLOC_OBJ_OSDEV_COPROC
				: m & 4 ? HWLOC_OBJ_OSDEV_GPU : m & 16 ? HWLOC_OBJ_OSDEV_NETWORK
				: m & 64 ? HWLOC_OBJ_OSDEV_DMA : HWLOC_OBJ_OSDEV_BLOCK;
			*w++ = (char)('0' + t);
			continue;
		}
		*w++ = *p++;
	}
	*w = 0;
	return o;
}

/* The root element's version, e.g. 3 for <topology version="3.0">; 0 when absent (v1). */
static int xml_major(const char *buf)
{
	const char *r = strstr(buf, "<topology");
	if (!r)
		return 0;
	const char *gt = strchr(r, '>'), *v = strstr(r, "version=\"");
	if (!v || (gt && v > gt))
		return 0;
	return atoi(v + 9);
}

int mt_node_from_hwloc_xml(const char *buf, size_t len, const char *source, struct mt_node **out,
			   char *err, size_t errlen)
{
	char *conv = NULL;
	struct mt_xml x = {.p = buf, .end = buf + len, .src = source, .kind = "hwloc XML topology", .line = 1,
			   .err = err, .errlen = errlen, .cb = hwloc_element,
			   .text_in = " indexes u64values userdata "};
	int rc = mt_xml_parse(&x, NULL);
	if (rc < 0)
		return rc;
	int major = xml_major(buf);
	if (major > 3)
		return mt_seterr(err, errlen, MT_EPARSE, "%s: hwloc XML version %d is not supported (valid: 1.x, 2.x, 3.x)",
				 source, major);
	if (major == 3) {
		if (!(conv = xml_v3_to_v2(buf, len)))
			return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		buf = conv;
		len = strlen(conv);
	}
	if (len > INT32_MAX - 1) {
		free(conv);
		return mt_seterr(err, errlen, MT_EPARSE, "%s: file too large", source);
	}
	/* No setenv() here (it was HWLOC_HIDE_ERRORS): slurmstepd has threads that read the environment,
	 * and setenv may move it under them.  The pre-check refuses what hwloc would complain about, and
	 * hwloc's default already keeps its minor warnings quiet. */
	hwloc_topology_t t;
	if ((rc = open_hwloc(err, errlen)) < 0 || hwloc_topology_init(&t) < 0) {
		free(conv);
		return rc < 0 ? rc : mt_seterr(err, errlen, MT_ENOMEM, "hwloc_topology_init failed");
	}
	hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_ALL);
	hwloc_topology_set_flags(t, FILE_FLAGS);
	if (hwloc_topology_set_xmlbuffer(t, buf, (int)len + 1) < 0 || hwloc_topology_load(t) < 0)
		rc = mt_seterr(err, errlen, MT_EPARSE, "%s: not a valid hwloc XML topology (corrupt or truncated)",
			       source);
	else
		rc = build(t, source, false, out, err, errlen);
	hwloc_topology_destroy(t);
	free(conv);
	return rc;
}

static int live_topology(hwloc_topology_t *t, char *err, size_t errlen)
{
	int rc = open_hwloc(err, errlen);
	if (rc < 0)
		return rc;
	if (hwloc_topology_init(t) < 0)
		return mt_seterr(err, errlen, MT_ENOMEM, "hwloc_topology_init failed");
	hwloc_topology_set_io_types_filter(*t, HWLOC_TYPE_FILTER_KEEP_ALL);
	hwloc_topology_set_flags(*t, HWLOC_TOPOLOGY_FLAG_IS_THISSYSTEM);
	if (hwloc_topology_load(*t) < 0) {
		hwloc_topology_destroy(*t);
		return mt_seterr(err, errlen, MT_ENOENT, "cannot read this machine's topology with hwloc");
	}
	return MT_OK;
}

int mt_node_load_live(unsigned flags, struct mt_node **out, char *err, size_t errlen)
{
	if (!out)
		return mt_seterr(err, errlen, MT_EINVAL, "mt_node_load_live: out is NULL");
	*out = NULL;
	hwloc_topology_t t;
	int rc = live_topology(&t, err, errlen);
	if (rc < 0)
		return rc;
	struct mt_node *n = NULL;
	rc = build(t, "live", true, &n, err, errlen);
	hwloc_topology_destroy(t);
	if (rc < 0)
		return rc;
	if (!(flags & MT_LOAD_NO_VERBS))
		mt_nics_fill_live(n);
	if (!(flags & MT_LOAD_NO_NVML) && mt_nvml_fill(n) < 0) {
		mt_node_free(n);
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory while reading NVML");
	}
	*out = n;
	return MT_OK;
}

int mt_node_export_live(const char *path, char *err, size_t errlen)
{
	if (!path || !*path)
		return mt_seterr(err, errlen, MT_EINVAL, "export: no output file given");
	hwloc_topology_t t;
	int rc = live_topology(&t, err, errlen);
	if (rc < 0)
		return rc;
	/* write to a temporary name and rename, so that a reader never sees half a file */
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp)) {
		hwloc_topology_destroy(t);
		return mt_seterr(err, errlen, MT_EINVAL, "export: output path too long");
	}
	if (hwloc_topology_export_xml(t, tmp, 0) < 0) {
		hwloc_topology_destroy(t);
		unlink(tmp);
		return mt_seterr(err, errlen, MT_ENOENT, "export: cannot write %s", path);
	}
	hwloc_topology_destroy(t);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return mt_seterr(err, errlen, MT_ENOENT, "export: cannot write %s", path);
	}
	return MT_OK;
}
