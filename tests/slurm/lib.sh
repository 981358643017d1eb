# lib.sh - shared setup for the slurm tests: one testbed at a time, always torn down.
#
# Source after tap.sh.  tb_start [N [UP-ARGS...]] brings the cluster up (4 nodes) under a lock, so that test scripts the
# harness runs in parallel take turns; the EXIT trap prints the logs on failure and tears it all down.
# run_client CMD... sets $out (stdout), $err (stderr) and $rc.  MOE_SLURM_VERSION (22.05, the default, or
# 24.11) picks the Slurm the testbed runs: every test of the suite runs on either.
: "${top_srcdir:?}" "${top_builddir:?}"
TESTBED="bash $top_srcdir/tests/slurm/testbed.sh"
REPORT="$top_srcdir/tests/slurm/report.sh"
export MOE_TESTBED=${MOE_TESTBED:-/run/moetopo-testbed}

export MOE_SLURM_VERSION=${MOE_SLURM_VERSION:-22.05}

tb_skip_unless_possible() {
	[ "$(id -u)" = 0 ] || skip_all "needs root (network namespaces, slurm daemons)"
	# on 24.11 the testbed builds the plugin itself, inside its Debian 13 root filesystem
	[ "$MOE_SLURM_VERSION" != 22.05 ] || [ -f "$top_builddir/plugin/.libs/moe_topology.so" ] ||
		skip_all "plugin not built (no slurm/spank.h at configure)"
	command -v flock >/dev/null || skip_all "no flock"
}

tb_cleanup() {
	local rc=$?
	if [ "${_tap_fail:-0}" -gt 0 ] || [ $rc -ne 0 ]; then
		for f in "$MOE_TESTBED"/log/*.log; do
			[ -f "$f" ] && { echo "# --- $f"; tail -15 "$f" | sed 's/^/# /'; }
		done
	fi
	$TESTBED down >/dev/null 2>&1
	return $rc
}

tb_start() {
	exec 9>"${MOE_TESTBED}.lock"
	flock 9
	trap tb_cleanup EXIT
	$TESTBED up "${1:-4}" "${@:2}" --slurm "$MOE_SLURM_VERSION" >/dev/null ||
		{ echo "Bail out! Slurm $MOE_SLURM_VERSION testbed did not come up"; exit 1; }
}

run_client() {
	local o e
	o=$(mktemp) e=$(mktemp)
	$TESTBED run "$@" >"$o" 2>"$e"
	rc=$?
	out=$(cat "$o") err=$(cat "$e")
	rm -f "$o" "$e"
}

# value VAR PROCID: VAR as task PROCID reported it (from $out of a run of report.sh)
value() {
	awk -v p="$2" -v k="$1" '$1 == "T" && $2 == p {
		for (i = 3; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == k) print substr($i, n + 1) } }' <<<"$out"
}

# procids of the report lines, sorted
# tb_wait_gone JOB SECONDS: waits until the job has left squeue (at most SECONDS); prints the state it
# was last seen in, empty once it is gone
tb_wait_gone() {
	local st=x i
	for ((i = 0; i < $2 * 2; i++)); do
		st=$($TESTBED run squeue -h -j "$1" -o %T 2>/dev/null)
		[ -z "$st" ] && break
		sleep 0.5
	done
	printf '%s' "$st"
}
procids() { awk '$1 == "T" {print $2}' <<<"$out" | sort -n | tr '\n' ' '; }
