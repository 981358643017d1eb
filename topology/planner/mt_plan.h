/* mt_plan.h - the job layout planner and its inputs (spec grammar, hostlists, NVLink domain maps).
 *
 * The planner is one pure function of its inputs: the plugin (per node, in slurmstepd), the CLI and
 * the standalone launcher all call mt_plan_build, so `moetopo plan` prints exactly what the plugin
 * applies.  No Slurm and no CUDA in here.
 */
#ifndef MT_PLAN_H
#define MT_PLAN_H

#include "mt_node.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The most tasks one job may have: every count the planner multiplies stays far from int overflow. */
#define MT_MAX_TASKS (1 << 24)

/* ---- the SPEC grammar, defined once: `--moe-topology=SPEC`, MOE_TOPOLOGY, plugstack default=,
 * `moetopo plan --spec`, `moe-launch --spec`.  SPEC is "off", "auto", "help" or key=value,... */
enum mt_mode { MT_MODE_AUTO = 0, MT_MODE_OFF, MT_MODE_HELP, MT_MODE_SPEC };
enum mt_gpus { MT_GPUS_ALL = 0, MT_GPUS_SINGLE };
enum mt_cpu { MT_CPU_NUMA = 0, MT_CPU_NONE };
enum mt_export { MT_EXPORT_MOE = 0, MT_EXPORT_TORCH };

struct mt_spec {
	enum mt_mode mode;
	int ep;            /* expert-parallel size; 0 = whole world in one group per domain (auto) */
	int tp, pp;        /* tensor / pipeline parallel sizes, default 1 */
	int experts;       /* routed experts; 0 = unset */
	int route_groups;  /* max NVLink domains a token may reach; 0 = unlimited */
	enum mt_gpus gpus;
	enum mt_cpu cpu;
	enum mt_export export_;
	bool verbose;
};
void mt_spec_default(struct mt_spec *s);
/* Parses SPEC; on error fills err with one line naming the bad key/value and the valid choices. */
int mt_spec_parse(const char *text, struct mt_spec *s, char *err, size_t errlen);
int mt_spec_format(const struct mt_spec *s, char *buf, size_t len); /* canonical text */
const char *mt_spec_help(void); /* the grammar, for --moe-topology=help and --help texts */

/* ---- Slurm hostlist expressions: "gb-r[01-04]-n[01-18],login1".  An expansion (and a whole domain
 * map) holds at most MT_HOSTLIST_MAX_NAMES names and MT_HOSTLIST_MAX_BYTES bytes of them (each name's
 * length + 1); beyond either it fails with one line, before allocating for the excess. */
#define MT_HOSTLIST_MAX_NAMES (1 << 18)
#define MT_HOSTLIST_MAX_BYTES (16 << 20)
int mt_hostlist_expand(const char *expr, char ***names, int *count, char *err, size_t errlen);
void mt_hostlist_free(char **names, int count);

/* ---- NVLink domain map: node name -> domain name */
struct mt_domains;
/* Reads topology.conf (BlockName=... / leaf SwitchName=... Nodes=...) or a two-column "node domain" file. */
int mt_domains_load(const char *path, struct mt_domains **out, char *err, size_t errlen);
/* NULL when the node is not in the map. */
const char *mt_domains_lookup(const struct mt_domains *d, const char *node);
void mt_domains_free(struct mt_domains *d);
int mt_domains_count(const struct mt_domains *d); /* domains in the map */
/* Builds a map in memory (tests, benchmarks, callers with their own source of domains). */
struct mt_domains *mt_domains_new(void);
/* Adds the nodes of a hostlist to a domain; a node already mapped is an error. */
int mt_domains_add(struct mt_domains *d, const char *nodes, const char *domain, char *err, size_t errlen);
int mt_domains_nodes(const struct mt_domains *d); /* nodes in the map */

