#!/bin/bash
# test_train.sh - the main job end to end on the real Slurm testbed: an sbatch job with --moe-topology
# whose steps are a binding report and `srun moe-launch -- moe-train` across 4 nodes (8 ranks, EP=8 over
# two NVLink domains; shared memory inside a node, tcp between nodes; MOE_A2A=rail, counters from the metrics).  Checks that the sbatch option reaches the steps, that every
# task is bound as `moetopo plan` says, that the trainer runs the planned layout and that its loss falls.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
export MOE_SLURM24_TOOLS=1   # on 24.11 the tasks run moe-launch and moe-train built inside its root filesystem
tb_start 4
W=$MOE_TESTBED/work
SPEC=ep=8,experts=16,route-groups=2

"$top_builddir/trainer/driver/moe-train" prepare /usr/share/common-licenses/GPL-3 "$W/gpl3.bin" >/dev/null
cat > "$W/train.sbatch" <<EOF
#!/bin/bash
#SBATCH -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=$SPEC,verbose
#SBATCH -o $W/job.out -e $W/job.err
srun bash $REPORT > $W/binding.txt
export MOE_A2A=rail
srun moe-launch --timeout 120 -- moe-train --data $W/gpl3.bin --steps 25 --seed 3 --experts 16 --top-k 2 \\
	--dim 64 --heads 4 --layers 2 --ffn 128 --expert-ffn 32 --seq-len 32 --global-batch 16 --lr 0.01 \\
	--warmup 5 --threads 1 --metrics $W/metrics.jsonl
EOF
run_client sbatch --parsable "$W/train.sbatch"
ok "sbatch accepts the job with --moe-topology in the script" [ "$rc" = 0 ]
job=$out
st=$(tb_wait_gone "$job" 300)
is "$st" "" "job $job finished within 300 s"
state=$($TESTBED run scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z]*' | head -1)
is "$state" "JobState=COMPLETED" "job completed"
[ "$state" = "JobState=COMPLETED" ] || { sed 's/^/# /' "$W/job.err" | tail -20; }

# every task of the job's steps carries the plan computed by moetopo for the same shape
out=$(cat "$W/binding.txt")
got=$(awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
	print $2, v["MOE_RANK"], v["MOE_EP_GROUP"], v["MOE_EP_RANK"], v["MOE_DOMAIN"], v["MOE_GPU_PCI"] }' <<<"$out" | sort -n)
machine_cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
want=$("$top_builddir/topology/cli/moetopo" plan --json --nodes 'gpu-r1-n[1-2],gpu-r2-n[1-2]' --tasks-per-node 2 \
	--node-xml "$MOE_TESTBED/topo/%n.xml" --domains "$MOE_TESTBED/etc/topology.conf" --cpus "$machine_cpus" \
	--spec "$SPEC" | awk 'function s(k,  m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:"/, "", m); sub(/"$/, "", m); return m } return "" }
	function n(k,  m) { if (match($0, "\"" k "\":-?[0-9]+")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m } return "" }
	/^\{"procid":/ { print n("procid"), n("rank"), n("ep_group"), n("ep_rank"), s("domain"), s("gpu_pci") }' | sort -n)
is "$(wc -l <<<"$got")" 8 "8 tasks reported their binding in the job's first step"
is "$got" "$want" "sbatch's --moe-topology reached the step: rank, EP group/rank, domain, GPU equal moetopo plan"
is "$(grep -c 'moe-topology: rank' "$W/job.err")" 16 "verbose: one binding line per rank per step on the user's stderr"

# the training step: the trainer saw the planned world and learned
ok "trainer ran 8 ranks as one EP group of 8: shm within a node, tcp between nodes" grep -q "world 8 (ep 8 x dp 1, transport shm+tcp)" "$W/job.out"
is "$(grep -c '"step"' "$W/metrics.jsonl")" 25 "25 metric lines"
# MOE_A2A=rail: the expert exchange crossed nodes only along the rails, tokens deduplicated per node
ok "trainer's all-to-all in rail mode" grep -q "OpenMP threads, a2a rail" "$W/job.out"
is "$(grep -o '"a2a_rail_fraction":[^,}]*' "$W/metrics.jsonl" | cut -d: -f2 | sort -u)" 1.000000 \
	"every step's cross-node bytes stayed on their rail (a2a_rail_fraction 1)"
dedup=$(grep -o '"a2a_dedup_bytes":[0-9]*' "$W/metrics.jsonl" | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }')
ok "deduplication kept bytes off the network ($dedup over 25 steps)" [ "$dedup" -gt 0 ]
first=$(head -1 "$W/metrics.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
last=$(tail -1 "$W/metrics.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
ok "loss falls: $first -> $last (by more than 1 nat)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(a - b > 1.0) }'
ok "no node drained or down" bash -c "! $TESTBED run sinfo -h -N -o %T | grep -qvE '^(idle|mixed|allocated)'"
done_testing
