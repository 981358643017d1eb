/* gemm.cu - every matrix product of the CUDA backend: the linear layer (cuBLASLt: fp32, or bf16 operands
 * with fp32 accumulation and fp32 output), the routed experts' layers as one grouped cuBLAS call for all
 * local experts (fp32; bf16: one cuBLASLt call per expert), and the strided-batched products of attention.
 *
 * Row-major tensors are column-major transposes, so y[N][OC] = x[N][C] w[OC][C]^T is, for cuBLAS,
 * y^T (OC x N) = w^T^T (T on w's C x OC view) x^T (N).  The three products of a linear layer:
 *   forward  gemm(T, N, m=OC, n=N,  k=C,  A=w lda=C, B=x  ldb=C,  C=y  ldc=OC)
 *   dx      gemm(N, N, m=C,  n=N,  k=OC, A=w lda=C, B=dy ldb=OC, C=dx ldc=C,  beta 1)
 *   dw      gemm(N, T, m=C,  n=OC, k=N,  A=x lda=C, B=dy ldb=OC, C=dw ldc=C,  beta 1)
 */
#include <stdio.h>
#include <string.h>
#include "cuda_ctx.h"
#include "cuda_ops.h"

__global__ void to_bf16(__nv_bfloat16 *dst, const float *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = __float2bfloat16_rn(src[i]);
}

/* El segments of n values, segment j at src + j * stride, packed into dst[El][n] */
__global__ void to_bf16_strided(__nv_bfloat16 *dst, const float *src, size_t stride, size_t n)
{
	const float *s = src + blockIdx.y * stride;
	__nv_bfloat16 *d = dst + blockIdx.y * n;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		d[i] = __float2bfloat16_rn(s[i]);
}

static __nv_bfloat16 *bf16_copy(int slot, const float *src, size_t n)
{
	__nv_bfloat16 *d = (__nv_bfloat16 *)tr_cuda_scratch(slot, n * sizeof(__nv_bfloat16));
	if (!d)
		return NULL;
	unsigned b = tr_cu_blocks(n, 256);
	to_bf16<<<b < 4096 ? b : 4096, 256, 0, tr_cu.stream>>>(d, src, n);
	TR_CU_LAUNCHED("to_bf16");
	return d;
}

static void lt_check(cublasStatus_t s, const char *what)
{
	if (s != CUBLAS_STATUS_SUCCESS)
		tr_cuda_fail("cuBLASLt %s: status %d", what, (int)s);
}

/* the largest power of two up to 256 that divides the address */
static uint32_t align_of(const void *p)
{
	uint32_t a = 256;
	while (a > 1 && (uintptr_t)p % a)
		a /= 2;
	return a;
}

/* D = C = alpha op(A) op(B) + beta C with operands of type ab (fp32 or bf16), fp32 C, fp32 compute */
static void lt_matmul(int ta, int tb, int m, int n, int k, const void *A, int lda, const void *B, int ldb,
		      cudaDataType_t ab, float beta, float *C, int ldc)
{
	cublasLtMatmulDesc_t op = NULL;
	cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
	cublasLtMatmulPreference_t pref = NULL;
	cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	float alpha = 1.0f;
	cublasLtMatmulHeuristicResult_t h;
	int found = 0;
	if (cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS) {
		tr_cuda_fail("cuBLASLt: cannot create a matmul descriptor");
		return;
	}
	cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa));
	cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb));
	lt_check(cublasLtMatrixLayoutCreate(&la, ab, ta ? k : m, ta ? m : k, lda), "layout A");
	lt_check(cublasLtMatrixLayoutCreate(&lb, ab, tb ? n : k, tb ? k : n, ldb), "layout B");
	lt_check(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc), "layout C");
	lt_check(cublasLtMatmulPreferenceCreate(&pref), "preference");
	cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &tr_cu.lt_ws_size,
					     sizeof(tr_cu.lt_ws_size));
	/* the heuristic assumes 256-byte aligned operands unless told: ours sit at any row offset of a buffer */
	uint32_t al[3] = { align_of(A), align_of(B), align_of(C) };
	cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof(al[0]));
	cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof(al[1]));
	cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof(al[2]));
	cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof(al[2]));
	if (!tr_cu.err[0] &&
	    (cublasLtMatmulAlgoGetHeuristic(tr_cu.lt, op, la, lb, lc, lc, pref, 1, &h, &found) != CUBLAS_STATUS_SUCCESS ||
	     found == 0))
		tr_cuda_fail("cuBLASLt: no algorithm for a %dx%dx%d %s GEMM", m, n, k, ab == CUDA_R_16BF ? "bf16" : "fp32");
	if (!tr_cu.err[0])
		lt_check(cublasLtMatmul(tr_cu.lt, op, &alpha, A, la, B, lb, &beta, C, lc, C, lc, &h.algo, tr_cu.lt_ws,
					tr_cu.lt_ws_size, tr_cu.stream), "matmul");
	if (pref)
		cublasLtMatmulPreferenceDestroy(pref);
	if (lc)
		cublasLtMatrixLayoutDestroy(lc);
	if (lb)
		cublasLtMatrixLayoutDestroy(lb);
	if (la)
		cublasLtMatrixLayoutDestroy(la);
	cublasLtMatmulDescDestroy(op);
}

