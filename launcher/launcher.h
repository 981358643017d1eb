/* launcher.h - moe-launch's modules: options (main.c), applying the rank contract to the environment
 * (contract.c; the contract itself is the library's), standalone spawning and supervision (standalone.c), Slurm mode with its rendezvous
 * (slurm.c) and the PMI2 client (pmi2.c).  doc/launcher.md describes what a trainer receives.
 */
#ifndef ML_LAUNCHER_H
#define ML_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "mt_plan.h"

#define ML_NAME "moe-launch"
#define ML_ERRLEN 512

enum ml_rdv { ML_RDV_AUTO = 0, ML_RDV_TCP, ML_RDV_PMI2 };

struct ml_opts {
	int nproc;              /* > 0: standalone mode */
	const char *spec;       /* --spec, else MOE_TOPOLOGY, else "auto"; under Slurm: the fallback's EP size */
	const char *domains;    /* --domains: the domain map naming MOE_DOMAIN in Slurm's fallback layout */
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

/* The rank contract is the library's (mt_contract_env); contract.c applies it to this process. */
int ml_env_apply(const struct mt_env *e);     /* setenv each variable with its overwrite flag */
void ml_env_print(const struct mt_env *e, FILE *f); /* "  NAME=VALUE" lines (--dry-run) */

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
