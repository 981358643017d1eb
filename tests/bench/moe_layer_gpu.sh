#!/bin/bash
# moe_layer_gpu.sh - the CUDA MoE layer (fwd+bwd, bf16) against the same layer in PyTorch eager on the
# same GPU, and the grouped expert GEMM against a dense GEMM of equal FLOPs (prints SKIP without a GPU).
b=$top_builddir/tests/bench/moe_layer_gpu
out=$("$b" "$@") || { echo "$out"; exit 1; }
echo "$out"
case "$out" in SKIP*) exit 0 ;; esac
py=/usr/bin/python3; [ -x "$py" ] || py=python3
t=$("$py" "$top_srcdir/tests/bench/moe_layer_torch.py" "$@" 2>&1 | tail -1)
echo "$t"
ours=$(echo "$out" | grep -o '"fwd_bwd_ms":[0-9.]*' | head -1 | cut -d: -f2)
theirs=$(echo "$t" | grep -o '"fwd_bwd_ms":[0-9.]*' | cut -d: -f2)
[ -n "$ours" ] && [ -n "$theirs" ] && awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "moe layer speed-up over PyTorch eager: %.2fx (target >= 2)\n", b / a }'
exit 0
