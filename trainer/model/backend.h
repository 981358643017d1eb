/* backend.h - where the model's tensors live and its operations run.  One model definition (model.c,
 * moe.c, model_ffn.c) calls everything through a struct tr_backend; two implementations:
 *   cpu   the fp32 reference (trainer/cpu/: the op_*.c files of ops.h, OpenMP, fixed summation order);
 *   cuda  one NVIDIA GPU (the .cu files of trainer/cuda/, C linkage; built by configure --with-cuda).
 * Every pointer an op takes is backend memory (device memory for cuda) unless its name ends in _host.
 * Ops have the semantics written in ops.h (accumulate vs overwrite, layouts); a backend may sum in
 * another order, which the GPU tests bound per op.  Ops do not report errors one by one: a backend
 * records its first failure and sync() returns it, so the model checks once per exchange and per step.
 */
#ifndef TR_BACKEND_H
#define TR_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tr_adamw;
struct tr_adamw_step;

/* sum_to's out holds the sum and the partial sums of blocks of TR_SUM_BLOCK values */
#define TR_SUM_BLOCK 8192
#define TR_SUM_DOUBLES(n) (1 + ((size_t)(n) + TR_SUM_BLOCK - 1) / TR_SUM_BLOCK)

enum tr_dtype { TR_DTYPE_FP32 = 0, TR_DTYPE_BF16 = 1 };

struct tr_backend {
	const char *name;   /* "cpu" or "cuda" */
	int device_mem;     /* 1: pointers are not host memory; the model stages through host buffers */
	/* Prepare the backend for dtype (bf16: GEMM operands rounded to bf16, fp32 accumulation, fp32
	 * master weights and optimizer state).  0, or -1 with one line in err naming what was asked and what
	 * is there (no GPU, driver older than the runtime, dtype unsupported here). */
	int (*init)(enum tr_dtype dtype, char *err, size_t errlen);
	const char *(*device_name)(void);  /* e.g. "NVIDIA H200 (sm_90, 139 GiB)"; "host CPU" */
	/* dense bf16 GEMM throughput measured now (TFLOP/s), the peak MFU is quoted against; 0 = unknown */
	double (*measure_peak_tflops)(void);

	/* memory */
	void *(*alloc)(size_t bytes);               /* zeroed; NULL when out of memory (sync() then says so) */
	void (*free)(void *p);
	void *(*host_alloc)(size_t bytes);          /* host memory fit for staging (pinned for cuda) */
	void (*host_free)(void *p);
	void (*upload)(void *dst, const void *src_host, size_t bytes);
	void (*download)(void *dst_host, const void *src, size_t bytes); /* returns when the data is there */
	void (*copy)(void *dst, const void *src, size_t bytes);
	void (*zero)(void *p, size_t bytes);
	int (*sync)(char *err, size_t errlen);      /* wait for queued work; 0, or -1 and the first failure */

	/* the ops of ops.h */
	void (*embedding_forward)(tr_real *out, const uint16_t *tok, const tr_real *wte, int N, int D);
	void (*embedding_backward)(tr_real *dwte, const tr_real *dout, const uint16_t *tok, int N, int D);
	void (*matmul_forward)(tr_real *out, const tr_real *inp, const tr_real *w, int N, int C, int OC);
	void (*matmul_backward)(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp, const tr_real *w,
				int N, int C, int OC);
	void (*rmsnorm_forward)(tr_real *out, tr_real *rstd, const tr_real *inp, const tr_real *weight, int N, int D);
	void (*rmsnorm_backward)(tr_real *dinp, tr_real *dweight, const tr_real *dout, const tr_real *inp,
				 const tr_real *weight, const tr_real *rstd, int N, int D);
	void (*rope_forward)(tr_real *x, const tr_real *cs, int B, int T, int stride, int nh, int hd);
	void (*rope_backward)(tr_real *dx, const tr_real *cs, int B, int T, int stride, int nh, int hd);
	void (*attention_forward)(tr_real *out, tr_real *att, const tr_real *qkv, int B, int T, int C, int NH);
	void (*attention_backward)(tr_real *dqkv, const tr_real *dout, const tr_real *qkv, const tr_real *att,
				   int B, int T, int C, int NH);
	void (*swiglu_forward)(tr_real *out, const tr_real *h1, const tr_real *h3, size_t n);
	void (*swiglu_backward)(tr_real *dh1, tr_real *dh3, const tr_real *dout, const tr_real *h1, const tr_real *h3,
				size_t n);
	void (*router_forward)(tr_real *scores, int *idx, tr_real *gates, const tr_real *logits, const tr_real *bias,
			       const int *group_of, int G, int topk_groups, int N, int E, int k, float route_scale);
	void (*router_backward)(tr_real *dlogits, const tr_real *dgates, const tr_real *scores, const int *idx,
				int N, int E, int k, float route_scale);
	void (*permute_forward)(tr_real *out, const tr_real *in, const int *src, int n, int D);
	void (*permute_backward)(tr_real *din, const tr_real *dout, const int *pos, int N, int k, int D);
	void (*permute_scatter)(tr_real *out, const tr_real *in, const int *dst, int n, int D);
	void (*unpermute_forward)(tr_real *y, const tr_real *rows, const int *pos, const tr_real *gates, int N, int k,
				  int D);
	void (*unpermute_backward)(tr_real *drows, tr_real *dgates, const tr_real *dy, const tr_real *rows,
				   const int *pos, const tr_real *gates, int N, int k, int D);
	void (*crossentropy_forward)(tr_real *losses, tr_real *probs, const tr_real *logits, const uint16_t *targets,
				     int N, int V);
	void (*crossentropy_backward)(tr_real *dlogits, const tr_real *probs, const uint16_t *targets, tr_real dloss,
				      int N, int V);

