#!/bin/bash
# test_cores.sh - two jobs sharing a node, each with one core, on a testbed without ConstrainCores
# (TaskPlugin=task/none: slurmstepd may use the whole machine): each job's task is bound within the cores
# Slurm allocated to its step (S_STEP_ALLOC_CORES), not the CPUs of the other job, and the plugin warns in
# slurmd's log when those cores and slurmstepd's CPUs disagree.
# The nodes' topologies are captured machines mapped onto this one: gpu-r1-n1 is ipa20 (core c = CPUs c
# and c+112, of which this machine has c), gpu-r1-n2 is lassen (its first core is CPUs 8-11).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
machine_cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
expand() { tr ',' '\n' <<<"$1" | awk -F- 'NF { for (c = $1; c <= (NF > 1 ? $2 : $1); c++) print c }'; }
[ "$(expand "$machine_cpus" | head -2 | tr '\n' ' ')" = "0 1 " ] || skip_all "needs CPUs 0 and 1 on this machine (has $machine_cpus)"
tb_start 4
W=$MOE_TESTBED/work
LOG=$MOE_TESTBED/log

# the task's report line, with the CPUs Slurm allocated to the job on this node (CPU_IDs: one thread a
# core on the testbed, so core numbers), then it holds its core while the other job starts
cat > "$W/cores.sh" <<EOF
#!/bin/sh
ids=\$(scontrol show job -d "\$SLURM_JOB_ID" | sed -n 's/.* CPU_IDs=\([^ ]*\).*/\1/p' | head -1)
echo "\$(sh $REPORT) alloc=\$ids"
sleep 4
EOF
job() {  # job NAME NODE: one task, one core, the plugin on
	echo "sbatch --wait -w $2 -n1 -c1 -o $W/$1.out --wrap 'srun --moe-topology=auto sh $W/cores.sh'"
}
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$W/$1.out" | head -1; }

run_client bash -c "$(job a gpu-r1-n1) & $(job b gpu-r1-n1) & wait"
ok "two one-core jobs on one node run" [ "$rc" = 0 ] && [ "$(grep -c '^T ' "$W/a.out" "$W/b.out" | grep -c ':1$')" = 2 ]
a=$(field a alloc) b=$(field b alloc)
echo "# job a: core $a, bound to $(field a cpus); job b: core $b, bound to $(field b cpus)"
ok "they shared the node: Slurm gave them different cores ($a, $b)" [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]
is "$(field a cpus) $(field a MOE_CPUS)" "$a $a" "job a's task is bound within its own core (Cpus_allowed_list, MOE_CPUS)"
is "$(field b cpus) $(field b MOE_CPUS)" "$b $b" "job b's task is bound within its own core, not job a's"
# ipa20's core c is CPUs c and c+112: this machine lacks c+112, slurmstepd's CPUs are the machine's
ok "slurmd's log warns that CPUs of the step's cores are outside slurmstepd's" \
	grep -q "moe-topology: step [0-9.]*: warning: 1 CPUs of the step's cores $b (CPUs $b,$((b + 112))) are outside slurmstepd's CPUs $machine_cpus; binding within $b" "$LOG/slurmd-gpu-r1-n1.log"

# lassen's core 0 is CPUs 8-11, none of them on this machine: the binding falls back to slurmstepd's CPUs
run_client bash -c "$(job c gpu-r1-n2)"
ok "a one-core job on the lassen node runs" [ "$rc" = 0 ] && grep -q '^T ' "$W/c.out"
c=$(field c alloc)
ok "its task is bound within slurmstepd's CPUs ($(field c cpus) of $machine_cpus)" \
	[ -n "$(field c cpus)" ] && [ -z "$(comm -23 <(expand "$(field c cpus)" | sort) <(expand "$machine_cpus" | sort))" ]
ok "slurmd's log says the cores are all outside slurmstepd's CPUs" \
	grep -q "moe-topology: step [0-9.]*: warning: the step's cores $c (CPUs [0-9,-]*) are all outside slurmstepd's CPUs $machine_cpus; binding within the latter" "$LOG/slurmd-gpu-r1-n2.log"
run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
