#!/bin/bash
# test_options.sh - --moe-topology at submit time on the real testbed: srun, sbatch and salloc accept it,
# sbatch's value reaches every step and srun overrides it, MOE_TOPOLOGY is a default below the flag,
# a bad SPEC is refused before any allocation, an unknown plugstack key is reported, and plugstack
# fabric=oversub:N gives the plan its objective (the same ranks on every node).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 4
W=$MOE_TESTBED/work
SHAPE="-N2 --ntasks-per-node=4 --gpus-per-node=4"

# every report line of $out has VAR=WANT (and there are N lines)
all_are() {  # all_are VAR WANT N
	local n bad
	n=$(grep -c '^T ' <<<"$out")
	bad=$(awk -v k="$1" -v w="$2" '$1 == "T" { v = "<unset>"; for (i = 3; i <= NF; i++) { p = index($i, "=");
		if (substr($i, 1, p - 1) == k) v = substr($i, p + 1) } if (v != w) print $2 ": " v }' <<<"$out")
	[ "$n" = "$3" ] && [ -z "$bad" ] || { echo "# $1: $n lines, differing: $bad"; return 1; }
}
fails_with() { [ "$rc" != 0 ] && grep -q -- "$1" <<<"$err"; }   # fails_with ERE-PATTERN
batch_alone() { [ "$(grep -c '^B ' <<<"$out")" = 1 ] && ! grep '^B ' <<<"$out" | grep -q MOE_RANK=; }
job_id() { $TESTBED run srun -N1 printenv SLURM_JOB_ID; }

run_client srun --moe-topology=help
ok "srun --moe-topology=help exits 0" [ "$rc" = 0 ]
ok "help shows the grammar" grep -q 'route-groups=' <<<"$out"

run_client srun $SHAPE --moe-topology=ep=4 "$REPORT"
ok "srun accepts --moe-topology" [ "$rc" = 0 ]
ok "srun: every rank got the plan (MOE_EP_SIZE=4)" all_are MOE_EP_SIZE 4 8

rm -f "$W/batch.out"
run_client sbatch --wait $SHAPE --moe-topology=ep=4 -o "$W/batch.out" --wrap \
	"$REPORT | sed 's/^T /B /'; srun $REPORT; srun --moe-topology=ep=2 $REPORT | sed 's/^T /O /'; srun --moe-topology=off $REPORT | sed 's/^T /F /'"
ok "sbatch accepts --moe-topology" [ "$rc" = 0 ]
out=$(cat "$W/batch.out" 2>/dev/null)
ok "sbatch's value reaches the job's steps" all_are MOE_EP_SIZE 4 8
ok "the batch script itself is left alone (one task, no rank)" batch_alone
out=$(sed -n 's/^O /T /p' "$W/batch.out")
ok "an srun value overrides sbatch's" all_are MOE_EP_SIZE 2 8
out=$(sed -n 's/^F /T /p' "$W/batch.out")
ok "srun --moe-topology=off inside the job turns it off" all_are MOE_RANK "<unset>" 8

run_client salloc $SHAPE --moe-topology=ep=8 srun "$REPORT"
ok "salloc accepts --moe-topology and its steps get it" all_are MOE_EP_SIZE 8 8

export MOE_TOPOLOGY=ep=2
run_client srun $SHAPE "$REPORT"
ok "MOE_TOPOLOGY in the submitting environment is the default" all_are MOE_EP_SIZE 2 8
run_client srun $SHAPE --moe-topology=ep=8 "$REPORT"
ok "the flag beats MOE_TOPOLOGY" all_are MOE_EP_SIZE 8 8
unset MOE_TOPOLOGY

# A bad SPEC fails at submit: no allocation, so the next job gets the very next job id.
before=$(job_id)
run_client srun -N1 --moe-topology=ep=banana true
ok "srun: invalid SPEC exits non-zero" [ "$rc" != 0 ]
is "$(grep -c 'moe-topology: .*ep=banana.*valid' <<<"$err")" 1 "srun: one line names the bad value and the valid choices"
run_client sbatch -N1 --moe-topology=gpus=two --wrap true
ok "sbatch: invalid SPEC exits non-zero, nothing submitted" fails_with 'gpus=two' 
ok "sbatch: the message lists gpus' choices" grep -q 'gpus=two.*all, single' <<<"$err"
run_client salloc -N1 --moe-topology=colour=red true
ok "salloc: unknown key exits non-zero and lists the keys" fails_with "'colour'.*valid keys"
MOE_TOPOLOGY=cpu=socket run_client srun -N1 true
ok "srun: invalid MOE_TOPOLOGY is refused at submit" fails_with 'MOE_TOPOLOGY=cpu=socket.*numa, none' 
# A quoted value cannot start a line of its own: every line the plugin writes carries its prefix.
MOE_TOPOLOGY=$'ep=banana\nFORGED: all good' run_client srun -N1 true
ok "srun: MOE_TOPOLOGY with a newline is refused at submit" fails_with 'moe-topology: MOE_TOPOLOGY=ep=banana?FORGED'
is "$(grep -c '^FORGED' <<<"$err")" 0 "the newline in it does not start an unprefixed line"
after=$(job_id)
is "$after" "$((before + 1))" "no job was allocated for any invalid SPEC"

