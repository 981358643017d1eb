#!/usr/bin/env python3
"""moe_layer_torch.py - the baseline of tests/bench/moe_layer_gpu.c: the same MoE layer (shared SwiGLU
expert, sigmoid router with a selection bias, top-k, gates normalised over the chosen k x route scale,
routed SwiGLU experts) written in PyTorch eager the usual way (a loop over experts with index_add), bf16,
forward + backward on the same GPU.  Prints one JSON line (or "SKIP ..." without torch / a GPU)."""
import argparse
import json
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP no torch")
    sys.exit(0)

p = argparse.ArgumentParser()
p.add_argument("--tokens", type=int, default=8192)
p.add_argument("--dim", type=int, default=2048)
p.add_argument("--experts", type=int, default=64)
p.add_argument("--expert-ffn", type=int, default=1408)
p.add_argument("--top-k", type=int, default=6)
p.add_argument("--shared-ffn", type=int, default=1408)
p.add_argument("--iters", type=int, default=10)
a = p.parse_args()
if not torch.cuda.is_available():
    print("SKIP no GPU for torch")
    sys.exit(0)
dev, dt = "cuda", torch.bfloat16
N, D, E, De, k, Fs = a.tokens, a.dim, a.experts, a.expert_ffn, a.top_k, a.shared_ffn
g = torch.Generator(device=dev).manual_seed(1)


def param(*shape):
    return (torch.randn(*shape, device=dev, generator=g) * 0.02).to(dt).requires_grad_()


x = torch.randn(N, D, device=dev, generator=g).to(dt).requires_grad_()
dy = torch.randn(N, D, device=dev, generator=g).to(dt)
wr, bias = param(E, D), torch.zeros(E, device=dev)
w1, w3, w2 = param(E, De, D), param(E, De, D), param(E, D, De)
s1, s3, s2 = param(Fs, D), param(Fs, D), param(D, Fs)


def layer(x):
    y = (F.silu(x @ s1.t()) * (x @ s3.t())) @ s2.t()
    s = torch.sigmoid((x @ wr.t()).float())
    idx = torch.topk(s + bias, k, dim=-1).indices
    gates = s.gather(1, idx)
    gates = (gates / gates.sum(-1, keepdim=True) * 2.5).to(dt)
    flat, tok = idx.reshape(-1), torch.arange(N, device=dev).repeat_interleave(k)
    gflat = gates.reshape(-1)
    for e in range(E):
        m = flat == e
        t = tok[m]
        if t.numel() == 0:
            continue
        xe = x[t]
        ye = (F.silu(xe @ w1[e].t()) * (xe @ w3[e].t())) @ w2[e].t()
        y = y.index_add(0, t, ye * gflat[m].unsqueeze(1))
    return y


tf = tb = 0.0
for it in range(-2, a.iters):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    y = layer(x)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    y.backward(dy)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    if it >= 0:
        tf += t1 - t0
        tb += t2 - t1
    for t in (x, wr, w1, w3, w2, s1, s3, s2):
        t.grad = None
ms = (tf + tb) * 1e3 / a.iters
fl = 2.0 * N * D * (3.0 * Fs + E + 3.0 * k * De) * 3
print(json.dumps({"bench": "moe_layer_torch", "device": torch.cuda.get_device_name(), "torch": torch.__version__,
                  "dtype": "bf16", "tokens": N, "fwd_ms": round(tf * 1e3 / a.iters, 3),
                  "bwd_ms": round(tb * 1e3 / a.iters, 3), "fwd_bwd_ms": round(ms, 3),
                  "tflops": round(fl / (ms * 1e-3) / 1e12, 1)}))
