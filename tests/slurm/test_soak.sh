#!/bin/bash
# test_soak.sh - 200 consecutive planned steps in one allocation: none fails, the plugin leaves no file or
# shared memory behind, slurmd stays healthy and no node is drained.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 4
STEPS=${MOE_SOAK_STEPS:-200}
scratch=$MOE_TESTBED/work/soak-tmp
mkdir -p "$scratch" && chmod 1777 "$scratch"

# The job's TMPDIR is its own: every entry there counts.  /dev/shm and /tmp are shared with every
# process on the machine (other tests run beside this one): only names the plugin or the libraries it
# loads would use count there.
leftovers() {
	ls -A "$scratch" | sed "s|^|TMPDIR/|"
	for d in /dev/shm /tmp; do ls -A "$d" | grep -iE 'moe[-_]topology|spank|hwloc|nvml' | sed "s|^|$d/|"; done
}
before=$(leftovers)
fds_before=$(for p in $(cat "$MOE_TESTBED"/run/slurmd-*.pid); do ls /proc/"$p"/fd | wc -l; done | tr '\n' ' ')

# Each step checks inside its tasks that the plan was applied (a rank and a GPU of its own).
run_client env TMPDIR="$scratch" salloc -N4 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=8 bash -c "
	fail=0
	for i in \$(seq $STEPS); do
		srun sh -c '[ -n \"\$MOE_RANK\" ] && [ -n \"\$MOE_GPU_PCI\" ] || { echo bad; exit 1; }' >/dev/null ||
			fail=\$((fail + 1))
	done
	echo failed=\$fail"
ok "salloc with $STEPS steps exits 0" [ "$rc" = 0 ]
is "$(grep -o 'failed=[0-9]*' <<<"$out")" "failed=0" "$STEPS consecutive steps, none failed"
# our lines say moe-topology:, Slurm's lines about the plugin name moe_topology.so: both count
is "$(grep -cE 'moe[-_]topology' <<<"$err")" 0 "no plugin message on the user's stderr"
is "$(grep -hE 'moe[-_]topology' "$MOE_TESTBED"/log/slurmd-*.log | grep -ci 'error')" 0 "no plugin error in the slurmd logs"
is "$(grep -h 'planned 16 ranks' "$MOE_TESTBED"/log/slurmd-*.log | wc -l)" "$((STEPS * 4))" "every node planned every step once"
is "$(leftovers)" "$before" "no file or shared memory left in /dev/shm, /tmp or the job's TMPDIR"
fds_after=$(for p in $(cat "$MOE_TESTBED"/run/slurmd-*.pid); do ls /proc/"$p"/fd | wc -l; done | tr '\n' ' ')
is "$fds_after" "$fds_before" "slurmd holds no more file descriptors than before"
run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
