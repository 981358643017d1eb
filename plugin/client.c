/* client.c - srun, sbatch and salloc: reject a bad SPEC at submit, before any allocation.
 *
 * The option value was already checked by its callback (args.c); here the weaker sources are checked:
 * MOE_TOPOLOGY from the submitting environment and the site configuration.  A broken plugstack line only
 * stops users who ask for the plugin, so that a typo there cannot block every job on the cluster.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

int mtp_client_post_opt(spank_t sp, const struct mtp_config *c)
{
	const char *env = getenv(MTP_ENV_SPEC), *origin, *text;
	int mode;

	(void)sp;
	if (env && strlen(env) > MTP_SPEC_MAX) {
		mtp_error(MTP_ENV_SPEC " is longer than %d characters", MTP_SPEC_MAX);
		return -1;
	}
	text = mtp_spec_text(c, env, &origin);
	/* only the environment can fail here: the option and default= were checked already */
	if ((mode = mtp_spec_check(origin, text)) < 0)
		return -1;
	if (c->error[0] && mode != MT_MODE_OFF && (mtp_option_value() || (env && *env))) {
		mtp_error("%s; ask the administrators to fix it, or use --" MTP_OPTION "=off", c->error);
		return -1;
	}
	return 0;
}
