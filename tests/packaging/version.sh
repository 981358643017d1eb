#!/bin/bash
# version.sh - one version, from configure.ac's AC_INIT, everywhere a user or admin reads one: each
# program's --version, the plugin's step log line (its text in moe_topology.so; the line itself is checked
# on the Slurm testbed by debs.sh), the man pages, NEWS, debian/changelog and the RPM spec.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/packaging/lib.sh"
[ -n "$VERSION" ] || { echo "Bail out! no version in configure.ac's AC_INIT"; exit 1; }
V=$VERSION
is "$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"/\1/p' "$top_builddir/config.h")" "$V" "config.h carries AC_INIT's version $V"
is "$("$MOETOPO" --version)" "moetopo $V" "moetopo --version"
is "$("$MOE_LAUNCH" --version)" "moe-launch (moetopo) $V" "moe-launch --version"
is "$("$MOE_TRAIN" --version)" "moe-train (moetopo) $V" "moe-train --version"
if [ -f "$PLUGIN_SO" ]; then
	ok "moe_topology.so's step log line names moetopo $V" grep -aq "planned %d ranks on %d nodes%s (moetopo $V)" "$PLUGIN_SO"
else
	echo "ok $((_tap_n += 1)) # SKIP plugin not built (no slurm/spank.h at configure)"
fi
for page in moetopo.1 moe-launch.1 moe-train.1 moe-topology.8; do
	is "$(sed -n 's/^\.TH [^ ]* [0-9] "[^"]*" "\([^"]*\)".*/\1/p' "$top_srcdir/doc/$page")" "moetopo $V" "$page: .TH names moetopo $V"
done
ok "NEWS has an entry for $V" grep -q "^$V " "$top_srcdir/NEWS"
is "$(sed -n '1s/^moetopo (\([^-)]*\)-[^)]*).*/\1/p' "$top_srcdir/debian/changelog")" "$V" "debian/changelog's latest entry is $V"
spec=$top_builddir/packaging/rpm/moetopo.spec
is "$(sed -n 's/^Version: *//p' "$spec")" "$V" "the RPM spec's Version is $V"
is "$(sed -n '/^%changelog/{n;s/.* - \([^-]*\)-[^-]*$/\1/p;q}' "$spec")" "$V" "the RPM spec's latest %changelog entry is $V"
done_testing
