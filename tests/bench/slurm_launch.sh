#!/bin/bash
# slurm_launch.sh - step launch overhead of the moe_topology plugin on the real testbed.
#   srun -N4 --ntasks-per-node=8 true   with --moe-topology=auto  vs  --moe-topology=off
# interleaved, median of RUNS each, printed as a ratio (target <= 1.10).  A second line does the same for
# a GPU step (4 tasks and 4 GPUs per node), where the plan binds GPUs, NICs and CPUs.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
: "${top_srcdir:?}" "${top_builddir:?}"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
RUNS=${RUNS:-21}
[ "$(id -u)" = 0 ] || { echo "slurm_launch: needs root, skipped"; exit 0; }
[ -f "$top_builddir/plugin/.libs/moe_topology.so" ] || { echo "slurm_launch: plugin not built, skipped"; exit 0; }
tb_start 4

ms() { local t0 t1; t0=$(date +%s%N); $TESTBED run "$@" >/dev/null 2>&1 || echo "# failed: $*" >&2; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

measure() {  # measure LABEL SRUN-ARGS...
	local label=$1 i on="" off=""
	shift
	ms srun "$@" --moe-topology=off true >/dev/null    # warm: first launches pay for loading
	ms srun "$@" --moe-topology=auto true >/dev/null
	for ((i = 0; i < RUNS; i++)); do
		off="$off $(ms srun "$@" --moe-topology=off true)"
		on="$on $(ms srun "$@" --moe-topology=auto true)"
	done
	off=$(tr ' ' '\n' <<<"$off" | grep . | median)
	on=$(tr ' ' '\n' <<<"$on" | grep . | median)
	awk -v l="$label" -v a="$on" -v b="$off" -v n="$RUNS" \
		'BEGIN { printf "%s: median of %d interleaved runs: plugin %d ms, off %d ms, ratio %.3f (target <= 1.10)\n", l, n, a, b, a / b }'
}
measure "srun -N4 --ntasks-per-node=8 true" -N4 --ntasks-per-node=8
measure "srun -N4 --ntasks-per-node=4 --gpus-per-node=4 true" -N4 --ntasks-per-node=4 --gpus-per-node=4
