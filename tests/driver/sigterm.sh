#!/bin/bash
# sigterm.sh - SIGTERM and SIGUSR1 (Slurm preemption, `sbatch --signal`) make moe-train finish the
# current step, write a checkpoint and exit 0; resuming from it continues exactly as an uninterrupted
# run would.  Under moe-launch the signal reaches every rank and all ranks checkpoint the same step.
. "$srcdir/tap.sh"
bin="$top_builddir/trainer/driver/moe-train"
[ -x "$bin" ] || skip_all "moe-train not built"
tmp=$(mktemp -d) || exit 1
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done; rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1

"$bin" prepare /usr/share/common-licenses/GPL-3 "$tmp/d.bin" > /dev/null || { echo "Bail out! prepare failed"; exit 1; }
C=(--data "$tmp/d.bin" --dim 32 --heads 2 --layers 2 --ffn 64 --expert-ffn 16 --seq-len 16 --batch 4
   --init-std 0.1 --lr 0.01 --warmup 3 --bias-gamma 0.01 --seed 9 --lr-steps 100000)

# wait until FILE has at least N lines (at most 120 s), so the signal lands mid-run
wait_lines() {
	local i
	for i in $(seq 1200); do
		[ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# $1 = signal, $2 = directory
interrupt() {
	"$bin" "${C[@]}" --steps 100000 --ckpt-dir "$tmp/$2" --metrics "$tmp/$2.jsonl" > "$tmp/$2.out" 2> "$tmp/$2.err" &
	local pid=$!
	pids+=($pid)
	wait_lines "$tmp/$2.jsonl" 3 || { echo "# no progress from moe-train"; kill -9 $pid; }
	kill -"$1" $pid
	wait $pid
}

interrupt TERM ck
is "$?" 0 "SIGTERM: exit 0"
k=$(sed -n 's/^moe-train: stopping after step \([0-9]*\) on a signal$/\1/p' "$tmp/ck.out")
echo "# stopped after step $k"
ok "it reports the step it stopped after" test -n "$k"
is "$(wc -l < "$tmp/ck.jsonl")" "$k" "that step is the last one in the metrics"
ok "checkpoint of that step written" grep -q "^moe-train: checkpoint of step $k written to " "$tmp/ck.out"
is "$(ls "$tmp/ck")" rank-00000.ckpt "the checkpoint file, and no temp file"
is "$(cat "$tmp/ck.err")" "" "nothing on stderr"

# resume to k+3 and compare with an uninterrupted k+3-step run
n=$((k + 3))
"$bin" "${C[@]}" --steps $n --ckpt-dir "$tmp/ck" --resume --metrics "$tmp/ck.jsonl" --quiet > "$tmp/r.out"
is "$?" 0 "resume after SIGTERM to step $n"
ok "it resumed at step $k" grep -q "resumed from .* at step $k\$" "$tmp/r.out"
"$bin" "${C[@]}" --steps $n --metrics "$tmp/full.jsonl" --quiet > /dev/null
is "$(metrics_keys "$tmp/ck.jsonl" | md5sum)" "$(metrics_keys "$tmp/full.jsonl" | md5sum)" \
	"interrupted + resumed run has the uninterrupted run's losses, norms and loads"

interrupt USR1 usr
is "$?" 0 "SIGUSR1: exit 0"
k=$(sed -n 's/^moe-train: stopping after step \([0-9]*\) on a signal$/\1/p' "$tmp/usr.out")
ok "SIGUSR1 checkpoints too (step $k)" grep -q "^moe-train: checkpoint of step $k written to " "$tmp/usr.out"

# SIGKILL leaves no chance to checkpoint: the last periodic one (--ckpt-every 3) is intact, and
# resuming from it reproduces the uninterrupted run's steps after it
"$bin" "${C[@]}" --steps 100000 --ckpt-every 3 --ckpt-dir "$tmp/kill" --metrics "$tmp/kill.jsonl" --quiet > /dev/null &
pid=$!
pids+=($pid)
wait_lines "$tmp/kill.jsonl" 7 || echo "# no progress from moe-train"
kill -KILL $pid
wait $pid 2> /dev/null
ok "after SIGKILL: one checkpoint file" test "$(ls "$tmp/kill" | grep -c '\.ckpt$')" = 1
# what a kill in the middle of a checkpoint write leaves (the rename never happened)
echo torn > "$tmp/kill/rank-00000.ckpt.tmp.99999"
"$bin" "${C[@]}" --steps 12 --ckpt-dir "$tmp/kill" --resume --metrics "$tmp/kr.jsonl" --quiet > "$tmp/kr.out" 2>&1
is "$?" 0 "resume after SIGKILL"
k=$(sed -n 's/^moe-train: resumed from .* at step \([0-9]*\)$/\1/p' "$tmp/kr.out")
is "$(ls "$tmp/kill")" rank-00000.ckpt "the torn temp file of a killed write is cleaned up, the checkpoint used"
ok "from a periodic checkpoint (step $k, a multiple of 3)" test -n "$k" -a $((k % 3)) = 0 -a "${k:-0}" -ge 3
"$bin" "${C[@]}" --steps 12 --metrics "$tmp/full12.jsonl" --quiet > /dev/null
is "$(metrics_keys "$tmp/kr.jsonl" | md5sum)" "$(sed -n "$((k + 1)),12p" "$tmp/full12.jsonl" | metrics_keys /dev/stdin | md5sum)" \
	"steps $((k + 1))-12 equal those of the uninterrupted run"

# two ranks under moe-launch: it forwards the signal; both ranks stop at the same step
ML="$top_builddir/launcher/moe-launch"
if [ -x "$ML" ]; then
	D=("${C[@]/--batch/--global-batch}")
	"$ML" --nproc 2 --spec ep=2,experts=8 --transport shm -- "$bin" "${D[@]}" --steps 100000 --ckpt-dir "$tmp/c2" \
		--metrics "$tmp/c2.jsonl" > "$tmp/c2.out" 2> "$tmp/c2.err" &
	pid=$!
	pids+=($pid)
	wait_lines "$tmp/c2.jsonl" 3 || { echo "# no progress from moe-launch"; kill -9 $pid; }
	kill -TERM $pid
	wait $pid
	is "$?" 0 "2 ranks: SIGTERM to moe-launch, exit 0"
	k=$(sed -n 's/^moe-train: stopping after step \([0-9]*\) on a signal$/\1/p' "$tmp/c2.out")
	is "$(ls "$tmp/c2" | tr '\n' ' ')" "rank-00000.ckpt rank-00001.ckpt " "2 ranks: one checkpoint per rank"
	"$ML" --nproc 2 --spec ep=2,experts=8 --transport shm -- "$bin" "${D[@]}" --steps $((k + 1)) --ckpt-dir "$tmp/c2" \
		--resume --quiet > "$tmp/c2r.out" 2>&1
	is "$?" 0 "2 ranks: the checkpoints resume together"
	ok "at the step both stopped after ($k)" grep -q "resumed from .* at step $k\$" "$tmp/c2r.out"
else
	echo "# moe-launch not built: 2-rank signal handling not checked"
fi
done_testing
