/* args.c - the --moe-topology option: registration, the value, and which SPEC applies.
 *
 * The option is registered with spank_option_register in the local (srun), allocator (sbatch, salloc)
 * and remote (slurmstepd) contexts: a static spank_options table would not reach sbatch and salloc.
 * Slurm carries an sbatch value to every step of the job and lets an explicit srun value override it;
 * below both comes MOE_TOPOLOGY from the job's environment, then plugstack default=.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static char *option_value;

int mtp_spec_check(const char *origin, const char *text)
{
	char err[MT_ERRLEN];
	struct mt_spec s;

	if (mt_spec_parse(text, &s, err, sizeof err)) {
		mtp_error("%s=%.100s: %s", origin, text, err);
		return -1;
	}
	if (s.mode == MT_MODE_HELP) {
		fputs(mtp_help_text(), stdout);
		fflush(stdout);
		exit(0);
	}
	return (int)s.mode;
}

static int option_cb(int val, const char *optarg, int remote)
{
	(void)val;
	if (remote) {
		/* slurmstepd: a failing callback there fails the launch and, under a batch job, drains the node.
		 * Keep whatever came (it was checked at submit); user_init applies the failure policy to it. */
		free(option_value);
		option_value = optarg ? strdup(optarg) : NULL;
		return 0;
	}
	if (!optarg || strlen(optarg) > MTP_SPEC_MAX) {
		mtp_error("--" MTP_OPTION " needs a SPEC of at most %d characters (see --" MTP_OPTION "=help)",
			  MTP_SPEC_MAX);
		return -1;
	}
	free(option_value);
	option_value = strdup(optarg);
	if (!option_value)
		return -1;
	return mtp_spec_check("--" MTP_OPTION, optarg) < 0 ? -1 : 0;
}

static struct spank_option option = {
	.name = MTP_OPTION,
	.arginfo = "SPEC",
	.usage = "topology-aware MoE layout and binding: off, auto, help, or key=value,... "
		 "(ep=, experts=, route-groups=, gpus=all|single, cpu=numa|none, export=moe|torch, verbose); "
		 "--" MTP_OPTION "=help explains",
	.has_arg = 1,
	.val = 0,
	.cb = option_cb,
};

int mtp_option_register(spank_t sp)
{
	spank_err_t rc = spank_option_register(sp, &option);

	if (rc != ESPANK_SUCCESS) {
		mtp_error("cannot register --" MTP_OPTION ": %s", spank_strerror(rc));
		return -1;
	}
	return 0;
}

const char *mtp_option_value(void) { return option_value; }

void mtp_option_free(void)
{
	free(option_value);
	option_value = NULL;
}

const char *mtp_spec_text(const struct mtp_config *c, const char *env, const char **origin)
{
	if (option_value) {
		*origin = "--" MTP_OPTION;
		return option_value;
	}
	if (env && *env) {
		*origin = MTP_ENV_SPEC;
		return env;
	}
	if (c->default_spec) {
		*origin = "plugstack.conf default=";
		return c->default_spec;
	}
	*origin = "no --" MTP_OPTION;
	return "off";
}

const char *mtp_help_text(void)
{
	static char buf[8192];

	if (!buf[0])
		snprintf(buf, sizeof buf,
			 "--" MTP_OPTION "=SPEC  (srun, sbatch, salloc)\n\n%s\n"
			 "Where the SPEC comes from, strongest first: the srun option; the sbatch/salloc option (reaches\n"
			 "every step of the job); MOE_TOPOLOGY=SPEC in the submitting environment; the site default\n"
			 "(plugstack.conf default=); otherwise off.\n"
			 "Each task gets CUDA_VISIBLE_DEVICES, CPU affinity, NIC variables and the MOE_* rank contract;\n"
			 "see moe-topology(8) and the user guide.\n"
			 "This moe_topology.so was built for Slurm %s.\n",
			 mt_spec_help(), mtp_slurm_built());
	return buf;
}
