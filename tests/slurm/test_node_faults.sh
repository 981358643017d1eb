#!/bin/bash
# test_node_faults.sh - node faults during real jobs on the testbed.
#  - A node dies mid-training (network gone, then its slurmd, steps and ranks killed, as in a crash): the
#    ranks on the other nodes stop within their communication timeout with a message naming a lost rank
#    and its node (also the ranks that waited for a live rank stuck on the lost one), the job ends failed instead of hanging, and once the node is back no node is down or
#    drained.
#  - slurmd restarted on a node between two steps of one allocation: the next step with the plugin runs
#    normally on every node.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 4
W=$MOE_TESTBED/work
TIMEOUT=10   # the ranks' communication timeout (moe-launch --timeout)
DEAD=3       # the node that dies: gpu-r2-n1, not the batch script's node
dead=gpu-r2-n1

"$top_builddir/trainer/driver/moe-train" prepare /usr/share/common-licenses/GPL-3 "$W/gpl3.bin" >/dev/null
# --no-requeue: Slurm's default requeues a batch job after a node failure (then it waits for the node)
cat > "$W/loss.sbatch" <<EOF
#!/bin/bash
#SBATCH -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=8,experts=16,verbose --no-requeue
#SBATCH -o $W/loss.out -e $W/loss.err
srun moe-launch --timeout $TIMEOUT -- moe-train --data $W/gpl3.bin --steps 1000000 --seed 3 --experts 16 \\
	--dim 32 --heads 2 --layers 2 --ffn 64 --expert-ffn 16 --seq-len 16 --global-batch 16 --lr 0.01 \\
	--threads 1 --log-every 1000 --metrics $W/loss.jsonl
EOF
run_client sbatch --parsable "$W/loss.sbatch"
job=$out
lines() { [ -f "$W/loss.jsonl" ] && wc -l < "$W/loss.jsonl" || echo 0; }
for ((i = 0; i < 1200 && $(lines) < 5; i++)); do sleep 0.1; done
ok "training runs on 4 nodes ($(lines) steps done)" [ "$(lines)" -ge 5 ]
$TESTBED node-kill $DEAD
killed=$(date +%s)

# The survivors: 6 ranks on 3 nodes, each prints why it stopped and exits 1.
survivors_done() { [ "$(grep -c '^moe-train: rank [0-9]*, step' "$W/loss.err" 2>/dev/null)" -ge 6 ]; }
for ((i = 0; i < 600; i++)); do survivors_done && break; sleep 0.1; done
stopped=$(( $(date +%s) - killed ))
ok "the 6 ranks on the other nodes stopped ($stopped s after the crash; timeout $TIMEOUT s)" survivors_done
grep '^moe-train: rank' "$W/loss.err" | sed 's/^/# /'
lost=$(sed -n "s/^moe-topology: rank \([0-9]*\)\/8 node $dead .*/\1/p" "$W/loss.err" | sort -n | tr '\n' ' ')
is "$lost" "4 5 " "the plan put ranks 4 and 5 on $dead (verbose binding lines)"
names_lost() {  # every survivor's message names rank 4 or 5 and the dead node
	local bad
	bad=$(grep '^moe-train: rank [0-9]*, step' "$W/loss.err" | grep -vE "rank [45] \($dead at [0-9.]+:[0-9]+\)")
	[ -z "$bad" ] || { echo "# not naming the lost node: $bad"; return 1; }
}
ok "each survivor's message names a rank of $dead and the node" names_lost
ok "they gave up after their timeout (no data moved since the crash)" grep -q "timed out after $TIMEOUT s waiting for rank" "$W/loss.err"

# Slurm declares the node dead after SlurmdTimeout (30 s) and ends the job: failed, not hung.
st=$(tb_wait_gone "$job" 120)
is "$st" "" "the job ended ($(( $(date +%s) - killed )) s after the crash)"
state=$($TESTBED run scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1)
ok "the job failed ($state)" grep -qE 'JobState=(NODE_FAIL|FAILED)$' <<<"$state"
run_client sinfo -h -N -o '%N %T'
ok "only the dead node is down meanwhile: $(tr '\n' ' ' <<<"$out")" \
	bash -c "! grep -v '^$dead ' <<<\"$out\" | grep -qv ' idle$'"

$TESTBED node-start $DEAD >/dev/null
ok "the node came back: every node idle" [ $? = 0 ]
run_client sinfo -h -N -o '%N %T %E'
is "$(awk '$2 != "idle"' <<<"$out")" "" "no node down or drained"
run_client srun -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=8 "$REPORT"
is "$rc:$(grep -c 'MOE_RANK=' <<<"$out")" "0:8" "a planned step runs on all 4 nodes again, the revived one too"

# slurmd restarted between steps of one allocation
step() { srun_out=$($TESTBED run srun --jobid="$1" -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=8 "$REPORT" 2>&1); }
run_client salloc --no-shell -N4 --ntasks-per-node=2 --gpus-per-node=2
alloc=$(grep -o 'Granted job allocation [0-9]*' <<<"$err$out" | grep -o '[0-9]*$')
ok "an allocation for the restart test ($alloc)" test -n "$alloc"
step "$alloc"
is "$(grep -c 'MOE_RANK=' <<<"$srun_out")" 8 "a planned step before the restart"
$TESTBED slurmd-restart 2
ok "slurmd of node 2 restarted" [ $? = 0 ]
step "$alloc"
is "$(grep -c 'MOE_RANK=' <<<"$srun_out")" 8 "the next planned step runs normally on all nodes $(grep -v '^T ' <<<"$srun_out" | head -c 300)"
is "$(grep -o 'MOE_RANK=[0-9]*' <<<"$srun_out" | sort -t= -k2 -n | tr '\n' ' ')" \
	"$(seq 0 7 | sed 's/^/MOE_RANK=/' | tr '\n' ' ')" "ranks 0..7, once each"
$TESTBED run scancel "$alloc"
run_client sinfo -h -N -o '%N %T %E'
is "$(awk '$2 !~ /^(idle|completing)$/' <<<"$out")" "" "no node down or drained at the end"
done_testing
