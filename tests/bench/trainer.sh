#!/bin/bash
# trainer.sh - the CPU trainer's speed as ratios against baselines from the same run: tiled matmul vs
# plain loops, a model step on all threads vs one (bench/trainer_ops.c), and moe-train with EP=2 over
# shm vs one process on the same global batch (the cost of the expert exchange).  Prints figures.
bin=$top_builddir/tests/bench/trainer_ops
[ -x "$bin" ] || { echo "trainer_ops not built (make check builds it)"; exit 1; }
"$bin" "${TRAINER_BENCH_REPS:-5}" || exit 1
TRAIN=$top_builddir/trainer/driver/moe-train
ML=$top_builddir/launcher/moe-launch
[ -x "$TRAIN" ] && [ -x "$ML" ] || { echo "moe-train / moe-launch not built"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat "$top_srcdir"/trainer/*/*.c > "$tmp/data.txt"
"$TRAIN" prepare "$tmp/data.txt" "$tmp/data.bin" > /dev/null || exit 1
args=(--data "$tmp/data.bin" --steps 10 --global-batch 8 --seq-len 64 --threads 1 --quiet)
ms() { sed -n 's/.*, \([0-9.]*\) ms\/step.*/\1/p' "$1"; }
"$TRAIN" "${args[@]}" > "$tmp/1.out" 2>&1 || { cat "$tmp/1.out"; exit 1; }
"$ML" --nproc 2 --spec ep=2,experts=8 --transport shm -- "$TRAIN" "${args[@]}" > "$tmp/2.out" 2>&1 ||
	{ cat "$tmp/2.out"; exit 1; }
a=$(ms "$tmp/1.out") b=$(ms "$tmp/2.out")
awk -v a="$a" -v b="$b" 'BEGIN { printf "moe-train, global batch 8x64, 1 thread per rank: EP=1 %.1f ms/step, EP=2 (shm) %.1f ms/step = %.2fx speedup\n", a, b, a / b }'
