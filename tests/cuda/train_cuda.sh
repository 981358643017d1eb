#!/bin/bash
# train_cuda.sh - moe-train on the CUDA backend against the CPU reference, end to end (skipped with
# "no GPU" where the CUDA backend is not built or no GPU can be opened):
#   50 steps fp32: the loss at every step within 1e-4 relative of --device cpu, router balance alike
#   (max/mean expert load within 0.05 at every step);  50 steps bf16: within 3e-2 relative (bf16 GEMM
#   operands, 8 mantissa bits, compound over 50 AdamW steps);  EP=2 on one GPU (two processes over shm,
#   device buffers staged through pinned host memory) gives the EP=1 losses within 1e-4 (cuBLAS may pick
#   other kernels for other row counts, so not bit for bit as on the CPU);  a checkpoint written on the
#   CPU resumes on the GPU and one written on the GPU resumes on the CPU, matching the one-device runs;
#   --cuda-graph (fp32, bf16): 50 steps within the same bounds of the runs without.
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/driver/lib.sh"
trainer_need "$TRAIN"
trainer_data "$top_srcdir"/trainer/*/*.c
args=(--data "$tmp/data.bin" --dim 64 --heads 4 --layers 3 --dense-layers 1 --ffn 128 --expert-ffn 64
      --experts 8 --top-k 2 --groups 4 --group-topk 2 --route-scale 2.5 --bias-gamma 0.01
      --seq-len 64 --global-batch 8 --seed 3 --threads 2 --quiet --mfu-peak 1)

"$TRAIN" "${args[@]}" --steps 1 --device cuda > "$tmp/probe.out" 2> "$tmp/probe.err"
if [ $? -ne 0 ]; then
	grep -q -e "no GPU" -e "not built" -e "driver" "$tmp/probe.err" && skip_all "no GPU: $(head -1 "$tmp/probe.err")"
	echo "Bail out! moe-train --device cuda failed: $(head -1 "$tmp/probe.err")"
	exit 1
fi
echo "# $(grep -o 'device cuda ([^)]*)' "$tmp/probe.out")"

field() { grep -o "\"$1\":[^,}]*" "$2" | cut -d: -f2-; }
# worst relative loss difference between two metrics files, step by step
worst() { paste <(field loss "$1") <(field loss "$2") |
	awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r } END { printf "%.2e", w + 0 }'; }
within() { awk -v w="$1" -v b="$2" 'BEGIN { exit !(w + 0 <= b + 0) }'; }

"$TRAIN" "${args[@]}" --steps 50 --device cpu --metrics "$tmp/cpu.jsonl" > /dev/null 2>&1
is "$? $(wc -l < "$tmp/cpu.jsonl")" "0 50" "CPU reference: 50 steps"
"$TRAIN" "${args[@]}" --steps 50 --device cuda --metrics "$tmp/gpu.jsonl" > "$tmp/gpu.out" 2>&1
is "$? $(wc -l < "$tmp/gpu.jsonl")" "0 50" "CUDA fp32: 50 steps"
w=$(worst "$tmp/cpu.jsonl" "$tmp/gpu.jsonl")
ok "fp32: loss at every step within 1e-4 relative of the CPU (worst $w)" within "$w" 1e-4
lw=$(paste <(field max_load_over_mean "$tmp/cpu.jsonl") <(field max_load_over_mean "$tmp/gpu.jsonl") |
	awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > w) w = d } END { printf "%.3f", w + 0 }')
ok "fp32: router max/mean load within 0.05 of the CPU at every step (worst $lw)" within "$lw" 0.05
ok "metrics say device cuda, dtype fp32, FLOPs per token and MFU" \
	grep -q '"device":"cuda","dtype":"fp32","flops_per_token":[0-9.e+]*,"mfu":[0-9.]' "$tmp/gpu.jsonl"

"$TRAIN" "${args[@]}" --steps 50 --device cuda --dtype bf16 --metrics "$tmp/bf16.jsonl" > /dev/null 2>&1
is "$? $(wc -l < "$tmp/bf16.jsonl")" "0 50" "CUDA bf16: 50 steps"
w=$(worst "$tmp/cpu.jsonl" "$tmp/bf16.jsonl")
ok "bf16: loss at every step within 3e-2 relative of the fp32 CPU run (worst $w)" within "$w" 3e-2

# --cuda-graph (EP=1): the step captured once, replayed; the routed experts run through the device-count
# grouped GEMM instead of cuBLAS's grouped call and the shared/dense FFNs through cuBLASLt, so the sums
# come in another order: the bounds of GPU against CPU (the optimizer graph gives the default bits,
# test_cuda_grouped_dev; replay against eager is bit for bit, test_graph_path)
"$TRAIN" "${args[@]}" --steps 50 --device cuda --cuda-graph --metrics "$tmp/graph.jsonl" > "$tmp/graph.out" 2>&1
is "$? $(wc -l < "$tmp/graph.jsonl")" "0 50" "--cuda-graph fp32: 50 steps"
ok "--cuda-graph: the banner says so" grep -q 'dtype fp32, CUDA graph' "$tmp/graph.out"
w=$(worst "$tmp/gpu.jsonl" "$tmp/graph.jsonl")
ok "--cuda-graph fp32: loss at every step within 1e-4 relative of the run without (worst $w)" within "$w" 1e-4
lw=$(paste <(field max_load_over_mean "$tmp/gpu.jsonl") <(field max_load_over_mean "$tmp/graph.jsonl") |
	awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > w) w = d } END { printf "%.3f", w + 0 }')
ok "--cuda-graph fp32: router max/mean load within 0.05 of the run without (worst $lw)" within "$lw" 0.05
"$TRAIN" "${args[@]}" --steps 50 --device cuda --dtype bf16 --cuda-graph --metrics "$tmp/bf16g.jsonl" > /dev/null 2>&1
is "$? $(wc -l < "$tmp/bf16g.jsonl")" "0 50" "--cuda-graph bf16: 50 steps"
w=$(worst "$tmp/bf16.jsonl" "$tmp/bf16g.jsonl")
ok "--cuda-graph bf16: loss at every step within 3e-2 relative of bf16 without (worst $w)" within "$w" 3e-2

if [ -x "$ML" ]; then
	"$TRAIN" "${args[@]}" --steps 20 --device cuda --metrics "$tmp/ep1.jsonl" > /dev/null 2>&1
	CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} "$ML" --nproc 2 --spec "ep=2,experts=8" --transport shm -- \
		"$TRAIN" "${args[@]}" --steps 20 --device cuda --metrics "$tmp/ep2.jsonl" > "$tmp/ep2.out" 2>&1
	is "$? $(wc -l < "$tmp/ep2.jsonl")" "0 20" "EP=2 on one GPU (2 processes, shm, staged): 20 steps"
	w=$(worst "$tmp/ep1.jsonl" "$tmp/ep2.jsonl")
	ok "EP=2 loss at every step within 1e-4 relative of EP=1 (worst $w)" within "$w" 1e-4
	ok "EP=2 moved rows between the ranks" test "$(field a2a_bytes "$tmp/ep2.jsonl" | head -1)" -gt 0
fi

# one checkpoint format: CPU -> GPU and GPU -> CPU
"$TRAIN" "${args[@]}" --steps 10 --device cuda --metrics "$tmp/g10.jsonl" > /dev/null 2>&1
"$TRAIN" "${args[@]}" --steps 10 --device cpu --metrics "$tmp/c10.jsonl" > /dev/null 2>&1
"$TRAIN" "${args[@]}" --steps 5 --lr-steps 10 --device cpu --ckpt-dir "$tmp/ck1" --metrics "$tmp/x.jsonl" > /dev/null 2>&1
"$TRAIN" "${args[@]}" --steps 10 --device cuda --ckpt-dir "$tmp/ck1" --resume --metrics "$tmp/x.jsonl" > "$tmp/r1.out" 2>&1
is "$? $(wc -l < "$tmp/x.jsonl")" "0 10" "a CPU checkpoint of step 5 resumes on the GPU to step 10"
w=$(worst "$tmp/g10.jsonl" "$tmp/x.jsonl")
ok "CPU -> GPU: losses within 1e-4 of the GPU-only run (worst $w)" within "$w" 1e-4
"$TRAIN" "${args[@]}" --steps 5 --lr-steps 10 --device cuda --ckpt-dir "$tmp/ck2" --metrics "$tmp/y.jsonl" > /dev/null 2>&1
"$TRAIN" "${args[@]}" --steps 10 --device cpu --ckpt-dir "$tmp/ck2" --resume --metrics "$tmp/y.jsonl" > /dev/null 2>&1
is "$? $(wc -l < "$tmp/y.jsonl")" "0 10" "a GPU checkpoint of step 5 resumes on the CPU to step 10"
w=$(worst "$tmp/c10.jsonl" "$tmp/y.jsonl")
ok "GPU -> CPU: losses within 1e-4 of the CPU-only run (worst $w)" within "$w" 1e-4
done_testing
