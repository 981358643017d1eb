/* version.c - the Slurm release this plugin was built for, and the one that loaded it.
 *
 * A SPANK plugin is built against one release's spank.h: its item numbers and structures are that
 * release's, and its plugin_version symbol is that release's SLURM_VERSION_NUMBER.  Slurm 22.05 and 24.11
 * both refuse to load a SPANK plugin whose major.minor differs (measured; the admin guide has their
 * messages).  Older loaders skipped that check for SPANK plugins, so the plugin also compares for itself
 * (moe_topology.c, with what S_SLURM_VERSION says): loaded by another release, it stays inactive and
 * says which release it was built for.  No Slurm calls here, so the unit tests use it directly.
 */
#include <stdio.h>
#include <stdlib.h>

#include "plugin.h"

const char *mtp_slurm_built(void)
{
	static char buf[32];

	if (!buf[0])
		snprintf(buf, sizeof buf, "%d.%02d.%d", SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER),
			 SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER), SLURM_VERSION_MICRO(SLURM_VERSION_NUMBER));
	return buf;
}

/* MAJOR.MINOR of "24.11.5" (or "24.11"); false when S does not start that way. */
static bool release_of(const char *s, long *major, long *minor)
{
	char *end;

	*major = strtol(s, &end, 10);
	if (end == s || *end != '.')
		return false;
	s = end + 1;
	*minor = strtol(s, &end, 10);
	return end != s && (!*end || *end == '.' || *end == '-');
}

/* "24.11.5" and "24.11.1" are one release (major.minor); anything unreadable is not. */
bool mtp_same_release(const char *a, const char *b)
{
	long amaj, amin, bmaj, bmin;

	return release_of(a, &amaj, &amin) && release_of(b, &bmaj, &bmin) && amaj == bmaj && amin == bmin;
}

int mtp_version_compare(const char *running, char *err, size_t errlen)
{
	if (!running || mtp_same_release(running, mtp_slurm_built()))
		return 0;   /* nothing to compare with, or our release: let it run */
	snprintf(err, errlen, "moe_topology.so was built for Slurm %s but runs in Slurm %.20s: rebuild it "
		 "against this Slurm's slurm/spank.h (configure prints the release it builds for)",
		 mtp_slurm_built(), running);
	return -1;
}
