#!/bin/bash
# resume.sh - a run stopped after k steps and resumed to N gives exactly (bit for bit) the losses of an
# uninterrupted N-step run, also with another OpenMP thread count after the resume; a checkpoint from a
# different configuration, a corrupt one, or one from another world size is refused with one line.
. "$srcdir/tap.sh"
bin="$top_builddir/trainer/driver/moe-train"
[ -x "$bin" ] || skip_all "moe-train not built"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1

"$bin" prepare /usr/share/common-licenses/GPL-3 "$tmp/d.bin" > /dev/null || { echo "Bail out! prepare failed"; exit 1; }
# tiny model; a fast router bias so that the router state matters for the result
C=(--data "$tmp/d.bin" --dim 32 --heads 2 --layers 2 --ffn 64 --expert-ffn 16 --seq-len 16 --batch 4
   --init-std 0.1 --lr 0.01 --warmup 3 --bias-gamma 0.01 --seed 5 --quiet)

"$bin" "${C[@]}" --steps 12 --metrics "$tmp/full.jsonl" > /dev/null
is "$?" 0 "uninterrupted 12-step run"
"$bin" "${C[@]}" --steps 5 --lr-steps 12 --ckpt-dir "$tmp/ck" --metrics "$tmp/part.jsonl" > /dev/null
is "$?" 0 "first part: 5 steps, checkpoint at the end"
ok "one checkpoint file for the one rank, no temp file" test "$(ls "$tmp/ck")" = rank-00000.ckpt
OMP_NUM_THREADS=2 "$bin" "${C[@]}" --steps 12 --ckpt-dir "$tmp/ck" --resume --metrics "$tmp/part.jsonl" > "$tmp/out"
is "$?" 0 "second part: --resume to step 12 (on 2 threads)"
ok "it says where it resumed" grep -q "^moe-train: resumed from .* at step 5$" "$tmp/out"
is "$(metrics_keys "$tmp/part.jsonl" | md5sum)" "$(metrics_keys "$tmp/full.jsonl" | md5sum)" \
	"steps 1-12: loss, lr, grad norm, load, a2a bytes identical to the uninterrupted run"
is "$(wc -l < "$tmp/part.jsonl")" 12 "the metrics file continued (12 lines)"

# nothing to do when the checkpoint is already at --steps
"$bin" "${C[@]}" --steps 12 --ckpt-dir "$tmp/ck" --resume > "$tmp/out"
is "$?" 0 "resuming a finished run exits 0"
ok "and says there is nothing to do" grep -q "^done: already at step 12 of 12" "$tmp/out"

# refusals: one line on stderr naming the problem, exit 2
cp -r "$tmp/ck" "$tmp/ck2"
"$bin" "${C[@]}" --dim 48 --steps 14 --ckpt-dir "$tmp/ck2" --resume > /dev/null 2> "$tmp/err"
is "$?" 2 "another --dim: exit 2"
is "$(cat "$tmp/err")" "moe-train: --resume: $tmp/ck2/rank-00000.ckpt was written by a different configuration: d_model: checkpoint has 32, this run has 48" \
	"one line naming the setting and both values"
"$bin" "${C[@]}" --seed 6 --steps 14 --ckpt-dir "$tmp/ck2" --resume > /dev/null 2> "$tmp/err"
ok "another --seed (data order) is refused too" grep -q "seed: checkpoint has 5, this run has 6" "$tmp/err"
printf 'x' | dd of="$tmp/ck2/rank-00000.ckpt" bs=1 seek=200 conv=notrunc 2> /dev/null
"$bin" "${C[@]}" --steps 14 --ckpt-dir "$tmp/ck2" --resume > /dev/null 2> "$tmp/err"
is "$?" 2 "a corrupted checkpoint: exit 2"
ok "named as corrupt in one line" test "$(wc -l < "$tmp/err")" = 1 -a -n "$(grep 'checksum mismatch' "$tmp/err")"
rm -rf "$tmp/ck3"
"$bin" "${C[@]}" --steps 2 --ckpt-dir "$tmp/ck3" --resume > /dev/null 2> "$tmp/err"
is "$?" 0 "--resume with an empty directory starts fresh"
ok "and says so" grep -q "no checkpoint in .*, starting at step 0" "$tmp/err"

# the same over two ranks (EP=2, one file per rank), when moe-launch is built
ML="$top_builddir/launcher/moe-launch"
if [ -x "$ML" ]; then
	D=(--data "$tmp/d.bin" --dim 32 --heads 2 --layers 2 --ffn 64 --expert-ffn 16 --seq-len 16 --global-batch 8
	   --init-std 0.1 --lr 0.01 --warmup 3 --bias-gamma 0.01 --seed 5 --quiet)
	"$ML" --nproc 2 --spec ep=2,experts=8 --transport shm -- "$bin" "${D[@]}" --steps 8 --metrics "$tmp/f2.jsonl" > /dev/null 2>&1
	is "$?" 0 "2 ranks: uninterrupted 8-step run"
	"$ML" --nproc 2 --spec ep=2,experts=8 --transport shm -- "$bin" "${D[@]}" --steps 3 --lr-steps 8 --ckpt-dir "$tmp/c2" \
		--metrics "$tmp/p2.jsonl" > /dev/null 2>&1
	is "$?" 0 "2 ranks: 3 steps, then a checkpoint"
	is "$(ls "$tmp/c2" | tr '\n' ' ')" "rank-00000.ckpt rank-00001.ckpt " "one file per rank"
	"$ML" --nproc 2 --spec ep=2,experts=8 --transport tcp -- "$bin" "${D[@]}" --steps 8 --ckpt-dir "$tmp/c2" --resume \
		--metrics "$tmp/p2.jsonl" > /dev/null 2>&1
	is "$?" 0 "2 ranks: resumed to step 8 (over tcp this time)"
	is "$(metrics_keys "$tmp/p2.jsonl" | md5sum)" "$(metrics_keys "$tmp/f2.jsonl" | md5sum)" "2 ranks: identical to the uninterrupted run"
	"$bin" "${D[@]}" --steps 9 --ckpt-dir "$tmp/c2" --resume > /dev/null 2> "$tmp/err"
	is "$?" 2 "a 2-rank checkpoint resumed by one process: exit 2"
	ok "naming the world size" grep -q "world: checkpoint has 2, this run has 1" "$tmp/err"
else
	echo "# moe-launch not built: 2-rank resume not checked"
fi
done_testing