# fabric=: the site's spine oversubscription, for the planner's objective.  srun -N4 -n14 -c2 -m cyclic puts
# 4,4,4,2 tasks on gpu-r1-n1, gpu-r1-n2, gpu-r2-n1, gpu-r2-n2 (8 CPUs a node, 2 per task): 8 in rack r1, 6 in
# r2; ep=7.  The most-local plan has one group inside r1 and one of r1's eighth task with r2's six (that lone
# task receives from all six: the slowest group).  With fabric=oversub:4 Slurm's own cyclic order (both
# groups split 4 + 3 over the racks) has the faster slowest group under simulate's model, so the plan takes
# Slurm's groups (each domain's ranks made contiguous inside a group), on every node alike.
slurm_groups() {  # slurm_groups N: N report lines, each task in EP group SLURM_PROCID / 7 (Slurm's consecutive ranks)
	local n bad
	n=$(grep -c '^T ' <<<"$out")
	bad=$(awk '$1 == "T" { v = "<unset>"; for (i = 3; i <= NF; i++) if (index($i, "MOE_EP_GROUP=") == 1) v = substr($i, 14)
		if (v != int($2 / 7)) print $2 "->" v }' <<<"$out")
	[ "$n" = "$1" ] && [ -z "$bad" ] || { echo "# $n lines, tasks outside Slurm's group: $bad"; return 1; }
}
FABRIC_JOB="-N4 -n14 -c2 -m cyclic --gpus-per-node=4 --moe-topology=ep=7"
run_client srun $FABRIC_JOB "$REPORT"
is "$rc" 0 "fabric unknown: the job runs"
not_slurm_groups() { ! slurm_groups 14 >/dev/null; }
ok "fabric unknown: the most-local plan's EP groups are not Slurm's" not_slurm_groups
$TESTBED plugstack "fabric=oversub:4" "domains=$MOE_TESTBED/etc/topology.conf" "topology=$MOE_TESTBED/topo/%n.xml" nvml=off
run_client srun $FABRIC_JOB "$REPORT"
is "$rc" 0 "fabric=oversub:4: the job runs"
ok "fabric=oversub:4: every task is in Slurm's EP group (procids 0-6, 7-13: faster here)" slurm_groups 14
ok "fabric=oversub:4: the slurmd log names the oversubscription planned for" \
	grep -q "moe-topology: step .*: planned 14 ranks on 4 nodes for spine oversubscription 4" "$MOE_TESTBED"/log/slurmd-*.log
$TESTBED plugstack "fabric=oversub:0.5"
run_client srun -N1 --moe-topology=auto true
ok "fabric=oversub:0.5 is refused, naming the valid form" grep -q "fabric=oversub:0.5: .*oversub:N (N >= 1)" <<<"$err"
$TESTBED plugstack

# Strict plugstack parsing: an unknown key is an error in the log, the plugin stays out of the way.
$TESTBED plugstack bogus=1 "topology=$MOE_TESTBED/topo/%n.xml"
run_client srun -N1 --moe-topology=auto true
ok "unknown plugstack key: asking for the plugin fails at submit" fails_with "unknown argument 'bogus'"
run_client srun -N1 "$REPORT"
ok "unknown plugstack key: jobs that do not ask still run untouched" all_are MOE_RANK "<unset>" 1
is "$(grep -c 'moe-topology' <<<"$err")" 0 "unknown plugstack key: nothing on the stderr of jobs that do not ask"
ok "unknown plugstack key: reported in the slurmd log" grep -q "moe-topology: plugstack.conf: unknown argument 'bogus'" "$MOE_TESTBED"/log/slurmd-*.log
$TESTBED plugstack "default=ep=4" "domains=$MOE_TESTBED/etc/topology.conf" "topology=$MOE_TESTBED/topo/%n.xml"
run_client srun $SHAPE "$REPORT"
ok "plugstack default= applies when the user gives nothing" all_are MOE_EP_SIZE 4 8
MOE_TOPOLOGY=ep=2 run_client srun $SHAPE "$REPORT"
ok "MOE_TOPOLOGY beats the site default" all_are MOE_EP_SIZE 2 8
$TESTBED plugstack strict=maybe
run_client srun -N1 --moe-topology=auto true
ok "bad plugstack value names the valid ones" grep -q "bad value 'maybe' for strict= (valid: yes, no)" <<<"$err"
$TESTBED plugstack

run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
