/* attention.cu - causal multi-head attention on the GPU as cuBLAS strided-batched products around a
 * softmax kernel (fp32 throughout, also with --dtype bf16):
 *   forward:  q, k, v [B*NH][T][hd] <- qkv;  S = q k^T;  att = causal softmax(S / sqrt(hd)) (saved,
 *             zeros above the diagonal, like the CPU);  y = att v;  out [B][T][C] <- y.
 *   backward: dA = dO v^T;  dS = att (dA - <att, dA>) / sqrt(hd);  dq = dS k;  dk = dS^T q;  dv = att^T dO;
 *             dqkv += the three, back in the [B][T][3C] layout.
 * Column-major views: a row-major [T][hd] head is an hd x T matrix with leading dimension hd. */
#include <math.h>
#include "cuda_ctx.h"
#include "cuda_ops.h"

#define TPB 256

static unsigned grid(size_t n)
{
	unsigned b = tr_cu_blocks(n, TPB);
	return b < 65535u * 8 ? b : 65535u * 8;
}

/* qkv [B][T][3][NH][hd] -> q, k, v [B][NH][T][hd] */
__global__ void k_split(float *q, float *k, float *v, const float *qkv, int B, int T, int NH, int hd)
{
	int C = NH * hd;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)B * T * C; i += (size_t)gridDim.x * blockDim.x) {
		int d = (int)(i % hd), h = (int)(i / hd % NH), t = (int)(i / C % T), b = (int)(i / ((size_t)C * T));
		size_t src = ((size_t)b * T + t) * 3 * C + (size_t)h * hd + d;
		size_t dst = (((size_t)b * NH + h) * T + t) * hd + d;
		q[dst] = qkv[src];
		k[dst] = qkv[src + C];
		v[dst] = qkv[src + 2 * C];
	}
}

/* y [B][NH][T][hd] <-> out [B][T][C] (row ld = ld, at column offset) : to_heads 1 gathers, 0 scatters
 * (accumulate: +=) */
__global__ void k_heads(float *heads, float *rows, int B, int T, int NH, int hd, int ld, int to_heads, int accumulate)
{
	int C = NH * hd;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)B * T * C; i += (size_t)gridDim.x * blockDim.x) {
		int d = (int)(i % hd), h = (int)(i / hd % NH), t = (int)(i / C % T), b = (int)(i / ((size_t)C * T));
		size_t r = ((size_t)b * T + t) * ld + (size_t)h * hd + d;
		size_t hh = (((size_t)b * NH + h) * T + t) * hd + d;
		if (to_heads)
			heads[hh] = rows[r];
		else if (accumulate)
			rows[r] += heads[hh];
		else
			rows[r] = heads[hh];
	}
}

/* one warp per query row t of one (b, h): in place on att[t][0..T) */
__global__ void k_softmax(float *att, int rows, int T, float scale)
{
	size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
	int lane = threadIdx.x & 31;
	if (row >= (size_t)rows)
		return;
	int t = (int)(row % T);
	float *a = att + row * T;
	float mx = -INFINITY;
	for (int j = lane; j <= t; j += 32) {
		float s = a[j] * scale;
		a[j] = s;
		mx = fmaxf(mx, s);
	}
	for (int o = 16; o > 0; o >>= 1)
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
	float sum = 0;
	for (int j = lane; j <= t; j += 32) {
		float e = (float)exp((double)(a[j] - mx));
		a[j] = e;
		sum += e;
	}
	for (int o = 16; o > 0; o >>= 1)
		sum += __shfl_xor_sync(0xffffffffu, sum, o);
	float inv = 1 / sum;
	for (int j = lane; j < T; j += 32)
		a[j] = j <= t ? a[j] * inv : 0.0f;
}

/* dS = att (dA - <att, dA>) scale, in place on dA; zero above the diagonal */
__global__ void k_softmax_bwd(float *da, const float *att, int rows, int T, float scale)
{
	size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
	int lane = threadIdx.x & 31;
	if (row >= (size_t)rows)
		return;
	int t = (int)(row % T);
	float *d = da + row * T;
	const float *a = att + row * T;
	float dot = 0;
	for (int j = lane; j <= t; j += 32)
		dot += a[j] * d[j];
	for (int o = 16; o > 0; o >>= 1)
		dot += __shfl_xor_sync(0xffffffffu, dot, o);
	for (int j = lane; j < T; j += 32)
		d[j] = j <= t ? a[j] * (d[j] - dot) * scale : 0.0f;
}

