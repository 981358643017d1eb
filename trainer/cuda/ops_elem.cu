/* ops_elem.cu - the CUDA backend's row and elementwise ops: embedding, RMSNorm, RoPE, SwiGLU,
 * softmax + cross-entropy, add/scale, the double-precision sums, AdamW.  Each follows its CPU op in
 * trainer/cpu/ expression by expression (same roundings, sigmoid and exp in double where the CPU takes
 * them in double, the build turns off FMA contraction), so elementwise results match the CPU bit for bit
 * and only sums over a row are taken in another order.  Column sums (weight gradients of the embedding
 * and of the norms) run one thread per column in row order: the same order as the CPU. */
#include <math.h>
#include "cuda_ctx.h"
#include "cuda_ops.h"
#include "optim.h"

#define TPB 256

/* block-wide sum in a fixed tree order (deterministic); every thread gets the result */
template <typename T> __device__ T block_sum(T v)
{
	__shared__ T part[32];
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
	__syncthreads();
	if (lane == 0)
		part[w] = v;
	__syncthreads();
	T s = lane < nw ? part[lane] : (T)0;
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	return s;
}

__device__ float block_max(float v)
{
	__shared__ float part[32];
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
	__syncthreads();
	if (lane == 0)
		part[w] = v;
	__syncthreads();
	float s = lane < nw ? part[lane] : -INFINITY;
	for (int o = 16; o > 0; o >>= 1)
		s = fmaxf(s, __shfl_xor_sync(0xffffffffu, s, o));
	return s;
}

#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
			       i += (size_t)gridDim.x * blockDim.x)
static unsigned grid(size_t n)
{
	unsigned b = tr_cu_blocks(n, TPB);
	return b < 65535u * 8 ? b : 65535u * 8;
}

/* ---- embedding ---- */
__global__ void k_emb_fwd(float *out, const uint16_t *tok, const float *wte, int N, int D)
{
	GRID_STRIDE(i, (size_t)N * D)
		out[i] = wte[(size_t)tok[i / D] * D + i % D];
}

__global__ void k_emb_bwd(float *dwte, const float *dout, const uint16_t *tok, int N, int D)
{
	int d = blockIdx.x * blockDim.x + threadIdx.x;
	if (d >= D)
		return;
	for (int n = 0; n < N; n++) /* token order, like the CPU */
		dwte[(size_t)tok[n] * D + d] += dout[(size_t)n * D + d];
}

extern "C" void tr_cuda_embedding_forward(float *out, const uint16_t *tok, const float *wte, int N, int D)
{
	if (N <= 0)
		return;
	k_emb_fwd<<<grid((size_t)N * D), TPB, 0, tr_cu.stream>>>(out, tok, wte, N, D);
	TR_CU_LAUNCHED("embedding_forward");
}

extern "C" void tr_cuda_embedding_backward(float *dwte, const float *dout, const uint16_t *tok, int N, int D)
{
	if (N <= 0)
		return;
	k_emb_bwd<<<tr_cu_blocks(D, 128), 128, 0, tr_cu.stream>>>(dwte, dout, tok, N, D);
	TR_CU_LAUNCHED("embedding_backward");
}

/* ---- RMSNorm: one block per row ---- */
#define RMS_EPS 1e-5

__global__ void k_rms_fwd(float *out, float *rstd, const float *inp, const float *w, int D)
{
	const float *x = inp + (size_t)blockIdx.x * D;
	float *y = out + (size_t)blockIdx.x * D;
	float ss = 0;
	for (int d = threadIdx.x; d < D; d += blockDim.x)
		ss += x[d] * x[d];
	ss = block_sum(ss);
	float r = (float)(1.0 / sqrt((double)ss / D + RMS_EPS));
	if (threadIdx.x == 0)
		rstd[blockIdx.x] = r;
	for (int d = threadIdx.x; d < D; d += blockDim.x)
		y[d] = x[d] * r * w[d];
}