/* ---- node presets for planning at scale */
int mt_preset_node(const char *name, struct mt_node **out, char *err, size_t errlen);
const char *mt_preset_names(void); /* "dgx-h100, gb300-nvl72-tray, ..." */
const char *mt_preset_describe(const char *name); /* one line of the preset's facts, NULL if unknown */
int mt_preset_domain_size(const char *name); /* nodes per NVLink domain for the preset (1 = node) */

/* ---- the fabric: a site fact, the same on every node (plugstack.conf fabric=, moetopo plan --oversub).
 * Unknown (oversub 0): the plan keeps the most NVLink-local groups.  Known: the plan minimises the
 * slowest EP group's all-to-all time under simulate's model at these figures, then keeps the most
 * local groups, then minimises the mean (doc/planner.md). */
struct mt_fabric {
	double oversub;     /* spine oversubscription >= 1; 0 = unknown */
	double nic_gbs;     /* NIC GB/s per rail per direction; 0 = 50 */
	double nvlink_gbs;  /* NVLink GB/s per GPU per direction; 0 = 450 */
};
/* "oversub:N[,nic:GBS][,nvlink:GBS]" (keys in any order, each once); one line naming the problem otherwise. */
int mt_fabric_parse(const char *text, struct mt_fabric *f, char *err, size_t errlen);

/* ---- the job */
struct mt_job {
	int n_nodes;
	const char *const *nodes;           /* step nodes in Slurm order */
	const int *tasks;                   /* tasks on each node */
	const int *const *procids;          /* procids[i][t]: SLURM_PROCID of local task t on node i;
					       NULL = block distribution (node order, then local order) */
	const struct mt_node *const *models;/* node model of each node (may repeat the same pointer); a NULL
					       entry (or models NULL): unknown here, the node's ranks are planned
					       but not bound (see mt_plan_bind_node) */
	const struct mt_domains *domains;   /* NULL: NVML fabric cliques if every model has them, else node = domain */
	const char *const *allowed_cpus;    /* per node cpu list the step may use; NULL or NULL entry = all */
	struct mt_spec spec;
	struct mt_fabric fabric;            /* zero: unknown */
};

struct mt_rank {
	int procid;             /* SLURM_PROCID */
	int rank;               /* new global rank */
	int node;               /* index into job nodes */
	int local_rank;         /* order of the rank on its node (by new rank) */
	int gpu;                /* GPU index in the node model, -1 for CPU-only */
	char gpu_pci[MT_PCI_LEN]; /* "" for CPU-only */
	char nics[MT_NAME_LEN * 2]; /* comma list of NIC names of the rank's rail, "" when none */
	int rail;               /* -1 none */
	int numa;               /* NUMA os index the rank is bound to, -1 none */
	char *cpuset;           /* cpu list, malloc'd, "" when cpu=none */
	int ep_group, ep_rank, dp_rank, tp_rank, pp_rank;
	int domain;             /* index into plan->domain_names */
};

struct mt_ep_group {
	int size;
	int *members;           /* global ranks in EP-rank order */
	int n_domains;
	int *domains;           /* domain indices spanned, ascending */
};

struct mt_summary {
	int world, ep_groups, ep_groups_local;
	int max_domains_per_group;
	double mean_domains_per_group;
	double nvlink_local_fraction;   /* EP all-to-all bytes inside NVLink domains, uniform routing */
	double rail_aligned_fraction;   /* cross-node EP bytes between same-rail GPUs */
};