extern "C" void tr_cuda_gemm(int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb,
			     float beta, float *C, int ldc)
{
	if (m <= 0 || n <= 0 || tr_cu.err[0])
		return;
	if (k <= 0) { /* an empty sum: C = beta C; beta is 0 or 1 here */
		if (beta == 0.0f)
			TR_CU_OK(cudaMemset2DAsync(C, (size_t)ldc * sizeof(float), 0, (size_t)m * sizeof(float), n,
						   tr_cu.stream));
		return;
	}
	if (tr_cu.dtype == TR_DTYPE_BF16) {
		__nv_bfloat16 *a = bf16_copy(0, A, (size_t)lda * (ta ? m : k));
		__nv_bfloat16 *b = bf16_copy(1, B, (size_t)ldb * (tb ? k : n));
		if (a && b)
			lt_matmul(ta, tb, m, n, k, a, lda, b, ldb, CUDA_R_16BF, beta, C, ldc);
		return;
	}
	lt_matmul(ta, tb, m, n, k, A, lda, B, ldb, CUDA_R_32F, beta, C, ldc);
}

extern "C" void tr_cuda_gemm_bf16_raw(int m, int n, int k, float *C)
{
	lt_matmul(0, 0, m, n, k, tr_cu.scratch[0], m, tr_cu.scratch[1], k, CUDA_R_16BF, 0.0f, C, m);
}

extern "C" void tr_cuda_gemm_strided(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
				     long long sa, const float *B, int ldb, long long sb, float beta, float *C, int ldc,
				     long long sc, int batch)
{
	if (m <= 0 || n <= 0 || k <= 0 || batch <= 0 || tr_cu.err[0])
		return;
	cublasStatus_t s = cublasSgemmStridedBatched(tr_cu.blas, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
						     m, n, k, &alpha, A, lda, sa, B, ldb, sb, &beta, C, ldc, sc, batch);
	if (s != CUBLAS_STATUS_SUCCESS)
		tr_cuda_fail("cuBLAS strided batched GEMM %dx%dx%d x%d: status %d", m, n, k, batch, (int)s);
}

extern "C" void tr_cuda_matmul_forward(float *out, const float *inp, const float *w, int N, int C, int OC)
{
	tr_cuda_gemm(1, 0, OC, N, C, w, C, inp, C, 0.0f, out, OC);
}

extern "C" void tr_cuda_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
					int N, int C, int OC)
{
	if (N <= 0)
		return;
	if (dinp)
		tr_cuda_gemm(0, 0, C, N, OC, w, C, dout, OC, 1.0f, dinp, C);
	tr_cuda_gemm(0, 1, C, OC, N, inp, C, dout, OC, 1.0f, dw, C);
}

