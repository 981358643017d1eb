/* cuda_ctx.h - the CUDA backend's private state, shared by its .cu files: one device per process (the
 * first one the rank sees; the plugin puts the rank's own GPU first), one stream that every op runs on
 * in order, the cuBLAS/cuBLASLt handles, a grow-only scratch pool, and the first error seen (ops do not
 * return errors: tr_backend.sync reports it, see backend.h). */
#ifndef TR_CUDA_CTX_H
#define TR_CUDA_CTX_H

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cublasLt.h>
#include <stddef.h>
#include "backend.h"

struct tr_cuda {
	int ready;
	enum tr_dtype dtype;
	int device, sm;               /* sm: major*10 + minor */
	cudaStream_t stream;
	cublasHandle_t blas;
	cublasLtHandle_t lt;
	void *lt_ws;                  /* cuBLASLt workspace */
	size_t lt_ws_size;
	void *scratch[4];             /* grow-only pools, one per concurrent use (see cuda_scratch) */
	size_t scratch_n[4];
	int graphs;                   /* CUDA graphs alive (graph.cu): the scratch pools 0-2 may not move */
	char name[700];
	char err[256];                /* first failure, "" when none */
};

extern struct tr_cuda tr_cu;

#ifdef __cplusplus
extern "C" {
#endif
/* record the first failure (printf-style) */
void tr_cuda_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* scratch pool `slot` (0..3) of at least bytes; NULL (and a recorded failure) when out of memory.
 * Slots: 0 GEMM bf16 operand A, 1 GEMM bf16 operand B, 2 attention/ops temporaries, 3 small arrays. */
void *tr_cuda_scratch(int slot, size_t bytes);
/* GEMM in column-major cuBLAS terms, C = alpha op(A) op(B) + beta C, fp32 C; in bf16 mode the fp32
 * operands are rounded to bf16 copies first (scratch slots 0 and 1).  Through cuBLASLt. */
void tr_cuda_gemm(int ta, int tb, int m, int n, int k, const float *A, int lda, const float *B, int ldb,
		  float beta, float *C, int ldc);
/* the same, batched with strides (attention); fp32 operands, fp32 compute */
void tr_cuda_gemm_strided(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda, long long sa,
			  const float *B, int ldb, long long sb, float beta, float *C, int ldc, long long sc, int batch);
#ifdef __cplusplus
}
#endif

#define TR_CU_OK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) \
	tr_cuda_fail("%s: %s", #call, cudaGetErrorString(e_)); } while (0)
#define TR_CU_LAUNCHED(what) do { cudaError_t e_ = cudaGetLastError(); if (e_ != cudaSuccess) \
	tr_cuda_fail("kernel %s: %s", what, cudaGetErrorString(e_)); } while (0)

static inline unsigned tr_cu_blocks(size_t n, unsigned threads)
{
	size_t b = (n + threads - 1) / threads;
	return (unsigned)(b > 0x7fffffffu ? 0x7fffffffu : (b ? b : 1));
}

#endif
