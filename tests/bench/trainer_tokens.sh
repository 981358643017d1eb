#!/bin/bash
# trainer_tokens.sh - tokens/s of the CPU trainer (moe-train) at a stated MoE config, as ratios against
# baselines measured in the same run: the same config on 1 OpenMP thread, and a dense-FFN model with the
# same active parameters per token (every FFN dense with the hidden size of shared + top-k experts).
# Each figure is the median tokens/s of steps 4..N of a run (the first steps warm caches and allocate);
# the three configs run in turn, TRAINER_BENCH_ROUNDS times (3), and the best round of each counts, so a
# burst of load from other processes on a shared machine does not decide a ratio.
TRAIN=$top_builddir/trainer/driver/moe-train
[ -x "$TRAIN" ] || { echo "moe-train not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$TRAIN" prepare /usr/share/common-licenses/GPL-3 "$tmp/d.bin" > /dev/null || exit 1
steps=${TRAINER_BENCH_STEPS:-12}
# OpenMP threads that spin while waiting take the cores other processes need on a shared machine, and
# then wait for them themselves: passive waiting keeps the thread-scaling figure meaningful there
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
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
rounds=${TRAINER_BENCH_ROUNDS:-3}
m1=0 mN=0 d1=0 dN=0
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b > a) ? b : a }'; }
for i in $(seq "$rounds"); do
	v=$(run moe1 1 "${moe[@]}") || exit 1
	m1=$(max "$m1" "$v")
	v=$(run moeN "$threads" "${moe[@]}") || exit 1
	mN=$(max "$mN" "$v")
	v=$(run dense1 1 "${dense[@]}") || exit 1
	d1=$(max "$d1" "$v")
	v=$(run denseN "$threads" "${dense[@]}") || exit 1
	dN=$(max "$dN" "$v")
done
params() { sed -n 's/.*params \([0-9.]*M\) total, \([0-9.]*M\) active.*/\1 total, \2 active/p' "$tmp/$1.out"; }
echo "moe-train tokens/s (load average $load on $threads cores at the start; OMP_WAIT_POLICY=$OMP_WAIT_POLICY), d_model 128, 4 layers, seq 64 x batch 8, best of $rounds rounds of the median of steps 4..$steps:"
echo "  MoE   ($(params moeN)): $mN tokens/s on $threads threads, $m1 on 1 thread"
echo "  dense ($(params denseN)): $dN tokens/s on $threads threads, $d1 on 1 thread"
awk -v a="$mN" -v b="$m1" -v c="$d1" -v d="$dN" -v t="$threads" 'BEGIN {
	printf "  ratio MoE %d threads / 1 thread: %.2fx\n", t, a / b
	printf "  ratio MoE / dense of equal active parameters: %.2fx on 1 thread, %.2fx on %d (above 1: MoE faster)\n", b / c, a / d, t }'
