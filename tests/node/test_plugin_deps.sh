#!/bin/sh
# test_plugin_deps.sh - slurmstepd loads every plugstack.conf plugin before each step, so a `required`
# line whose plugin cannot load fails every job on the node.  moe_topology.so therefore needs nothing
# beyond the C library at load time: libhwloc is opened when a topology is read (node_hwloc_dl.c),
# NVML likewise, Slurm's symbols come from the process.  Checked on the built plugin, and for real on a
# node without libhwloc: a private mount namespace hides every libhwloc.so*, the plugin still dlopen()s
# and its library reports the missing hwloc in one line.
. "$top_srcdir/tests/tap.sh"
SO=$top_builddir/plugin/.libs/moe_topology.so
DL=$top_builddir/tests/node/test_hwloc_dl
PROBE=$top_builddir/tests/node/dlopen_probe
[ -x "$DL" ] || skip_all "test_hwloc_dl not built"

if [ -f "$SO" ] && command -v readelf >/dev/null 2>&1; then
	needed=$(readelf -d "$SO" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
	extra=$(echo "$needed" | tr ' ' '\n' | grep -v -E '^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|ld-linux.*|)$' | tr '\n' ' ')
	is "$extra" "" "moe_topology.so needs only the C library at load time (NEEDED: $needed)"
else
	echo "ok 1 # SKIP the plugin is not built (no Slurm headers) or no readelf"
	_tap_n=1
fi
ok "with libhwloc: the plugin's library reads hwloc and NCCL files" sh -c "'$DL' present >'${TMPDIR:-/tmp}/plugin-deps.$$' 2>&1"
[ -f "${TMPDIR:-/tmp}/plugin-deps.$$" ] && sed 's/^/#   /' "${TMPDIR:-/tmp}/plugin-deps.$$" && rm -f "${TMPDIR:-/tmp}/plugin-deps.$$"

# A node without libhwloc: only root can make one (mount namespace); skipped elsewhere.
libs=$(ldconfig -p 2>/dev/null | sed -n 's/.*libhwloc\.so.* => \(.*\)$/\1/p' | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null 2>&1 || [ -z "$libs" ] ||
	! unshare -m true 2>/dev/null; then
	echo "ok $((_tap_n + 1)) # SKIP needs root and unshare -m to hide libhwloc"
	echo "ok $((_tap_n + 2)) # SKIP needs root and unshare -m to hide libhwloc"
	_tap_n=$((_tap_n + 2))
else
	hide="for l in $libs; do mount --bind /dev/null \$l || exit 9; done"
	out=$(unshare -m sh -c "$hide; '$DL' absent" 2>&1)
	rc=$?
	echo "$out" | sed 's/^/#   /'
	is "$rc" 0 "without libhwloc: hwloc files fail with one line naming it, NCCL files load"
	if [ -f "$SO" ] && [ -x "$PROBE" ]; then
		out=$(unshare -m sh -c "$hide; '$PROBE' '$SO'" 2>&1)
		is "$out" "loaded" "without libhwloc: moe_topology.so still loads (a required line fails no job)"
	else
		echo "ok $((_tap_n + 1)) # SKIP the plugin is not built"
		_tap_n=$((_tap_n + 1))
	fi
fi
done_testing
