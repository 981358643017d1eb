#!/bin/bash
# test_requeue.sh - preemption of a training job on the testbed, with examples/preemptible.sbatch
# (sbatch --requeue --signal=B:USR1@...).  Run 1 gets the warning signal the batch script would get from
# its time limit (scancel --batch --signal=USR1: the same delivery as --signal=B:USR1, without waiting
# for a time limit): the trainer checkpoints and the script requeues the job.  Run 2 is requeued from
# outside (scontrol requeue: SIGTERM to the tasks, as a preemption).  Run 3 finishes.  The losses,
# norms and loads of all steps equal those of the same job run without interruption, bit for bit.
# MOE_REQUEUE_TIMER=1 (by hand) lets Slurm's own timer send run 1's signal (--time=1 --signal=B:USR1@50).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 4
W=$MOE_TESTBED/work
STEPS=${MOE_REQUEUE_STEPS:-40}
SHAPE="-N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=8,experts=16"
"$top_builddir/trainer/driver/moe-train" prepare /usr/share/common-licenses/GPL-3 "$W/gpl3.bin" >/dev/null
train() {  # train NAME [moe-train flags...]: the step command of both jobs
	local n=$1
	shift
	echo moe-launch --timeout 60 -- moe-train --data "$W/gpl3.bin" --seed 5 --experts 16 --dim 32 --heads 2 --layers 2 \
		--ffn 64 --expert-ffn 16 --seq-len 16 --global-batch 16 --lr 0.01 --warmup 5 --threads 1 --log-every 1000 \
		--metrics "$W/$n.jsonl" "$@"
}
stops() { sed -n 's/^moe-train: stopping after step \([0-9]*\) on a signal$/\1/p' "$W/pre.out"; }
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
wait_lines() {  # wait_lines FILE N: at most 120 s
	local i
	for ((i = 0; i < 1200; i++)); do [ "$(lines "$1")" -ge "$2" ] && return 0; sleep 0.1; done
	return 1
}
requeued() { wait_field "$1" Restarts "$2"; }
# Slurm holds a requeued job back for about two minutes; the test lets it start at once.  The hold is
# set when the last run has finished completing, which can come after Restarts counted the requeue, so
# a watcher lifts it whenever the job waits for its begin time.
lift_holds() {  # lift_holds JOB: for at most 300 s
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(field "$1" Reason)" = BeginTime ] && $TESTBED run scontrol update JobId="$1" StartTime=now
		sleep 1
	done
}
field() { $TESTBED run scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }
wait_field() {  # wait_field JOB KEY VALUE: at most 120 s
	local i
	for ((i = 0; i < 240; i++)); do [ "$(field "$1" "$2")" = "$3" ] && return 0; sleep 0.5; done
	return 1
}

# the uninterrupted reference, in parallel (the nodes have room for both jobs)
run_client sbatch --parsable $SHAPE -o "$W/ref.out" -e "$W/ref.err" --wrap "srun $(train ref --steps $STEPS)"
ref=$out
timer=()
[ -n "${MOE_REQUEUE_TIMER:-}" ] && timer=(--time=1 --signal=B:USR1@50)
run_client sbatch --parsable $SHAPE "${timer[@]}" -o "$W/pre.out" -e "$W/pre.err" \
	"$top_srcdir/examples/preemptible.sbatch" $(train pre --steps $STEPS --ckpt-dir "$W/ck" --resume)
job=$out
ok "both jobs submitted ($ref, $job)" [ -n "$ref" ] && [ -n "$job" ]
lift_holds "$job" >/dev/null 2>&1 &
lifter=$!
trap 'kill $lifter 2>/dev/null; tb_cleanup' EXIT

# run 1: the warning signal, to the batch script only
wait_lines "$W/pre.jsonl" 3
[ -z "${MOE_REQUEUE_TIMER:-}" ] && $TESTBED run scancel --batch --signal=USR1 "$job"
ok "run 1: the job requeued itself" requeued "$job" 1
k1=$(stops | head -1)
ok "run 1: the trainer stopped on the signal after step ${k1:-?}" test -n "$k1"
ok "run 1: it wrote the checkpoint of that step" grep -q "^moe-train: checkpoint of step $k1 written to " "$W/pre.out"
ok "run 1: the batch script requeued the job after the checkpoint" grep -q 'requeueing job' "$W/pre.err"

# run 2: requeued from outside once it has resumed and done 3 steps
wait_lines "$W/pre.jsonl" $((k1 + 3))
ok "run 2: resumed from the checkpoint of step $k1" grep -q "resumed from .* at step $k1\$" "$W/pre.out"
$TESTBED run scontrol requeue "$job"
ok "run 2: requeued by scontrol requeue" requeued "$job" 2
# Slurm counts the restart at once, while run 2's tasks are still checkpointing: wait for their lines
for ((i = 0; i < 600 && $(stops | wc -l) < 2; i++)); do sleep 0.1; done
k2=$(stops | sed -n 2p)
ok "run 2: SIGTERM made the trainer checkpoint (step ${k2:-?})" grep -q "^moe-train: checkpoint of step ${k2:-x} written to " "$W/pre.out"
[ -n "$k2" ] || { tail -n 25 "$W/pre.out" | sed 's/^/# out: /'; tail -n 25 "$W/pre.err" | sed 's/^/# err: /'; }

# run 3 goes to the end
ok "run 3: the job completed" wait_field "$job" JobState COMPLETED
ok "run 3: resumed at step $k2" grep -q "resumed from .* at step $k2\$" "$W/pre.out"
# (a finished job leaves slurmctld after MinJobAge: the reference is judged by its output)
for ((i = 0; i < 240 && $(lines "$W/ref.jsonl") < STEPS; i++)); do sleep 0.5; done
ok "the reference job ran its $STEPS steps" grep -q "^done: steps 1..$STEPS of $STEPS," "$W/ref.out"
is "$(lines "$W/pre.jsonl"):$(lines "$W/ref.jsonl")" "$STEPS:$STEPS" "both have $STEPS steps of metrics, none twice"
is "$(metrics_keys "$W/pre.jsonl" | md5sum)" "$(metrics_keys "$W/ref.jsonl" | md5sum)" \
	"steps 1-$STEPS over 3 runs (stops after $k1 and $k2) equal the uninterrupted run bit for bit"
run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
