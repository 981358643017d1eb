/* presets.c - node models built in memory, for planning at scale without a captured XML per node.
 *
 * Each preset states the facts it encodes (doc/planner.md lists them).  The nodes are allocated
 * field by field with malloc, exactly as mt_node_free releases them.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"

struct preset_gpu {
	const char *pci;
	int numa; /* index into the preset's NUMA list */
	int rail;
	const char *nic_pci; /* NIC on the GPU's PCIe switch */
};

struct preset {
	const char *name;
	const char *what;
	int domain_size; /* nodes per NVLink domain */
	unsigned gpu_device;
	const char *gpu_model;
	int n_gpus;
	struct preset_gpu gpus[8];
	const char *nic_prefix;
	enum mt_link_layer link;
	int n_numa;
	const char *numa_cpus[2];
	const char *all_cpus;
	int cores, pus;
	int nvlinks; /* NVLink links per GPU pair through NVSwitch */
};

/* DGX H100: GPU and ConnectX-7 PCI addresses as `nvidia-smi` and `ibdev2netdev` show them on a
 * DGX H100 (ibp24s0 = 0000:18:00.0 beside GPU 0000:1b:00.0, ...); 2x Xeon 8480C, 56 cores each, SMT. */
static const struct preset presets[] = {
	{"dgx-h100", "NVIDIA DGX H100: 8x H100 SXM, 8x ConnectX-7 400G (one rail per GPU), 2 sockets",
	 1, 0x2330, "H100 80GB HBM3", 8,
	 {{"0000:1b:00.0", 0, 0, "0000:18:00.0"}, {"0000:43:00.0", 0, 1, "0000:40:00.0"},
	  {"0000:52:00.0", 0, 2, "0000:4f:00.0"}, {"0000:61:00.0", 0, 3, "0000:5e:00.0"},
	  {"0000:9d:00.0", 1, 4, "0000:9a:00.0"}, {"0000:c3:00.0", 1, 5, "0000:c0:00.0"},
	  {"0000:d1:00.0", 1, 6, "0000:ce:00.0"}, {"0000:df:00.0", 1, 7, "0000:dc:00.0"}},
	 "mlx5_", MT_LL_IB, 2, {"0-55,112-167", "56-111,168-223"}, "0-223", 112, 224, 18},
	/* GB300 NVL72 compute tray, from a real NCCL topology dump of one (tests/fixtures/nccl/
	 * oci-hpc__GB300MP.xml): each GPU shares a PCIe switch with one ConnectX-8.  Rails are numbered
	 * in GPU PCI order, as the node model numbers them when it reads that XML, so a plan from the
	 * preset and one from the captured XML bind the same GPUs. */
	{"gb300-nvl72-tray",
	 "GB300 NVL72 compute tray: 4x GB300, 4x ConnectX-8 800G (one rail per GPU), 2 Grace CPUs; "
	 "18 trays per NVLink domain",
	 18, 0x31c2, "NVIDIA GB300", 4,
	 {{"0008:06:00.0", 0, 0, "0008:03:00.0"}, {"0009:06:00.0", 0, 1, "0009:03:00.0"},
	  {"0018:06:00.0", 1, 2, "0018:03:00.0"}, {"0019:06:00.0", 1, 3, "0019:03:00.0"}},
	 "mlx5_", MT_LL_IB, 2, {"0-71", "72-143"}, "0-143", 144, 144, 18},
	/* GB200 NVL72 tray: GPU addresses and device id from the AWS p6e-gb200 capture
	 * (tests/fixtures/hwloc); NIC addresses are placed beside each GPU (not captured). */
	{"gb200-nvl72-tray",
	 "GB200 NVL72 compute tray: 4x GB200, 4x ConnectX-7 400G (one rail per GPU), 2 Grace CPUs; "
	 "18 trays per NVLink domain",
	 18, 0x2941, "NVIDIA GB200", 4,
	 {{"0000:29:00.0", 0, 0, "0000:28:00.0"}, {"0000:3f:00.0", 0, 1, "0000:3e:00.0"},
	  {"0000:9c:00.0", 1, 2, "0000:9b:00.0"}, {"0000:b2:00.0", 1, 3, "0000:b1:00.0"}},
	 "mlx5_", MT_LL_IB, 2, {"0-71", "72-143"}, "0-143", 144, 144, 18},
	{"cpu-2socket", "CPU-only node: 2 sockets, 2 NUMA nodes, 64 cores / 128 PUs, no GPU, no RDMA NIC",
	 1, 0, "", 0, {{0}}, "", MT_LL_UNKNOWN, 2, {"0-31,64-95", "32-63,96-127"}, "0-127", 64, 128, 0},
};
#define N_PRESETS (sizeof(presets) / sizeof(presets[0]))

