/* plugin.h - internal interface between the files of the moe_topology SPANK plugin.
 *
 * The plugin is a thin shell around libmoetopo: moe_topology.c routes each SPANK callback by context,
 * args.c owns the --moe-topology option, config.c the plugstack.conf arguments, client.c the
 * srun/sbatch/salloc side, stepd.c the slurmstepd side (facts.c gathers the step's facts, apply.c applies
 * one task's contract, computed by the library's mt_contract_env), log.c writes every line, version.c
 * knows the Slurm release it was built for, slurmtopo.c reads what Slurm's own topology says
 * (topology.conf beside slurm.conf, SLURM_TOPOLOGY_ADDR).
 * Nothing here is exported: the version script keeps only the SPANK symbols visible.
 */
#ifndef MTP_PLUGIN_H
#define MTP_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <slurm/spank.h>

#include "mt_plan.h"

#define MTP_NAME "moe-topology" /* prefix of every line the plugin logs */
#define MTP_OPTION "moe-topology"
#define MTP_ENV_SPEC "MOE_TOPOLOGY"
#define MTP_SPEC_MAX 1024      /* longer SPEC text is refused before parsing: it is untrusted input */
#define MTP_MAXCPU 8192        /* CPU numbers the plugin reads, as the library's cpu lists */
#define MTP_GPU_LIST_MAX 1023  /* longest CUDA_VISIBLE_DEVICES / SLURM_STEP_GPUS accepted (16 UUIDs: 655) */

/* ---- plugstack.conf arguments (config.c) */
enum mtp_nvml { MTP_NVML_AUTO = 0, MTP_NVML_OFF };
struct mtp_config {
	char *default_spec;    /* default=SPEC, NULL when absent */
	char *domains;         /* domains=PATH */
	bool domains_slurm;    /* domains=slurm: Slurm's own topology.conf (slurmtopo.c) */
	char *topology;        /* topology=PATH with %n for the node name; NULL = live hwloc */
	enum mtp_nvml nvml;
	bool strict;
	struct mt_fabric fabric; /* fabric=oversub:N[,nic:X][,nvlink:Y]; zero when absent (the planner then keeps the most local groups) */
	char error[MT_ERRLEN]; /* first configuration error, "" when the line was valid */
};
int mtp_config_parse(int ac, char **av, struct mtp_config *c);
/* Makes C inactive with WHY as its error, dropping every setting read so far. */
void mtp_config_refuse(struct mtp_config *c, const char *why);
void mtp_config_free(struct mtp_config *c);
/* Opens PATH to be read as root: a regular file, not a symlink, owned by root (or by the daemon's own
 * user) that nobody else can write, under folders nobody else can write (sticky ones excepted).  The file
 * is judged on the opened descriptor (no check-then-open race).  Returns the descriptor (O_CLOEXEC) and,
 * when REAL is not NULL, the resolved name in *REAL (malloc'd): only root can rebind that name, so the
 * library may read it by name.  Else MTP_ENOFILE when it does not exist, or -1; err filled either way. */
#define MTP_ENOFILE (-2)
int mtp_open_trusted(const char *path, char **real, char *err, size_t errlen);
/* Puts PATH back where a message names its resolved name REAL. */
void mtp_name_back(char *err, size_t errlen, const char *real, const char *path);

/* ---- which Slurm (version.c) */
const char *mtp_slurm_built(void);               /* the release of the spank.h we were built with */
bool mtp_same_release(const char *a, const char *b);   /* same major.minor */
/* 0 when RUNNING (S_SLURM_VERSION; NULL when Slurm did not say) is the release we were built for; else
 * -1 with the message for the admin in err. */
int mtp_version_compare(const char *running, char *err, size_t errlen);

/* ---- Slurm's own topology (slurmtopo.c) */
/* The topology.conf beside the slurm.conf slurmstepd runs with (its SLURM_CONF, else the configured
 * Slurm sysconfdir) into BUF; -1 with err when Slurm would read a topology.yaml there instead. */
int mtp_slurm_topology_conf(char *buf, size_t len, char *err, size_t errlen);
/* From SLURM_TOPOLOGY_ADDR and its _PATTERN ("b1.n7", "block.node"): the element above NODE (its block,
 * or leaf switch) into DOM.  1 when Slurm runs no topology plugin, -1 when the address does not end in
 * NODE or does not fit. */
int mtp_topology_addr_domain(const char *addr, const char *pattern, const char *node, char *dom, size_t len);