/* ---- grouped expert products: one cuBLAS grouped call, one group per expert that has rows ---- */
enum { G_FWD, G_DX, G_DW };

struct grouped {
	int n;
	cublasOperation_t ta[1024], tb[1024];
	int m[1024], nn[1024], k[1024], lda[1024], ldb[1024], ldc[1024], size[1024];
	float alpha[1024], beta[1024];
	const void *A[1024], *B[1024];
	void *Cp[1024];
};
static struct grouped gq; /* one process, one stream: calls never overlap on the host */

/* the problem of expert j in cuBLAS terms (see the top of the file); a and w are fp32 or bf16 bases
 * (bf16: weights packed [El][OC*C]), esz the element size */
static void add_problem(int kind, const char *x, const char *w, size_t wstep, const char *dy, float *y, float *dw,
			int row0, int nj, int j, int C, int OC, size_t esz)
{
	int g = gq.n++;
	const char *xj = x + (size_t)row0 * C * esz, *wj = w + (size_t)j * wstep * esz, *dyj = dy + (size_t)row0 * OC * esz;
	gq.size[g] = 1;
	gq.alpha[g] = 1.0f;
	gq.beta[g] = kind == G_FWD ? 0.0f : 1.0f;
	if (kind == G_FWD) {
		gq.ta[g] = CUBLAS_OP_T, gq.tb[g] = CUBLAS_OP_N, gq.m[g] = OC, gq.nn[g] = nj, gq.k[g] = C;
		gq.A[g] = wj, gq.lda[g] = C, gq.B[g] = xj, gq.ldb[g] = C;
		gq.Cp[g] = y + (size_t)row0 * OC, gq.ldc[g] = OC;
	} else if (kind == G_DX) {
		gq.ta[g] = CUBLAS_OP_N, gq.tb[g] = CUBLAS_OP_N, gq.m[g] = C, gq.nn[g] = nj, gq.k[g] = OC;
		gq.A[g] = wj, gq.lda[g] = C, gq.B[g] = dyj, gq.ldb[g] = OC;
		gq.Cp[g] = y + (size_t)row0 * C, gq.ldc[g] = C;
	} else {
		gq.ta[g] = CUBLAS_OP_N, gq.tb[g] = CUBLAS_OP_T, gq.m[g] = C, gq.nn[g] = OC, gq.k[g] = nj;
		gq.A[g] = xj, gq.lda[g] = C, gq.B[g] = dyj, gq.ldb[g] = OC;
		gq.Cp[g] = dw, gq.ldc[g] = C;
	}
}