extern "C" void tr_cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH)
{
	if (B <= 0 || T <= 0)
		return;
	int hd = C / NH, BH = B * NH;
	size_t NC = (size_t)B * T * C;
	float *buf = (float *)tr_cuda_scratch(2, 4 * NC * sizeof(float));
	if (!buf)
		return;
	float *q = buf, *k = buf + NC, *v = buf + 2 * NC, *y = buf + 3 * NC;
	long long sh = (long long)T * hd, sa = (long long)T * T;
	k_split<<<grid(NC), TPB, 0, tr_cu.stream>>>(q, k, v, qkv, B, T, NH, hd);
	TR_CU_LAUNCHED("attention split");
	/* S^T (T x T, column t2 of row t) = k q^T per head */
	tr_cuda_gemm_strided(1, 0, T, T, hd, 1.0f, k, hd, sh, q, hd, sh, 0.0f, att, T, sa, BH);
	k_softmax<<<tr_cu_blocks((size_t)BH * T * 32, TPB), TPB, 0, tr_cu.stream>>>(att, BH * T, T,
										(float)(1.0 / sqrt((double)hd)));
	TR_CU_LAUNCHED("attention softmax");
	/* y^T (hd x T) = v^T att^T */
	tr_cuda_gemm_strided(0, 0, hd, T, T, 1.0f, v, hd, sh, att, T, sa, 0.0f, y, hd, sh, BH);
	k_heads<<<grid(NC), TPB, 0, tr_cu.stream>>>(y, out, B, T, NH, hd, C, 0, 0);
	TR_CU_LAUNCHED("attention merge");
}

extern "C" void tr_cuda_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int B,
					   int T, int C, int NH)
{
	if (B <= 0 || T <= 0)
		return;
	int hd = C / NH, BH = B * NH;
	size_t NC = (size_t)B * T * C, TT = (size_t)BH * T * T;
	float *buf = (float *)tr_cuda_scratch(2, (7 * NC + TT) * sizeof(float));
	if (!buf)
		return;
	float *q = buf, *k = buf + NC, *v = buf + 2 * NC, *dO = buf + 3 * NC, *dq = buf + 4 * NC, *dk = buf + 5 * NC,
	      *dv = buf + 6 * NC, *dA = buf + 7 * NC;
	long long sh = (long long)T * hd, sa = (long long)T * T;
	k_split<<<grid(NC), TPB, 0, tr_cu.stream>>>(q, k, v, qkv, B, T, NH, hd);
	k_heads<<<grid(NC), TPB, 0, tr_cu.stream>>>(dO, (float *)dout, B, T, NH, hd, C, 1, 0);
	TR_CU_LAUNCHED("attention backward split");
	/* dA^T = v dO^T (as S = q k^T with (dO, v)) */
	tr_cuda_gemm_strided(1, 0, T, T, hd, 1.0f, v, hd, sh, dO, hd, sh, 0.0f, dA, T, sa, BH);
	k_softmax_bwd<<<tr_cu_blocks((size_t)BH * T * 32, TPB), TPB, 0, tr_cu.stream>>>(dA, att, BH * T, T,
										    (float)(1.0 / sqrt((double)hd)));
	TR_CU_LAUNCHED("attention softmax backward");
	/* dq^T = k^T dS^T;  dk^T = q^T dS;  dv^T = dO^T att */
	tr_cuda_gemm_strided(0, 0, hd, T, T, 1.0f, k, hd, sh, dA, T, sa, 0.0f, dq, hd, sh, BH);
	tr_cuda_gemm_strided(0, 1, hd, T, T, 1.0f, q, hd, sh, dA, T, sa, 0.0f, dk, hd, sh, BH);
	tr_cuda_gemm_strided(0, 1, hd, T, T, 1.0f, dO, hd, sh, att, T, sa, 0.0f, dv, hd, sh, BH);
	k_heads<<<grid(NC), TPB, 0, tr_cu.stream>>>(dq, dqkv, B, T, NH, hd, 3 * C, 0, 1);
	k_heads<<<grid(NC), TPB, 0, tr_cu.stream>>>(dk, dqkv + C, B, T, NH, hd, 3 * C, 0, 1);
	k_heads<<<grid(NC), TPB, 0, tr_cu.stream>>>(dv, dqkv + 2 * C, B, T, NH, hd, 3 * C, 0, 1);
	TR_CU_LAUNCHED("attention backward merge");
}