__global__ void k_rms_bwd_dx(float *dinp, const float *dout, const float *inp, const float *w, const float *rstd, int D)
{
	size_t o = (size_t)blockIdx.x * D;
	const float *x = inp + o, *dy = dout + o;
	float *dx = dinp + o;
	float r = rstd[blockIdx.x], dot = 0;
	for (int d = threadIdx.x; d < D; d += blockDim.x)
		dot += w[d] * dy[d] * x[d];
	dot = block_sum(dot);
	float c = r * r * r * dot / D;
	for (int d = threadIdx.x; d < D; d += blockDim.x)
		dx[d] += r * w[d] * dy[d] - c * x[d];
}

__global__ void k_rms_bwd_dw(float *dw, const float *dout, const float *inp, const float *rstd, int N, int D)
{
	int d = blockIdx.x * blockDim.x + threadIdx.x;
	if (d >= D)
		return;
	float acc = 0;
	for (int n = 0; n < N; n++)
		acc += dout[(size_t)n * D + d] * inp[(size_t)n * D + d] * rstd[n];
	dw[d] += acc;
}

extern "C" void tr_cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int D)
{
	if (N <= 0)
		return;
	k_rms_fwd<<<N, TPB, 0, tr_cu.stream>>>(out, rstd, inp, weight, D);
	TR_CU_LAUNCHED("rmsnorm_forward");
}

extern "C" void tr_cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
					 const float *weight, const float *rstd, int N, int D)
{
	if (N <= 0)
		return;
	k_rms_bwd_dx<<<N, TPB, 0, tr_cu.stream>>>(dinp, dout, inp, weight, rstd, D);
	k_rms_bwd_dw<<<tr_cu_blocks(D, 128), 128, 0, tr_cu.stream>>>(dweight, dout, inp, rstd, N, D);
	TR_CU_LAUNCHED("rmsnorm_backward");
}

/* ---- RoPE: one thread per (row, head, pair) ---- */
__global__ void k_rope(float *x, const float *cs, int BT, int T, int stride, int nh, int hd, float sign)
{
	int half = hd / 2;
	GRID_STRIDE(i, (size_t)BT * nh * half) {
		int p = (int)(i % half), h = (int)(i / half % nh), r = (int)(i / ((size_t)half * nh));
		const float *c = cs + (size_t)(r % T) * hd;
		float *v = x + (size_t)r * stride + (size_t)h * hd;
		float co = c[2 * p], si = sign * c[2 * p + 1];
		float a = v[2 * p], b = v[2 * p + 1];
		v[2 * p] = a * co - b * si;
		v[2 * p + 1] = a * si + b * co;
	}
}

static void rope(float *x, const float *cs, int B, int T, int stride, int nh, int hd, float sign)
{
	size_t n = (size_t)B * T * nh * (hd / 2);
	if (!n)
		return;
	k_rope<<<grid(n), TPB, 0, tr_cu.stream>>>(x, cs, B * T, T, stride, nh, hd, sign);
	TR_CU_LAUNCHED("rope");
}

extern "C" void tr_cuda_rope_forward(float *x, const float *cs, int B, int T, int stride, int nh, int hd)
{
	rope(x, cs, B, T, stride, nh, hd, 1.0f);
}

extern "C" void tr_cuda_rope_backward(float *dx, const float *cs, int B, int T, int stride, int nh, int hd)
{
	rope(dx, cs, B, T, stride, nh, hd, -1.0f);
}

/* ---- SwiGLU ---- */
__device__ __forceinline__ float sigmoid_d(float a)
{
	return (float)(1.0 / (1.0 + exp(-(double)a)));
}

__global__ void k_swiglu_fwd(float *out, const float *h1, const float *h3, size_t n)
{
	GRID_STRIDE(i, n) {
		float a = h1[i], sg = sigmoid_d(a);
		out[i] = a * sg * h3[i];
	}
}

__global__ void k_swiglu_bwd(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t n)
{
	GRID_STRIDE(i, n) {
		float a = h1[i], sg = sigmoid_d(a);
		dh3[i] = dout[i] * a * sg;
		dh1[i] = dout[i] * h3[i] * sg * (1 + a * (1 - sg));
	}
}