/* one product per expert with rows: kind G_FWD: y = x w_j^T;  G_DX: y += dy w_j;  G_DW: dw_j += dy^T x */
static void grouped(int kind, const float *x, const float *w, size_t wstride, const float *dy, float *y, float *dw,
		    const int *rows, int El, int C, int OC)
{
	if (tr_cu.err[0])
		return;
	if (El > 1024) {
		tr_cuda_fail("grouped expert GEMM: %d local experts, at most 1024", El);
		return;
	}
	int bf = tr_cu.dtype == TR_DTYPE_BF16;
	int R = 0;
	for (int j = 0; j < El; j++)
		R += rows[j];
	if (R == 0)
		return;
	const char *xb = (const char *)x, *wb = (const char *)w, *dyb = (const char *)dy;
	size_t wstep = wstride, esz = sizeof(float);
	if (bf) {
		/* the operands rounded once for all experts; weights packed so expert j is at j * OC * C */
		size_t wn = (size_t)OC * C;
		__nv_bfloat16 *wp = (__nv_bfloat16 *)tr_cuda_scratch(0, wn * El * sizeof(__nv_bfloat16));
		__nv_bfloat16 *op = (__nv_bfloat16 *)tr_cuda_scratch(1, (size_t)R * (kind == G_FWD ? C : kind == G_DX ? OC : C + OC) *
								  sizeof(__nv_bfloat16));
		if (!wp || !op)
			return;
		if (kind != G_DW) {
			dim3 gr(tr_cu_blocks(wn, 256) < 1024 ? tr_cu_blocks(wn, 256) : 1024, El);
			to_bf16_strided<<<gr, 256, 0, tr_cu.stream>>>(wp, w, wstride, wn);
			TR_CU_LAUNCHED("to_bf16_strided");
		}
		size_t on = (size_t)R * (kind == G_DX ? OC : C);
		unsigned b = tr_cu_blocks(on, 256);
		to_bf16<<<b < 4096 ? b : 4096, 256, 0, tr_cu.stream>>>(op, kind == G_DX ? dy : x, on);
		if (kind == G_DW) {
			size_t dn = (size_t)R * OC;
			b = tr_cu_blocks(dn, 256);
			to_bf16<<<b < 4096 ? b : 4096, 256, 0, tr_cu.stream>>>(op + on, dy, dn);
		}
		TR_CU_LAUNCHED("to_bf16");
		wb = (const char *)wp, wstep = wn, esz = sizeof(__nv_bfloat16);
		xb = (const char *)op;
		dyb = kind == G_DX ? (const char *)op : (const char *)(op + on);
	}
	gq.n = 0;
	for (int j = 0, r0 = 0; j < El; r0 += rows[j], j++)
		if (rows[j] > 0)
			add_problem(kind, xb, wb, wstep, dyb, y, dw ? dw + (size_t)j * wstride : NULL, r0, rows[j], j, C, OC, esz);
	int G = gq.n;
	if (bf) {
		/* cuBLAS's grouped GEMM takes bf16 operands only with a bf16 output, and C here is fp32 (a
		 * gradient accumulates into it): one cuBLASLt call per expert on the packed bf16 operands */
		for (int g = 0; g < G; g++)
			lt_matmul(gq.ta[g] == CUBLAS_OP_T, gq.tb[g] == CUBLAS_OP_T, gq.m[g], gq.nn[g], gq.k[g], gq.A[g], gq.lda[g],
				  gq.B[g], gq.ldb[g], CUDA_R_16BF, gq.beta[g], (float *)gq.Cp[g], gq.ldc[g]);
		return;
	}
	void **ptrs = (void **)tr_cuda_scratch(3, 3 * (size_t)G * sizeof(void *));
	if (!ptrs)
		return;
	void *host[3 * 1024];
	for (int g = 0; g < G; g++)
		host[g] = (void *)gq.A[g], host[G + g] = (void *)gq.B[g], host[2 * G + g] = gq.Cp[g];
	tr_backend_cuda.upload(ptrs, host, 3 * (size_t)G * sizeof(void *));
	cublasStatus_t s = cublasGemmGroupedBatchedEx(tr_cu.blas, gq.ta, gq.tb, gq.m, gq.nn, gq.k, gq.alpha,
						      (const void *const *)ptrs, CUDA_R_32F, gq.lda,
						      (const void *const *)(ptrs + G), CUDA_R_32F, gq.ldb, gq.beta, ptrs + 2 * G,
						      CUDA_R_32F, gq.ldc, G, gq.size, CUBLAS_COMPUTE_32F);
	if (s != CUBLAS_STATUS_SUCCESS)
		tr_cuda_fail("cuBLAS grouped expert GEMM (%d experts, %d rows, %dx%d): status %d", G, R, OC, C, (int)s);
}

extern "C" void tr_cuda_expert_matmul_forward(float *out, const float *inp, const float *w, size_t wstride,
					      const int *rows_host, int El, int C, int OC)
{
	grouped(G_FWD, inp, w, wstride, NULL, out, NULL, rows_host, El, C, OC);
}

extern "C" void tr_cuda_expert_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
					       const float *w, size_t wstride, const int *rows_host, int El, int C, int OC)
{
	if (dinp)
		grouped(G_DX, NULL, w, wstride, dout, dinp, NULL, rows_host, El, C, OC);
	grouped(G_DW, inp, w, wstride, dout, NULL, dw, rows_host, El, C, OC);
}
