#!/bin/bash
# devcomm_cuda.sh - moe-train with the device communicators (--device-comm) on a GPU, against staging
# (skipped with "no GPU" where the CUDA backend is not built or no GPU can be opened):
#   cuda-ipc between 2, 3 and 4 processes on one GPU (EP = world): the metrics of 10 steps - losses,
#   router loads, a2a byte counters - equal those of the staged run bit for bit (same kernels, same
#   summation orders: the combine in comm.h's order, the all-reduce in rank order);
#   nccl at world 1 (NCCL refuses two ranks on one GPU): 10 steps run, losses within 1e-5 relative of
#   staging (the one-rank all-reduce is a copy, so they are expected equal; NCCL promises no order);
#   nccl with 2 ranks on one GPU: a clear error from NCCL, not a hang.
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/driver/lib.sh"
trainer_need "$TRAIN"
"$TRAIN" --help | grep -q '^devices in this build: cpu, cuda$' || skip_all "no GPU code: the CUDA backend is not built"
ls /dev/nvidia[0-9]* > /dev/null 2>&1 || skip_all "no GPU (no /dev/nvidiaN)"
trainer_data "$top_srcdir"/trainer/*/*.c
args=(--data "$tmp/data.bin" --dim 64 --heads 4 --layers 3 --dense-layers 1 --ffn 128 --expert-ffn 64
      --experts 12 --top-k 2 --groups 4 --group-topk 2 --route-scale 2.5 --seq-len 64 --global-batch 12
      --seed 5 --threads 2 --quiet --mfu-peak 1 --device cuda)
"$TRAIN" "${args[@]}" --steps 1 > "$tmp/probe.out" 2> "$tmp/probe.err"
if [ $? -ne 0 ]; then
	grep -q -e "no GPU" -e "not built" -e "driver" "$tmp/probe.err" && skip_all "no GPU: $(head -1 "$tmp/probe.err")"
	echo "Bail out! moe-train --device cuda failed: $(head -1 "$tmp/probe.err")"
	exit 1
fi
field() { grep -o "\"$1\":[^,}]*" "$2" | cut -d: -f2-; }
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}

if [ -x "$ML" ]; then
	for n in 2 3 4; do
		for dc in staged cuda-ipc; do
			timeout 300 "$ML" --nproc $n --spec "ep=$n,experts=12" --transport shm -- \
				"$TRAIN" "${args[@]}" --steps 10 --device-comm $dc --metrics "$tmp/$dc-$n.jsonl" > "$tmp/$dc-$n.out" 2>&1
			is "$? $(wc -l < "$tmp/$dc-$n.jsonl")" "0 10" "$n processes on one GPU, --device-comm $dc: 10 steps"
		done
		ok "$n processes: the run said it used cuda-ipc" grep -q "device comm cuda-ipc" "$tmp/cuda-ipc-$n.out"
		ok "$n processes: cuda-ipc metrics (losses, loads, a2a bytes) equal staging bit for bit" \
			cmp -s <(metrics_keys "$tmp/staged-$n.jsonl") <(metrics_keys "$tmp/cuda-ipc-$n.jsonl")
		ok "$n processes: rows moved between the ranks" test "$(field a2a_bytes "$tmp/cuda-ipc-$n.jsonl" | tail -1)" -gt 0
	done
	timeout 120 "$ML" --nproc 2 --spec "ep=2,experts=12" --transport shm -- \
		"$TRAIN" "${args[@]}" --steps 2 --device-comm nccl > "$tmp/nccl2.out" 2>&1
	rc=$?
	ok "nccl with 2 ranks on one GPU: refused by NCCL with a line naming it, no hang (exit $rc)" \
		test $rc -ne 0 -a $rc -ne 124 -a -n "$(grep -F -e "--device-comm nccl" "$tmp/nccl2.out")"
	grep -F -e "--device-comm nccl" "$tmp/nccl2.out" | head -2 | sed 's/^/# /'
else
	for n in 2 3 4; do _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP cuda-ipc at $n processes: moe-launch not built (no hwloc)"; done
fi

"$TRAIN" "${args[@]}" --steps 10 --metrics "$tmp/s1.jsonl" > /dev/null 2>&1
"$TRAIN" "${args[@]}" --steps 10 --device-comm nccl --metrics "$tmp/n1.jsonl" > "$tmp/n1.out" 2>&1
is "$? $(wc -l < "$tmp/n1.jsonl")" "0 10" "nccl at world 1: 10 steps"
ok "nccl at world 1: the run said it used nccl" grep -q "device comm nccl" "$tmp/n1.out"
w=$(paste <(field loss "$tmp/s1.jsonl") <(field loss "$tmp/n1.jsonl") |
	awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r } END { printf "%.2e", w + 0 }')
ok "nccl at world 1: losses within 1e-5 relative of staging (worst $w)" awk -v w="$w" 'BEGIN { exit !(w + 0 <= 1e-5) }'
cmp -s <(metrics_keys "$tmp/s1.jsonl") <(metrics_keys "$tmp/n1.jsonl") && echo "# nccl at world 1: bit-identical to staging" ||
	echo "# nccl at world 1: not bit-identical to staging (allowed)"
done_testing