static const struct preset *find(const char *name)
{
	for (size_t i = 0; name && i < N_PRESETS; i++)
		if (!strcmp(presets[i].name, name))
			return &presets[i];
	return NULL;
}

const char *mt_preset_names(void)
{
	return "dgx-h100, gb300-nvl72-tray, gb200-nvl72-tray, cpu-2socket";
}

const char *mt_preset_describe(const char *name)
{
	const struct preset *p = find(name);
	return p ? p->what : NULL;
}

int mt_preset_domain_size(const char *name)
{
	const struct preset *p = find(name);
	return p ? p->domain_size : 0;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

int mt_preset_node(const char *name, struct mt_node **out, char *err, size_t errlen)
{
	const struct preset *p = find(name);
	*out = NULL;
	if (!p) {
		if (err && errlen)
			snprintf(err, errlen, "unknown preset '%s' (valid: %s)", name ? name : "",
				 mt_preset_names());
		return MT_EINVAL;
	}
	struct mt_node *n = calloc(1, sizeof(*n));
	if (!n)
		goto nomem;
	snprintf(n->source, sizeof(n->source), "preset:%s", p->name);
	n->n_gpus = p->n_gpus;
	n->n_nics = p->n_gpus; /* one rail NIC per GPU in every GPU preset */
	n->n_numa = p->n_numa;
	n->n_cores = p->cores;
	n->n_pus = p->pus;
	n->nvswitch = p->n_gpus > 0;
	n->cpuset = dup_str(p->all_cpus);
	n->numa_os = calloc((size_t)p->n_numa, sizeof(int));
	n->numa_cpusets = calloc((size_t)p->n_numa, sizeof(char *));
	if (!n->cpuset || !n->numa_os || !n->numa_cpusets)
		goto nomem;
	for (int i = 0; i < p->n_numa; i++) {
		n->numa_os[i] = i;
		if (!(n->numa_cpusets[i] = dup_str(p->numa_cpus[i])))
			goto nomem;
	}
	if (p->n_gpus) {
		int ng = p->n_gpus, nc = ng + ng;
		n->gpus = calloc((size_t)ng, sizeof(*n->gpus));
		n->nics = calloc((size_t)ng, sizeof(*n->nics));
		n->pcie = calloc((size_t)(ng * nc), sizeof(*n->pcie));
		n->nvlink = calloc((size_t)(ng * ng), sizeof(double));
		if (!n->gpus || !n->nics || !n->pcie || !n->nvlink)
			goto nomem;
		for (int g = 0; g < ng; g++) {
			const struct preset_gpu *pg = &p->gpus[g];
			struct mt_gpu *G = &n->gpus[g];
			G->index = g;
			snprintf(G->pci, sizeof(G->pci), "%s", pg->pci);
			G->vendor = 0x10de;
			G->device = p->gpu_device;
			snprintf(G->model, sizeof(G->model), "%s", p->gpu_model);
			G->supported = true;
			G->numa = pg->numa;
			if (!(G->cpuset = dup_str(p->numa_cpus[pg->numa])))
				goto nomem;
			snprintf(G->cuda, sizeof(G->cuda), "cuda%d", g);
			snprintf(G->nvml, sizeof(G->nvml), "nvml%d", g);
			G->n_nics = 1;
			G->nics[0] = pg->rail; /* NICs are stored in rail order */
			G->rail = pg->rail;
			struct mt_nic *N = &n->nics[pg->rail];
			snprintf(N->name, sizeof(N->name), "%s%d", p->nic_prefix, pg->rail);
			snprintf(N->pci, sizeof(N->pci), "%s", pg->nic_pci);
			N->rdma = true;
			N->link = p->link;
			N->ports = 1;
			N->numa = pg->numa;
			N->rail = pg->rail;
		}
		/* PCIe relations: own NIC shares the GPU's switch (PIX), same socket NODE, else SYS */
		for (int g = 0; g < ng; g++)
			for (int c = 0; c < nc; c++) {
				int numa_c = c < ng ? p->gpus[c].numa : n->nics[c - ng].numa;
				enum mt_rel r = numa_c == p->gpus[g].numa ? MT_REL_NODE : MT_REL_SYS;
				if (c == g)
					r = MT_REL_X;
				else if (c >= ng && c - ng == p->gpus[g].rail)
					r = MT_REL_PIX;
				n->pcie[g * nc + c] = r;
			}
		for (int a = 0; a < ng; a++)
			for (int b = 0; b < ng; b++)
				n->nvlink[a * ng + b] = a == b ? 0 : p->nvlinks;
	}
	*out = n;
	return 0;
nomem:
	mt_node_free(n);
	if (err && errlen)
		snprintf(err, errlen, "out of memory building preset '%s'", p->name);
	return MT_ENOMEM;
}