extern "C" void tr_cuda_swiglu_forward(float *out, const float *h1, const float *h3, size_t n)
{
	if (!n)
		return;
	k_swiglu_fwd<<<grid(n), TPB, 0, tr_cu.stream>>>(out, h1, h3, n);
	TR_CU_LAUNCHED("swiglu_forward");
}

extern "C" void tr_cuda_swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3,
					size_t n)
{
	if (!n)
		return;
	k_swiglu_bwd<<<grid(n), TPB, 0, tr_cu.stream>>>(dh1, dh3, dout, h1, h3, n);
	TR_CU_LAUNCHED("swiglu_backward");
}

/* ---- softmax + cross-entropy: one block per row; probs may alias logits ---- */
__global__ void k_ce_fwd(float *losses, float *probs, const float *logits, const uint16_t *targets, int V)
{
	const float *l = logits + (size_t)blockIdx.x * V;
	float *p = probs + (size_t)blockIdx.x * V;
	float mx = -INFINITY;
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		mx = fmaxf(mx, l[v]);
	mx = block_max(mx);
	double lt = (double)(l[targets[blockIdx.x]] - mx); /* read by all before any thread overwrites l */
	__syncthreads();
	double sum = 0;
	for (int v = threadIdx.x; v < V; v += blockDim.x) {
		float e = (float)exp((double)(l[v] - mx));
		p[v] = e;
		sum += e;
	}
	sum = block_sum(sum);
	for (int v = threadIdx.x; v < V; v += blockDim.x)
		p[v] = (float)(p[v] / sum);
	if (threadIdx.x == 0)
		losses[blockIdx.x] = (float)(log(sum) - lt);
}

__global__ void k_ce_bwd(float *dlogits, const float *probs, const uint16_t *targets, float dloss, int N, int V)
{
	GRID_STRIDE(i, (size_t)N * V) {
		float d = probs[i] * dloss;
		if ((int)(i % V) == targets[i / V])
			d -= dloss;
		dlogits[i] = d;
	}
}

extern "C" void tr_cuda_crossentropy_forward(float *losses, float *probs, const float *logits, const uint16_t *targets,
					     int N, int V)
{
	if (N <= 0)
		return;
	k_ce_fwd<<<N, TPB, 0, tr_cu.stream>>>(losses, probs, logits, targets, V);
	TR_CU_LAUNCHED("crossentropy_forward");
}

extern "C" void tr_cuda_crossentropy_backward(float *dlogits, const float *probs, const uint16_t *targets, float dloss,
					      int N, int V)
{
	if (N <= 0)
		return;
	k_ce_bwd<<<grid((size_t)N * V), TPB, 0, tr_cu.stream>>>(dlogits, probs, targets, dloss, N, V);
	TR_CU_LAUNCHED("crossentropy_backward");
}

/* ---- elementwise ---- */
__global__ void k_add(float *y, const float *a, const float *b, size_t n)
{
	GRID_STRIDE(i, n)
		y[i] = a[i] + b[i];
}

__global__ void k_scale(float *y, float f, size_t n)
{
	GRID_STRIDE(i, n)
		y[i] *= f;
}

extern "C" void tr_cuda_add(float *y, const float *a, const float *b, size_t n)
{
	if (!n)
		return;
	k_add<<<grid(n), TPB, 0, tr_cu.stream>>>(y, a, b, n);
	TR_CU_LAUNCHED("add");
}

extern "C" void tr_cuda_scale(float *y, float f, size_t n)
{
	if (!n)
		return;
	k_scale<<<grid(n), TPB, 0, tr_cu.stream>>>(y, f, n);
	TR_CU_LAUNCHED("scale");
}