/* ---- the option (args.c) */
int mtp_option_register(spank_t sp);
const char *mtp_option_value(void);   /* the --moe-topology value seen by this process, NULL if none */
void mtp_option_free(void);
/* The SPEC that applies: the option (srun's own, or sbatch's carried to the step), else MOE_TOPOLOGY
 * from the job's environment (`env`, may be NULL), else plugstack default=, else "off".
 * *origin names where it came from, for messages. */
const char *mtp_spec_text(const struct mtp_config *c, const char *env, const char **origin);
const char *mtp_help_text(void);
/* Client side (srun, sbatch, salloc) only: parses TEXT, logs one line naming ORIGIN on error (-1), prints
 * the grammar and ends the client for "help"; else returns the SPEC's enum mt_mode. */
int mtp_spec_check(const char *origin, const char *text);

/* ---- contexts */
int mtp_client_post_opt(spank_t sp, const struct mtp_config *c);  /* client.c: srun, sbatch, salloc */
int mtp_stepd_user_init(spank_t sp, const struct mtp_config *c);  /* stepd.c */
int mtp_stepd_task_init(spank_t sp, const struct mtp_config *c);
void mtp_stepd_exit(void);

/* ---- step facts (facts.c) */
struct mtp_facts {
	uint32_t job_id, step_id;
	int node_id, n_nodes, n_local, world;
	char **nodes;          /* step nodes, Slurm order */
	int n_names;           /* entries in nodes (for freeing) */
	int *tasks;            /* tasks per node */
	int **procids;         /* procids[i][t]; NULL = block distribution */
	uint32_t *local_ids;   /* global id of each local task */
	/* the step's GPUs on this node: Slurm's CUDA_VISIBLE_DEVICES tokens and the absolute GRES index of each */
	int n_gpus;
	char **gpu_tokens;
	int *gpu_index;
	char *gpu_list;        /* the step-level CUDA_VISIBLE_DEVICES as Slurm set it, "" when none */
	char *allowed_cpus;    /* CPUs the step may use on this node, list form (stepd.c: allowed_cpus) */
	char *alloc_cores;     /* S_STEP_ALLOC_CORES: the step's cores on this node ("0-3,8-11"), NULL when not given */
	unsigned master_port;
	char topo_addr[256];   /* SLURM_TOPOLOGY_ADDR and _PATTERN of this node, "" when unset */
	char topo_pattern[64];
};
/* The job-wide facts (ids, nodes, tasks, task ids, port): the same on every node of the step. */
int mtp_facts_gather(spank_t sp, struct mtp_facts *f, char *err, size_t errlen);
/* This node's own facts (the step's GPUs and CPUs here): a failure concerns this node only. */
int mtp_facts_local(spank_t sp, struct mtp_facts *f, char *err, size_t errlen);
void mtp_facts_free(struct mtp_facts *f);
/* ---- pure helpers (layout.c) */
/* True when a node name is safe inside a file name: letters, digits, '.', '-', '_', not starting with '.'. */
bool mtp_node_name_ok(const char *s);
/* The GRES index of each of N GPU tokens ("0".."1023", no repeats) into index[]; -1 with err otherwise. */
int mtp_gpu_indices(char *const *tokens, int n, int *index, char *err, size_t errlen);
/* CUDA_VISIBLE_DEVICES tokens tasks will see: each a device index 0-1023 or a GPU/MIG UUID, none twice. */
int mtp_gpu_tokens_check(char *const *tokens, int n, char *err, size_t errlen);
/* ALLOC (the CPUs of the step's cores) within AFFINITY (slurmstepd's) into *within (malloc'd, "" when they
 * share none); *outside = how many of ALLOC's CPUs AFFINITY lacks.  -1 on a bad list or no memory. */
int mtp_cpus_within(const char *alloc, const char *affinity, char **within, int *outside);

/* ---- one task (apply.c): the planned CPUs (when CPUS is not NULL or ""), then every variable of E.
 * The affinity, the only step that can be refused, comes first: a failure leaves the task as it was. */
int mtp_apply(spank_t sp, const struct mt_env *e, const char *cpus, char *err, size_t errlen);

/* Messages (log.c): one line each, prefixed MTP_NAME, control characters from quoted input made '?'.
 * From the step, ERROR and USER reach the user's stderr (ERROR also the slurmd log); INFO only the log. */
enum mtp_log_kind { MTP_LOG_ERROR, MTP_LOG_INFO, MTP_LOG_USER };
void mtp_log(enum mtp_log_kind kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define mtp_error(...) mtp_log(MTP_LOG_ERROR, __VA_ARGS__)
#define mtp_info(...) mtp_log(MTP_LOG_INFO, __VA_ARGS__)
#define mtp_user(...) mtp_log(MTP_LOG_USER, __VA_ARGS__)

#endif
