/* apply.c - apply one task's contract inside the task: CPU affinity, then the environment.
 *
 * Runs in the task's own process (task_init) after Slurm's binding.  What to set is the library's
 * (mt_contract_env, the same list the launchers apply); the affinity, the only step that can be refused,
 * comes first, so a failure leaves the task as Slurm made it.
 */
#include "plugin.h"

int mtp_apply(spank_t sp, const struct mt_env *e, const char *cpus, char *err, size_t errlen)
{
	if (cpus && cpus[0] && mt_cpus_bind(cpus, err, errlen))
		return -1;
	/* ESPANK_ENV_EXISTS for a value the user set (overwrite false) is what we asked for */
	for (int i = 0; i < e->n; i++)
		spank_setenv(sp, e->v[i].name, e->v[i].value, e->v[i].overwrite);
	return 0;
}
