/* moe_topology.c - the SPANK entry points of moe_topology.so; each routes by context to one module.
 *
 *   local (srun), allocator (sbatch, salloc): register --moe-topology, check the SPEC at submit (client.c)
 *   remote (slurmstepd): plan once per node in user_init, apply per task in task_init (stepd.c)
 *   slurmd, job script: nothing to do
 *
 * No entry point in slurmstepd ever returns an error except task_init under strict=yes (nor does the
 * option callback there): an init failure there would fail the launch and, under a batch job, drain the node.
 */
#include <string.h>

#include "plugin.h"

SPANK_PLUGIN(moe_topology, 1);

static struct mtp_config config;

static bool option_context(spank_context_t ctx)
{
	return ctx == S_CTX_LOCAL || ctx == S_CTX_ALLOCATOR || ctx == S_CTX_REMOTE;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();
	char err[MT_ERRLEN], *running = NULL;

	if (!option_context(ctx))
		return 0;
	mtp_config_parse(ac, av, &config);
	if (spank_get_item(sp, S_SLURM_VERSION, &running) != ESPANK_SUCCESS)
		running = NULL;
	if (mtp_version_compare(running, err, sizeof err))
		mtp_config_refuse(&config, err);   /* the option stays: users who ask for it hear why */
	if (config.error[0] && ctx == S_CTX_REMOTE) {
		/* the step's log: where the admin looks; the user hears about it once, from the step */
		mtp_error("%s; plugin inactive", config.error);
	}
	if (mtp_option_register(sp))
		return ctx == S_CTX_REMOTE ? 0 : -1;
	return 0;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	spank_context_t ctx = spank_context();

	if (ctx == S_CTX_LOCAL || ctx == S_CTX_ALLOCATOR)
		return mtp_client_post_opt(sp, &config);
	return 0;
}

int slurm_spank_user_init(spank_t sp, int ac, char **av)
{
	if (spank_context() != S_CTX_REMOTE)
		return 0;
	mtp_stepd_user_init(sp, &config);
	return 0;
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	if (spank_context() != S_CTX_REMOTE)
		return 0;
	return mtp_stepd_task_init(sp, &config);
}

int slurm_spank_exit(spank_t sp, int ac, char **av)
{
	if (spank_context() == S_CTX_REMOTE)
		mtp_stepd_exit();
	mtp_option_free();
	mtp_config_free(&config);
	return 0;
}