	/* routing bookkeeping (ops.h tr_route_plan): stable counting sort of the N*k (token, slot) pairs by
	 * expert; send_cnt_host[E] arrives on the host (the all-to-all needs it) */
	void (*route_plan)(int *send_cnt_host, int *pos, int *src_tok, const int *idx, int Nk, int k, int E);
	/* the routed experts' linear layers as one grouped product (ops.h tr_expert_matmul_*): rows of
	 * expert j are the rows_host[j] rows after those of experts < j; its weight is w + j * wstride */
	void (*expert_matmul_forward)(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride,
				      const int *rows_host, int El, int C, int OC);
	void (*expert_matmul_backward)(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
				       const tr_real *w, size_t wstride, const int *rows_host, int El, int C, int OC);

	/* elementwise and reductions */
	void (*add)(tr_real *y, const tr_real *a, const tr_real *b, size_t n);   /* y = a + b */
	void (*scale)(tr_real *y, tr_real f, size_t n);                          /* y *= f */
	double (*sum)(const tr_real *x, size_t n);                               /* in double, fixed order */
	double (*sumsq)(const tr_real *x, size_t n);                             /* in double, fixed order */
	/* AdamW over a flat segment (optim.h has the rule and struct tr_adamw) */
	void (*adamw)(const struct tr_adamw *h, double lr, long t, float gscale, tr_real *p, const tr_real *g,
		      float *m, float *v, size_t n);

	/* ---- graph mode (--cuda-graph, model.h tr_model_set_graph): variants of the ops above that keep
	 * their counts and results in backend memory, so a step has no host round trip and can be captured */
	/* route_plan with the counts cnt[E] left in backend memory */
	void (*route_plan_dev)(int *cnt, int *pos, int *src_tok, const int *idx, int Nk, int k, int E);
	/* expert_matmul_* with the rows[El] of each expert in backend memory; they sum to R (the launch size) */
	void (*expert_matmul_forward_dev)(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride,
					  const int *rows, int El, int R, int C, int OC);
	void (*expert_matmul_backward_dev)(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
					   const tr_real *w, size_t wstride, const int *rows, int El, int R, int C,
					   int OC);
	/* the combine of EP size 1: out[t] (=) the rows pos[t*k .. t*k+k-1] summed in ascending row order,
	 * the first one copied: the order of tr_alltoallv_sum_f32 (comm.h) */
	void (*key_sum)(tr_real *out, const tr_real *rows, const int *pos, int N, int k, int D);
	/* out[0] = sum() (square: sumsq()) of x, the same value; out: backend memory of TR_SUM_DOUBLES(n) */
	void (*sum_to)(double *out, const tr_real *x, size_t n, int square);
	/* NULL below where the backend cannot capture graphs (cpu) */
	/* *scale = tr_clip_scale(*norm = sqrt(a[0] + b[0]), max_norm) (optim.h), all in backend memory */
	void (*clip_dev)(float *scale, double *norm, const double *a, const double *b, double max_norm);
	/* adamw with the step's constants (tr_adamw_fold) and the clip factor read from backend memory */
	void (*adamw_dev)(const struct tr_adamw_step *k, const float *gscale, tr_real *p, const tr_real *g, float *m,
			  float *v, size_t n);
	/* everything queued between graph_begin and graph_end becomes one executable graph (nothing of it
	 * runs then); graph_launch replays it in order with the other work.  0, or -1 and one line in err
	 * (graph_end: what broke the capture, e.g. a host synchronisation or an allocation inside it) */
	int (*graph_begin)(char *err, size_t errlen);
	int (*graph_end)(void **exec, char *err, size_t errlen);
	int (*graph_launch)(void *exec, char *err, size_t errlen);
	void (*graph_free)(void *exec);
};

/* The CPU reference backend (always there), and the CUDA one (only in builds with the CUDA backend:
 * reach it through tr_backend_get). */
extern const struct tr_backend tr_backend_cpu;
extern const struct tr_backend tr_backend_cuda;
/* A backend by name ("cpu", "cuda"); NULL and one line in err when it is unknown or not built. */
const struct tr_backend *tr_backend_get(const char *name, char *err, size_t errlen);
/* Whether the CUDA backend was compiled in. */
int tr_backend_have_cuda(void);

#ifdef __cplusplus
}
#endif
#endif