/* ---- sums in double: fixed blocks of TR_SUM_BLOCK values, then the partials in block order ---- */
__global__ void k_partial(double *part, const float *x, size_t n, int square)
{
	size_t lo = (size_t)blockIdx.x * TR_SUM_BLOCK, hi = lo + TR_SUM_BLOCK < n ? lo + TR_SUM_BLOCK : n;
	double s = 0;
	for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
		s += square ? (double)x[i] * x[i] : (double)x[i];
	s = block_sum(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

__global__ void k_final(double *out, const double *part, size_t nb)
{
	double s = 0;
	for (size_t b = threadIdx.x; b < nb; b += blockDim.x)
		s += part[b];
	s = block_sum(s);
	if (threadIdx.x == 0)
		*out = s;
}

/* queues out[0] = the sum, out[1..] the partials (TR_SUM_DOUBLES(n) doubles of device memory) */
static void sums(double *out, const float *x, size_t n, int square)
{
	size_t nb = TR_SUM_DOUBLES(n) - 1;
	if (nb > 0x7fffffffu) {
		tr_cuda_fail("sum of %zu values: too many", n);
		return;
	}
	if (!n) {
		TR_CU_OK(cudaMemsetAsync(out, 0, sizeof(double), tr_cu.stream));
		return;
	}
	k_partial<<<(unsigned)nb, TPB, 0, tr_cu.stream>>>(out + 1, x, n, square);
	k_final<<<1, 1024, 0, tr_cu.stream>>>(out, out + 1, nb);
	TR_CU_LAUNCHED("sum");
}

static double dsum(const float *x, size_t n, int square)
{
	if (!n || tr_cu.err[0])
		return 0;
	double *part = (double *)tr_cuda_scratch(3, TR_SUM_DOUBLES(n) * sizeof(double)), out = 0;
	if (!part)
		return 0;
	sums(part, x, n, square);
	tr_backend_cuda.download(&out, part, sizeof(double));
	return out;
}

extern "C" double tr_cuda_sum(const float *x, size_t n)
{
	return dsum(x, n, 0);
}

extern "C" double tr_cuda_sumsq(const float *x, size_t n)
{
	return dsum(x, n, 1);
}

extern "C" void tr_cuda_sum_to(double *out, const float *x, size_t n, int square)
{
	if (!tr_cu.err[0])
		sums(out, x, n, square);
}

/* ---- AdamW: the CPU's update rule, constants from tr_adamw_fold (optim.h) ---- */
static __device__ __forceinline__ void adamw_one(size_t i, float *p, const float *g, float *m, float *v, float gscale,
						 const struct tr_adamw_step &k)
{
	p[i] = p[i] * k.decay - tr_adamw_moments(&k, g[i] * gscale, &m[i], &v[i]);
}

__global__ void k_adamw(float *p, const float *g, float *m, float *v, size_t n, float gscale, struct tr_adamw_step k)
{
	GRID_STRIDE(i, n)
		adamw_one(i, p, g, m, v, gscale, k);
}

extern "C" void tr_cuda_adamw(const struct tr_adamw *h, double lr, long t, float gscale, float *p, const float *g,
			      float *m, float *v, size_t n)
{
	if (!n)
		return;
	k_adamw<<<grid(n), TPB, 0, tr_cu.stream>>>(p, g, m, v, n, gscale, tr_adamw_fold(h, lr, t));
	TR_CU_LAUNCHED("adamw");
}

/* --cuda-graph: the step's constants and the clip factor are read from device memory at run time */
__global__ void k_adamw_dev(float *p, const float *g, float *m, float *v, size_t n, const float *gscale,
			    const struct tr_adamw_step *kp)
{
	struct tr_adamw_step k = *kp;
	float gs = *gscale;
	GRID_STRIDE(i, n)
		adamw_one(i, p, g, m, v, gs, k);
}

extern "C" void tr_cuda_adamw_dev(const struct tr_adamw_step *k, const float *gscale, float *p, const float *g,
				  float *m, float *v, size_t n)
{
	if (!n)
		return;
	k_adamw_dev<<<grid(n), TPB, 0, tr_cu.stream>>>(p, g, m, v, n, gscale, k);
	TR_CU_LAUNCHED("adamw (graph)");
}

__global__ void k_clip(float *scale, double *norm, const double *a, const double *b, double max_norm)
{
	double nrm = sqrt(a[0] + b[0]);
	*norm = nrm;
	*scale = tr_clip_scale(nrm, max_norm);
}

extern "C" void tr_cuda_clip_dev(float *scale, double *norm, const double *a, const double *b, double max_norm)
{
	k_clip<<<1, 1, 0, tr_cu.stream>>>(scale, norm, a, b, max_norm);
	TR_CU_LAUNCHED("clip factor");
}
