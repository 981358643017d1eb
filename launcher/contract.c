/* contract.c - applies a task's rank contract (computed by the library's mt_contract_env, the same list
 * the SPANK plugin applies inside a Slurm task) to this process's environment.
 */
#include <stdlib.h>

#include "launcher.h"

int ml_env_apply(const struct mt_env *e)
{
	for (int i = 0; i < e->n; i++)
		if (setenv(e->v[i].name, e->v[i].value, e->v[i].overwrite))
			return -1;
	return 0;
}

void ml_env_print(const struct mt_env *e, FILE *f)
{
	for (int i = 0; i < e->n; i++)
		fprintf(f, "  %s=%s\n", e->v[i].name, e->v[i].value);
}