struct mt_plan {
	struct mt_spec spec;
	int world, n_nodes;
	struct mt_rank *ranks;          /* indexed by procid */
	int *by_rank;                   /* by_rank[rank] = procid */
	int n_groups;
	struct mt_ep_group *groups;
	int n_domains;
	char **domain_names;
	int experts_per_rank;           /* 0 when experts unset */
	/* routing groups of EP group g: domain d's experts are experts of ranks in d (see mt_plan_expert_owner) */
	struct mt_summary summary;
	int *node_domain;               /* domain index of each job node */
	char **node_names;              /* copy of the job's node names */
	/* per job node: what is the same for all its ranks */
	int *node_tasks;                /* tasks on the node */
	int *node_rank;                 /* the node's place in the new order (by the lowest rank it holds) */
	bool *node_bound;               /* its ranks have GPU, NIC and CPU bindings */
	char **node_nccl_hca;           /* NCCL_IB_HCA of its ranks: "=" then its rail NICs in rail order;
					   NULL when unbound or without RDMA NICs */
	int master_node;                /* the node holding rank 0: MASTER_ADDR */
};

int mt_plan_build(const struct mt_job *job, struct mt_plan **out, char *err, size_t errlen);
/* Binds the ranks of job node NODE of a plan built without its model (what each slurmstepd does for its
 * own node: the ranks come from job-wide facts only, the binding from this node's model).  ALLOWED_CPUS
 * may be NULL (all).  An error (more tasks than GPUs, no memory) leaves the node unbound. */
int mt_plan_bind_node(struct mt_plan *p, int node, const struct mt_node *model, const char *allowed_cpus,
		      char *err, size_t errlen);
void mt_plan_free(struct mt_plan *p);
/* EP rank owning routed expert e: experts are spread evenly, contiguous blocks per EP rank. */
int mt_plan_expert_owner(const struct mt_plan *p, int expert);
void mt_plan_print(const struct mt_plan *p, FILE *f);      /* per-rank table + summary */
void mt_plan_print_json(const struct mt_plan *p, FILE *f); /* doc/json-schema.md */
/* Routing group k of EP group g (k < groups[g].n_domains): its domain and expert range [*lo, *hi). */
int mt_plan_routing_group(const struct mt_plan *p, int g, int k, int *domain, int *lo, int *hi);

/* ---- how Slurm spreads tasks over nodes (distribution.c) */
/* SLURM_STEP_TASKS_PER_NODE syntax ("4(x3),2") for n_nodes nodes into *tasks (malloc'd). */
int mt_tasks_per_node_parse(const char *text, int n_nodes, int **tasks, char *err, size_t errlen);
enum mt_dist { MT_DIST_BLOCK = 0, MT_DIST_CYCLIC };
/* "block", "cyclic", or SLURM_DISTRIBUTION's forms ("cyclic:block", "block:cyclic,Pack"). */
int mt_dist_parse(const char *text, enum mt_dist *d, char *err, size_t errlen);
/* ids[i][t]: the SLURM_PROCID of local task t on node i (for struct mt_job's procids); NULL: no memory. */
int **mt_dist_procids(enum mt_dist d, const int *tasks, int n_nodes);
void mt_procids_free(int **ids, int n_nodes);

/* ---- the rank contract: the environment one task receives (contract.c, names in doc/launcher.md).
 * The plugin and both launcher modes apply the list with one loop: setenv(name, value, overwrite). */
struct mt_env_var {
	const char *name;   /* static */
	char *value;        /* malloc'd, any length */
	bool overwrite;     /* false: a value already in the task's environment wins (NCCL_IB_HCA, UCX, NVSHMEM) */
};
struct mt_env {
	int n;
	struct mt_env_var *v;
};
/* Slurm's own layout of a task, for the contract without a plan: rank = SLURM_PROCID, EP groups of ep
 * consecutive ranks (ep 0: one group of the whole world), as mt_sim_default models it. */
