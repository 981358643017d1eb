/* router.cu - the CUDA backend's MoE routing: the fused router (sigmoid, + bias for selection, group
 * scores from the top-2 sums, top-M groups, top-k, gates normalised over the chosen k x route scale),
 * its backward, the stable counting sort of (token, slot) pairs by expert, and the fused permute /
 * unpermute of token rows around the expert exchange (gates applied in the combine).
 * The router runs one thread per token through the CPU's very rule (trainer/model/route_pick.h), so the
 * chosen experts and their order (ties: lower id) are the CPU's. */
#include <math.h>
#include "cuda_ctx.h"
#include "cuda_ops.h"
#include "route_pick.h"

#define MAX_E 512   /* experts a token is routed among (per-thread arrays) */
#define MAX_G 64    /* routing groups */
#define TPB 256

static unsigned grid(size_t n)
{
	unsigned b = tr_cu_blocks(n, TPB);
	return b < 65535u * 8 ? b : 65535u * 8;
}

__global__ void k_router_fwd(float *scores, int *idx, float *gates, const float *logits, const float *bias,
			     const int *group_of, int G, int limit, int topk_groups, int N, int E, int k, float rs)
{
	int n = blockIdx.x * blockDim.x + threadIdx.x;
	if (n >= N)
		return;
	float sel[MAX_E], top1[MAX_G], top2[MAX_G], gscore[MAX_G];
	unsigned char allowed[MAX_E], gsize[MAX_G], keep[MAX_G];
	struct tr_route_scratch w = { sel, top1, top2, gscore, allowed, gsize, keep };
	tr_route_pick(scores + (size_t)n * E, idx + (size_t)n * k, gates + (size_t)n * k, logits + (size_t)n * E, bias,
		      group_of, G, limit, topk_groups, E, k, rs, &w);
}

extern "C" void tr_cuda_router_forward(float *scores, int *idx, float *gates, const float *logits, const float *bias,
				       const int *group_of, int G, int topk_groups, int N, int E, int k, float route_scale)
{
	if (N <= 0)
		return;
	int limit = topk_groups > 0 && topk_groups < G;
	if (E > MAX_E || (limit && G > MAX_G)) {
		tr_cuda_fail("router: %d experts in %d groups; the CUDA router handles up to %d experts, %d groups", E, G,
			     MAX_E, MAX_G);
		return;
	}
	/* scores may alias logits: each thread reads its logit before writing the score in its place */
	k_router_fwd<<<tr_cu_blocks(N, 128), 128, 0, tr_cu.stream>>>(scores, idx, gates, logits, bias, group_of, G, limit,
								       topk_groups, N, E, k, route_scale);
	TR_CU_LAUNCHED("router_forward");
}

__global__ void k_router_bwd(float *dlogits, const float *dgates, const float *scores, const int *idx, int N, int E,
			     int k, float rs)
{
	int n = blockIdx.x * blockDim.x + threadIdx.x;
	if (n < N)
		tr_route_grad(dlogits + (size_t)n * E, dgates + (size_t)n * k, scores + (size_t)n * E, idx + (size_t)n * k, E,
			      k, rs);
}

extern "C" void tr_cuda_router_backward(float *dlogits, const float *dgates, const float *scores, const int *idx, int N,
					int E, int k, float route_scale)
{
	if (N <= 0)
		return;
	k_router_bwd<<<tr_cu_blocks(N, 128), 128, 0, tr_cu.stream>>>(dlogits, dgates, scores, idx, N, E, k, route_scale);
	TR_CU_LAUNCHED("router_backward");
}

/* ---- stable counting sort by expert ---- */
__global__ void k_count(int *cnt, const int *idx, int Nk)
{
	for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < Nk; i += gridDim.x * blockDim.x)
		atomicAdd(&cnt[idx[i]], 1);
}

/* one block per expert e walks the pairs in order; a block-wide exclusive scan of "is e" gives each
 * pair its rank among e's pairs, so the order inside an expert is the pair order (stable) */
__global__ void k_place(int *pos, int *src_tok, const int *cnt, const int *idx, int Nk, int k)
{
	__shared__ int warp_tot[32];
	__shared__ int base;
	int e = blockIdx.x, lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	if (threadIdx.x == 0) {
		int o = 0;
		for (int q = 0; q < e; q++)
			o += cnt[q];
		base = o;
	}
	__syncthreads();
	for (int c0 = 0; c0 < Nk; c0 += blockDim.x) {
		int i = c0 + threadIdx.x;
		int mine = i < Nk && idx[i] == e;
		unsigned bal = __ballot_sync(0xffffffffu, mine);
		int before = __popc(bal & ((1u << lane) - 1));
		if (lane == 0)
			warp_tot[w] = __popc(bal);
		__syncthreads();
		int off = 0, tot = 0;
		for (int q = 0; q < nw; q++) {
			off += q < w ? warp_tot[q] : 0;
			tot += warp_tot[q];
		}
		if (mine) {
			int p = base + off + before;
			pos[i] = p;
			src_tok[p] = i / k;
		}
		__syncthreads();
		if (threadIdx.x == 0)
			base += tot;
		__syncthreads();
	}
}

/* the counts into cnt[E] (device memory), the placement into pos and src_tok */
extern "C" void tr_cuda_route_plan_dev(int *cnt, int *pos, int *src_tok, const int *idx, int Nk, int k, int E)
{
	TR_CU_OK(cudaMemsetAsync(cnt, 0, (size_t)E * sizeof(int), tr_cu.stream));
	if (Nk > 0) {
		k_count<<<grid(Nk), TPB, 0, tr_cu.stream>>>(cnt, idx, Nk);
		k_place<<<E, 1024, 0, tr_cu.stream>>>(pos, src_tok, cnt, idx, Nk, k);
		TR_CU_LAUNCHED("route_plan");
	}
}

