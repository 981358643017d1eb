#!/bin/bash
# trainer_tokens.sh - tokens/s of the CPU trainer (moe-train) at a stated MoE config, as ratios against
# baselines measured in the same run: the same config on 1 OpenMP thread, and a dense-FFN model with the
# same active parameters per token (every FFN dense with the hidden size of shared + top-k experts).
# Figures are the median tokens/s of steps 4..N (the first steps warm caches and allocate).
TRAIN=$top_builddir/trainer/moe-train
[ -x "$TRAIN" ] || { echo "moe-train not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$TRAIN" prepare /usr/share/common-licenses/GPL-3 "$tmp/d.bin" > /dev/null || exit 1
steps=${TRAINER_BENCH_STEPS:-15}
load=$(cut -d' ' -f1 /proc/loadavg)
threads=$(nproc)
common=(--data "$tmp/d.bin" --steps "$steps" --seq-len 64 --batch 8 --dim 128 --heads 4 --layers 4 --quiet)
# MoE: 1 dense layer, then 3 MoE layers of 1 shared expert (256) + top-2 of 8 routed experts (64 each)
moe=(--dense-layers 1 --ffn 256 --expert-ffn 64 --experts 8 --top-k 2)
# dense of equal active parameters: every FFN 256 + 2 x 64 = 384 wide
dense=(--dense-layers 4 --ffn 384)

run() {  # name threads args... -> median tokens/s on stdout
	local name=$1 th=$2
	shift 2
	"$TRAIN" "${common[@]}" "$@" --threads "$th" --metrics "$tmp/$name.jsonl" > "$tmp/$name.out" 2>&1 ||
		{ cat "$tmp/$name.out" >&2; return 1; }
	sed -n '4,$p' "$tmp/$name.jsonl" | sed 's/.*"tokens_per_s":\([0-9.]*\).*/\1/' | sort -g |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
m1=$(run moe1 1 "${moe[@]}") || exit 1
mN=$(run moeN "$threads" "${moe[@]}") || exit 1
dN=$(run denseN "$threads" "${dense[@]}") || exit 1
params() { sed -n 's/.*params \([0-9.]*M\) total, \([0-9.]*M\) active.*/\1 total, \2 active/p' "$tmp/$1.out"; }
echo "moe-train tokens/s (load average $load on $threads cores at the start; OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}), d_model 128, 4 layers, seq 64 x batch 8, median of steps 4..$steps:"
echo "  MoE   ($(params moeN)): $mN tokens/s on $threads threads, $m1 on 1 thread"
echo "  dense ($(params denseN)): $dN tokens/s on $threads threads"
awk -v a="$mN" -v b="$m1" -v d="$dN" -v t="$threads" 'BEGIN {
	printf "  ratio MoE %d threads / 1 thread: %.2fx\n", t, a / b
	printf "  ratio MoE / dense of equal active parameters: %.2fx (above 1: the MoE step is faster)\n", a / d }'