struct mt_slurm_task {
	int world, local_rank, local_size, node_rank;
	const char *node_name;      /* MOE_DOMAIN when domain is NULL: each node its own domain */
	const char *domain;         /* the node's NVLink domain from a domain map, or NULL */
	int ep;                     /* EP group size, dividing world; 0 = the whole world */
	int experts, route_groups;  /* MOE_EXPERTS, MOE_ROUTE_GROUPS when ep > 0 (0 = unset / unlimited) */
};
struct mt_task {
	int procid;                 /* SLURM_PROCID (standalone: the task's slot) */
	/* this node's GPUs of the step, as the task's CUDA names them (Slurm's tokens) and by PCI bus id */
	int n_gpus;
	const char *const *gpu_tokens;
	const char *const *gpu_pci;
	const char *master_addr;    /* NULL: the name of the plan's master node */
	unsigned master_port;       /* mt_contract_port under Slurm */
	bool no_binding;            /* ranks only, no GPU, NIC or CPU variables (the binding is not applied) */
	struct mt_slurm_task slurm; /* without a plan only */
	bool torch;                 /* without a plan: also the torch-style variables */
	bool torch_only;            /* without a plan: only those (the plugin's strict=no fallback) */
};
/* The whole environment of task t: from the plan p, or with p == NULL from Slurm's layout (t->slurm).
 * On a node the plan could not bind (p->node_bound false) the ranks are the plan's, without GPU, NIC or
 * CPU variables.  *e is filled on success (free with mt_env_free); err names the problem otherwise. */
int mt_contract_env(const struct mt_plan *p, const struct mt_task *t, struct mt_env *e, char *err,
		    size_t errlen);
void mt_env_free(struct mt_env *e);
const char *mt_env_get(const struct mt_env *e, const char *name); /* NULL when not in e */
int mt_env_add(struct mt_env *e, const char *name, bool overwrite, const char *value); /* launcher extras */
/* The rendezvous port of a step, the same on every node: Slurm's reserved port (SLURM_STEP_RESV_PORTS)
 * when it gives one, else MT_PORT_BASE + (job * 131 + step) % MT_PORT_SPAN, below the ephemeral range. */
#define MT_PORT_BASE 20000u
#define MT_PORT_SPAN 10000u
unsigned mt_contract_port(const char *resv_ports, unsigned job_id, unsigned step_id);
/* CPU list -> sched_setaffinity of the calling thread; this thread's allowed CPUs as a list (malloc'd). */
int mt_cpus_bind(const char *list, char *err, size_t errlen);
char *mt_cpus_allowed(void);

/* ---- `moetopo simulate`: estimated all-to-all time per MoE layer (model in doc/planner.md) */
struct mt_sim_params {
	double tokens;      /* tokens per GPU per micro-batch */
	double hidden;      /* hidden size */
	double topk;        /* routed experts per token */
	double bytes;       /* bytes per element on the wire */
	double nvlink_gbs;  /* NVLink GB/s per GPU per direction */
	double nic_gbs;     /* NIC GB/s per rail per direction */
	double oversub;     /* spine oversubscription (>= 1): a domain's uplinks carry its NICs' bandwidth / oversub,
			     * shared by all groups; rail-crossing bytes also go this much slower per rank */
	int route_groups;   /* 0 = uniform routing; M = group-limited to M domains */
};
struct mt_sim_result {
	double dispatch_us, combine_us, total_us; /* the slowest EP group: it gates the training step */
	double mean_group_us;                    /* dispatch + combine averaged over EP groups */
	double net_bytes_max, nvl_bytes_max;  /* per rank, the slowest rank's */
	double spine_us_max;                  /* busiest NVLink domain's uplink time, one direction */
	int spine_bound_groups;               /* groups whose time the shared spine sets, not their NICs */
	struct mt_summary summary;
};
void mt_sim_default_params(struct mt_sim_params *sp);
/* Our plan. */
int mt_sim_plan(const struct mt_plan *p, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err,
		size_t errlen);
/* Slurm's default layout of the same job: rank = SLURM_PROCID, local task t on GPU t in PCI order,
 * EP groups of consecutive ranks (Megatron order with tp), same domains as the plan. */
int mt_sim_default(const struct mt_job *job, const struct mt_plan *p, const struct mt_sim_params *sp,
		   struct mt_sim_result *res, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
