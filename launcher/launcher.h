/* launcher.h - moe-launch's modules: options (main.c), the rank contract in the environment
 * (contract.c), standalone spawning and supervision (standalone.c), Slurm mode with its rendezvous
 * (slurm.c) and the PMI2 client (pmi2.c).  doc/launcher.md describes what a trainer receives.
 */
#ifndef ML_LAUNCHER_H
#define ML_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>

#include "mt_plan.h"

#define ML_NAME "moe-launch"
#define ML_ERRLEN 512

enum ml_rdv { ML_RDV_AUTO = 0, ML_RDV_TCP, ML_RDV_PMI2 };

struct ml_opts {
	int nproc;              /* > 0: standalone mode */
	const char *spec;       /* --spec, else MOE_TOPOLOGY, else "auto" */
	const char *transport;  /* --transport: exported as MOE_TRANSPORT */
	double timeout;         /* --timeout: MOE_COMM_TIMEOUT and the rendezvous */
	bool timeout_set;
	double grace;           /* seconds between SIGTERM and SIGKILL when stopping ranks */
	const char *master_addr;/* --master-addr / --master-port override the contract's */
	int master_port;
	enum ml_rdv rdv;
	bool dry_run;           /* print each rank's binding and environment, start nothing */
	bool verbose;
	char **argv;            /* PROGRAM ARGS... (NULL-terminated) */
};

/* One rank's contract, as the plugin would set it (names in doc/launcher.md). */
struct ml_env {
	int n;
	char **kv; /* "NAME=VALUE" strings, malloc'd */
};
void ml_env_set(struct ml_env *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void ml_env_free(struct ml_env *e);
/* The plugin's variables for rank `procid` of a plan on a single node (standalone). */
void ml_contract_from_plan(struct ml_env *e, const struct mt_plan *p, const struct mt_node *node, int procid,
			   int local_size, const char *master_addr, int master_port);
/* Applies e to this process's environment. */
int ml_env_apply(const struct ml_env *e);

/* CPU list -> sched_setaffinity of the calling process. */
int ml_bind_cpus(const char *list, char *err, size_t errlen);
/* This process's allowed CPUs as a list (malloc'd), NULL on error. */
char *ml_allowed_cpus(void);

int ml_standalone(const struct ml_opts *o);   /* returns the exit code */
int ml_slurm(const struct ml_opts *o);        /* execs the program, or returns an exit code */

/* PMI2 over PMI_FD: publishes `value` under `key`, fences, reads every rank's value. */
struct ml_pmi2;
int ml_pmi2_init(struct ml_pmi2 **out, int *rank, int *size, char *err, size_t errlen);
int ml_pmi2_put(struct ml_pmi2 *p, const char *key, const char *value, char *err, size_t errlen);
int ml_pmi2_fence(struct ml_pmi2 *p, char *err, size_t errlen);
int ml_pmi2_get(struct ml_pmi2 *p, const char *key, char *value, size_t len, char *err, size_t errlen);
void ml_pmi2_finalize(struct ml_pmi2 *p);

void ml_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
