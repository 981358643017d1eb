/* mt_node.h - the node model: GPUs, RDMA NICs, NUMA, PCIe relations, NVLink, rails.
 *
 * Built from the live machine (hwloc with I/O devices + NVML via dlopen + verbs/sysfs) or from a
 * file (hwloc XML or NCCL topology XML).  No Slurm and no CUDA in here: the plugin, the CLI and the
 * launcher all read nodes through this one interface.  Every loader fills `err` with one line
 * naming the problem and returns a negative MT_E* code; on error *out is left NULL.
 */
#ifndef MT_NODE_H
#define MT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mt_err {
	MT_OK = 0,
	MT_ENOENT = -1,   /* file or device missing */
	MT_EPARSE = -2,   /* corrupt / truncated / unknown-format input */
	MT_ENOPCI = -3,   /* topology has no PCI objects (exported without I/O) */
	MT_EINVAL = -4,   /* bad argument or spec value */
	MT_ENOMEM = -5,
	MT_EIMPOSSIBLE = -6, /* a layout that cannot be satisfied */
	MT_EPERM = -7,    /* refused for safety (e.g. untrusted file as root) */
};

#define MT_ERRLEN 512      /* size callers give for err buffers */
#define MT_PCI_LEN 16      /* "dddd:bb:dd.f" + NUL */
#define MT_NAME_LEN 64
#define MT_MAX_GPU_NICS 8  /* NICs a single GPU may own as its rail set */

/* PCIe relation between two devices, ordered from closest to farthest, as `nvidia-smi topo -m`. */
enum mt_rel {
	MT_REL_X = 0,  /* self */
	MT_REL_PIX,    /* at most one PCIe bridge */
	MT_REL_PXB,    /* several PCIe bridges, no host bridge */
	MT_REL_PHB,    /* through a PCIe host bridge (same root complex) */
	MT_REL_NODE,   /* across host bridges within one NUMA node */
	MT_REL_SYS,    /* across NUMA nodes / sockets (SMP interconnect) */
	MT_REL_UNKNOWN,
};
const char *mt_rel_name(enum mt_rel r); /* "X","PIX","PXB","PHB","NODE","SYS","?" */

enum mt_link_layer { MT_LL_UNKNOWN = 0, MT_LL_IB, MT_LL_ETH };
const char *mt_link_layer_name(enum mt_link_layer l); /* "unknown","infiniband","ethernet" */

struct mt_gpu {
	int index;                 /* position in node order (sorted by PCI bus id) */
	char pci[MT_PCI_LEN];      /* "0000:1b:00.0", lower case */
	unsigned vendor, device;   /* PCI ids */
	char model[MT_NAME_LEN];   /* "H100 80GB HBM3" when known, else "" */
	bool supported;            /* NVIDIA (vendor 0x10de, class 0x03xx) */
	int numa;                  /* NUMA node os index, -1 unknown */
	char *cpuset;              /* local CPUs as a list "0-55,112-167" (malloc'd, never NULL) */
	char cuda[MT_NAME_LEN];    /* "cuda0" or "" */
	char nvml[MT_NAME_LEN];    /* "nvml0" or "" */
	char uuid[MT_NAME_LEN];    /* "GPU-..." when NVML gave it, else "" */
	/* multi-node NVLink fabric (NVML GpuFabricInfo, state COMPLETED) */
	bool has_fabric;
	char fabric_uuid[40];      /* clusterUuid as 36-char text */
	unsigned clique;           /* cliqueId */
	/* rail assignment */
	int n_nics;
	int nics[MT_MAX_GPU_NICS]; /* indices into node->nics, closest first */
	int rail;                  /* rail index, same on every node with the same PCI layout; -1 none */
};

struct mt_nic {
	char name[MT_NAME_LEN];    /* "mlx5_0", "rdmap79s0", or netdev name for plain Ethernet */
	char pci[MT_PCI_LEN];
	bool rdma;                 /* RDMA capable (OpenFabrics OS device); false = plain Ethernet, never a rail */
	enum mt_link_layer link;
	char netdev[MT_NAME_LEN];  /* "ib0", "eth0" or "" */
	int ports;                 /* >=1 when known, 0 unknown */
	int numa;
	int rail;                  /* rail index of the NIC (same numbering as gpus' rail), -1 none */
};