extern "C" void tr_cuda_route_plan(int *send_cnt_host, int *pos, int *src_tok, const int *idx, int Nk, int k, int E)
{
	int *cnt = (int *)tr_cuda_scratch(3, (size_t)E * sizeof(int));
	if (!cnt)
		return;
	tr_cuda_route_plan_dev(cnt, pos, src_tok, idx, Nk, k, E);
	tr_backend_cuda.download(send_cnt_host, cnt, (size_t)E * sizeof(int));
}

/* ---- permute / unpermute ---- */
__global__ void k_gather(float *out, const float *in, const int *src, int n, int D)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * D; i += (size_t)gridDim.x * blockDim.x)
		out[i] = in[(size_t)src[i / D] * D + i % D];
}

__global__ void k_scatter(float *out, const float *in, const int *dst, int n, int D)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * D; i += (size_t)gridDim.x * blockDim.x)
		out[(size_t)dst[i / D] * D + i % D] = in[i];
}

__global__ void k_gather_sum(float *din, const float *dout, const int *pos, int N, int k, int D)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)N * D; i += (size_t)gridDim.x * blockDim.x) {
		size_t t = i / D, d = i % D;
		float acc = din[i];
		for (int s = 0; s < k; s++)
			acc += dout[(size_t)pos[t * k + s] * D + d];
		din[i] = acc;
	}
}

__global__ void k_combine(float *y, const float *rows, const int *pos, const float *gates, int N, int k, int D)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)N * D; i += (size_t)gridDim.x * blockDim.x) {
		size_t t = i / D, d = i % D;
		float acc = y[i];
		for (int s = 0; s < k; s++)
			acc += gates[t * k + s] * rows[(size_t)pos[t * k + s] * D + d];
		y[i] = acc;
	}
}

/* one warp per (token, slot): the row's gradient and the gate's dot product */
__global__ void k_combine_bwd(float *drows, float *dgates, const float *dy, const float *rows, const int *pos,
			      const float *gates, int N, int k, int D)
{
	size_t ts = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
	int lane = threadIdx.x & 31;
	if (ts >= (size_t)N * k)
		return;
	size_t t = ts / k, p = (size_t)pos[ts];
	float g = gates[ts], dot = 0;
	const float *dyt = dy + t * D, *r = rows + p * D;
	float *dr = drows + p * D;
	for (int d = lane; d < D; d += 32) {
		dr[d] = g * dyt[d];
		dot += dyt[d] * r[d];
	}
	for (int o = 16; o > 0; o >>= 1)
		dot += __shfl_xor_sync(0xffffffffu, dot, o);
	if (lane == 0)
		dgates[ts] = dot;
}

/* the EP=1 combine (backend.h key_sum): a token's k rows in ascending row order, the first copied */
__global__ void k_key_sum(float *out, const float *rows, const int *pos, int N, int k, int D)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)N * D; i += (size_t)gridDim.x * blockDim.x) {
		size_t t = i / D, d = i % D;
		const int *pt = pos + t * k;
		float acc = 0.0f;
		for (int c = 0, last = -1; c < k; c++) {
			int p = -1; /* the smallest position above the last one */
			for (int s = 0; s < k; s++)
				if (pt[s] > last && (p < 0 || pt[s] < p))
					p = pt[s];
			float v = rows[(size_t)p * D + d];
			acc = c ? acc + v : v;
			last = p;
		}
		out[i] = acc;
	}
}

extern "C" void tr_cuda_key_sum(float *out, const float *rows, const int *pos, int N, int k, int D)
{
	if (N <= 0 || k <= 0)
		return;
	k_key_sum<<<grid((size_t)N * D), TPB, 0, tr_cu.stream>>>(out, rows, pos, N, k, D);
	TR_CU_LAUNCHED("key_sum");
}

extern "C" void tr_cuda_permute_forward(float *out, const float *in, const int *src, int n, int D)
{
	if (n <= 0)
		return;
	k_gather<<<grid((size_t)n * D), TPB, 0, tr_cu.stream>>>(out, in, src, n, D);
	TR_CU_LAUNCHED("permute_forward");
}

extern "C" void tr_cuda_permute_scatter(float *out, const float *in, const int *dst, int n, int D)
{
	if (n <= 0)
		return;
	k_scatter<<<grid((size_t)n * D), TPB, 0, tr_cu.stream>>>(out, in, dst, n, D);
	TR_CU_LAUNCHED("permute_scatter");
}

extern "C" void tr_cuda_permute_backward(float *din, const float *dout, const int *pos, int N, int k, int D)
{
	if (N <= 0)
		return;
	k_gather_sum<<<grid((size_t)N * D), TPB, 0, tr_cu.stream>>>(din, dout, pos, N, k, D);
	TR_CU_LAUNCHED("permute_backward");
}

extern "C" void tr_cuda_unpermute_forward(float *y, const float *rows, const int *pos, const float *gates, int N, int k,
					  int D)
{
	if (N <= 0)
		return;
	k_combine<<<grid((size_t)N * D), TPB, 0, tr_cu.stream>>>(y, rows, pos, gates, N, k, D);
	TR_CU_LAUNCHED("unpermute_forward");
}

extern "C" void tr_cuda_unpermute_backward(float *drows, float *dgates, const float *dy, const float *rows, const int *pos,
					   const float *gates, int N, int k, int D)
{
	if (N <= 0)
		return;
	k_combine_bwd<<<tr_cu_blocks((size_t)N * k * 32, TPB), TPB, 0, tr_cu.stream>>>(drows, dgates, dy, rows, pos, gates,
										     N, k, D);
	TR_CU_LAUNCHED("unpermute_backward");
}
