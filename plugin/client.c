/* client.c - srun, sbatch and salloc: reject a bad SPEC at submit, before any allocation.
 *
 * The option value was already checked by its callback (args.c); here the weaker sources are checked:
 * MOE_TOPOLOGY from the submitting environment and the site configuration.  A broken plugstack line only
 * stops users who ask for the plugin, so that a typo there cannot block every job on the cluster.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

int mtp_client_post_opt(spank_t sp, const struct mtp_config *c)
{
	const char *env = getenv(MTP_ENV_SPEC), *origin, *text;
	char err[MT_ERRLEN];
	struct mt_spec s;

	(void)sp;
	if (env && strlen(env) > MTP_SPEC_MAX) {
		mtp_error(MTP_ENV_SPEC " is longer than %d characters", MTP_SPEC_MAX);
		return -1;
	}
	text = mtp_spec_text(c, env, &origin);
	if (mt_spec_parse(text, &s, err, sizeof err)) {
		/* only the environment can get here: the option and default= were checked already */
		mtp_error("%s=%s: %s", origin, text, err);
		return -1;
	}
	if (s.mode == MT_MODE_HELP) {
		fputs(mtp_help_text(), stdout);
		fflush(stdout);
		exit(0);
	}
	if (c->error[0] && s.mode != MT_MODE_OFF && (mtp_option_value() || (env && *env))) {
		mtp_error("%s; ask the administrators to fix it, or use --" MTP_OPTION "=off", c->error);
		return -1;
	}
	return 0;
}