struct mt_node {
	char source[256];          /* "live", or the file it came from */
	char hostname[MT_NAME_LEN];/* from the XML/live machine when known */
	int n_gpus;
	struct mt_gpu *gpus;
	int n_nics;                /* RDMA NICs first (rail order), then plain Ethernet */
	struct mt_nic *nics;
	int n_numa;
	int *numa_os;              /* os index of each NUMA node */
	char **numa_cpusets;       /* cpu list of each NUMA node */
	char *cpuset;              /* all CPUs of the node, list form */
	int n_cores, n_pus;        /* 0 when unknown (NCCL XML gives PUs only) */
	char **core_cpusets;       /* PUs of each core in hwloc's logical order, list form; NULL when unknown */
	/* PCIe relation matrix: rows = GPUs, cols = GPUs then NICs: pcie[g * (n_gpus + n_nics) + c] */
	enum mt_rel *pcie;
	/* NVLink: links (or bandwidth in GB/s when only that is known) between GPUs, n_gpus^2; NULL = unknown */
	double *nvlink;
	bool nvlink_is_bw;         /* true when nvlink[] holds GB/s rather than link counts */
	bool nvswitch;             /* GPUs connect through NVSwitch (all-to-all NVLink) */
};

/* Loaders. `flags` is a mask of MT_LOAD_*. */
enum { MT_LOAD_NO_NVML = 1 << 0, MT_LOAD_NO_VERBS = 1 << 1 };
int mt_node_load_live(unsigned flags, struct mt_node **out, char *err, size_t errlen);
/* Reads an hwloc XML (v1.x, 2.x, 3.x) or an NCCL topology XML (detected from the root element).
 * An NCCL file dumped from several hosts (host_hash) is read for its first host only. */
int mt_node_load_file(const char *path, struct mt_node **out, char *err, size_t errlen);
/* Writes the live machine's hwloc XML (with whole I/O) for caching per node. */
int mt_node_export_live(const char *path, char *err, size_t errlen);
/* A copy holding only the GPUs whose PCI bus ids are listed (what Slurm allocated), in node (PCI)
 * order whatever the order of `pci`; GPU rails, NICs and NIC indices are kept unchanged. */
int mt_node_subset(const struct mt_node *n, const char *const *pci, int count,
		   struct mt_node **out, char *err, size_t errlen);
/* Frees a node and everything it points to with free(): gpus[i].cpuset, gpus, nics, numa_os,
 * numa_cpusets[i], numa_cpusets, cpuset, core_cpusets[i] (n_cores of them), core_cpusets, pcie, nvlink
 * (any of them may be NULL).  Nodes built in
 * memory by other code (planner presets) must allocate those members with malloc for this reason. */
void mt_node_free(struct mt_node *n);

/* Output for `moetopo show`: human table or the documented JSON schema (doc/json-schema.md). */
void mt_node_print(const struct mt_node *n, FILE *f);
void mt_node_print_json(const struct mt_node *n, FILE *f);

/* cpu list helpers ("0-3,8,10-11"), shared by the planner and the plugin.  `mask` is an array of
 * maxcpu bytes, one per CPU (1 = in the set, 0 = not).
 * parse: clears mask, sets the listed CPUs; returns how many are set (0 for ""), MT_EPARSE for bad
 *   syntax or a CPU >= maxcpu, MT_EINVAL for bad arguments.
 * format: writes the shortest list ("" for none); returns its length, MT_ENOMEM when buf is too small. */
int mt_cpulist_parse(const char *list, unsigned char *mask, int maxcpu); /* returns count or MT_EPARSE */
int mt_cpulist_format(const unsigned char *mask, int maxcpu, char *buf, size_t len);
/* The CPUs (PUs) of the cores listed in CORES, a list of core indices in hwloc's logical order ("0-3,8-11":
 * how Slurm names the cores it allocated to a step on a node, S_STEP_ALLOC_CORES), into *cpus as a cpu list
 * (malloc'd).  MT_EPARSE for an empty or malformed list or a core the node does not have, MT_EINVAL when the
 * model knows no cores (NCCL topology files), MT_ENOMEM; err filled, *cpus NULL on error. */
int mt_node_core_cpus(const struct mt_node *n, const char *cores, char **cpus, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
