/* cuda_ops.h - the CUDA backend's ops (C linkage), one for each entry of struct tr_backend with the
 * semantics of ops.h; backend_cuda.cu binds them into tr_backend_cuda. */
#ifndef TR_CUDA_OPS_H
#define TR_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif
void tr_cuda_embedding_forward(tr_real *out, const uint16_t *tok, const tr_real *wte, int N, int D);
void tr_cuda_embedding_backward(tr_real *dwte, const tr_real *dout, const uint16_t *tok, int N, int D);
void tr_cuda_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, int N, int C, int OC);
void tr_cuda_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp, const tr_real *w,
	int N, int C, int OC);
void tr_cuda_rmsnorm_forward(tr_real *out, tr_real *rstd, const tr_real *inp, const tr_real *weight, int N, int D);
void tr_cuda_rmsnorm_backward(tr_real *dinp, tr_real *dweight, const tr_real *dout, const tr_real *inp, const tr_real
	*weight, const tr_real *rstd, int N, int D);
void tr_cuda_rope_forward(tr_real *x, const tr_real *cs, int B, int T, int stride, int nh, int hd);
void tr_cuda_rope_backward(tr_real *dx, const tr_real *cs, int B, int T, int stride, int nh, int hd);
void tr_cuda_attention_forward(tr_real *out, tr_real *att, const tr_real *qkv, int B, int T, int C, int NH);
void tr_cuda_attention_backward(tr_real *dqkv, const tr_real *dout, const tr_real *qkv, const tr_real *att, int B, int
	T, int C, int NH);
void tr_cuda_swiglu_forward(tr_real *out, const tr_real *h1, const tr_real *h3, size_t n);
void tr_cuda_swiglu_backward(tr_real *dh1, tr_real *dh3, const tr_real *dout, const tr_real *h1, const tr_real *h3,
	size_t n);
void tr_cuda_router_forward(tr_real *scores, int *idx, tr_real *gates, const tr_real *logits, const tr_real *bias,
	const int *group_of, int G, int topk_groups, int N, int E, int k, float route_scale);
void tr_cuda_router_backward(tr_real *dlogits, const tr_real *dgates, const tr_real *scores, const int *idx, int N,
	int E, int k, float route_scale);
void tr_cuda_permute_forward(tr_real *out, const tr_real *in, const int *src, int n, int D);
void tr_cuda_permute_backward(tr_real *din, const tr_real *dout, const int *pos, int N, int k, int D);
void tr_cuda_permute_scatter(tr_real *out, const tr_real *in, const int *dst, int n, int D);
void tr_cuda_unpermute_forward(tr_real *y, const tr_real *rows, const int *pos, const tr_real *gates, int N, int k,
	int D);
void tr_cuda_unpermute_backward(tr_real *drows, tr_real *dgates, const tr_real *dy, const tr_real *rows, const int
	*pos, const tr_real *gates, int N, int k, int D);
void tr_cuda_crossentropy_forward(tr_real *losses, tr_real *probs, const tr_real *logits, const uint16_t *targets, int
	N, int V);
void tr_cuda_crossentropy_backward(tr_real *dlogits, const tr_real *probs, const uint16_t *targets, tr_real dloss, int
	N, int V);
void tr_cuda_route_plan(int *send_cnt_host, int *pos, int *src_tok, const int *idx, int Nk, int k, int E);
void tr_cuda_expert_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride, const int
	*rows_host, int El, int C, int OC);
void tr_cuda_expert_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp, const tr_real
	*w, size_t wstride, const int *rows_host, int El, int C, int OC);
void tr_cuda_add(tr_real *y, const tr_real *a, const tr_real *b, size_t n);
void tr_cuda_scale(tr_real *y, tr_real f, size_t n);
double tr_cuda_sum(const tr_real *x, size_t n);
double tr_cuda_sumsq(const tr_real *x, size_t n);
void tr_cuda_adamw(const struct tr_adamw *h, double lr, long t, float gscale, tr_real *p, const tr_real *g, float *m,
	float *v, size_t n);
/* graph mode (backend.h): counts in device memory, no host round trip (router.cu, gemm_dev.cu,
 * ops_elem.cu), and the capture itself (graph.cu) */
void tr_cuda_route_plan_dev(int *cnt, int *pos, int *src_tok, const int *idx, int Nk, int k, int E);
void tr_cuda_expert_matmul_forward_dev(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride,
	const int *rows, int El, int R, int C, int OC);
void tr_cuda_expert_matmul_backward_dev(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
	const tr_real *w, size_t wstride, const int *rows, int El, int R, int C, int OC);
void tr_cuda_key_sum(tr_real *out, const tr_real *rows, const int *pos, int N, int k, int D);
void tr_cuda_sum_to(double *out, const tr_real *x, size_t n, int square);
void tr_cuda_clip_dev(float *scale, double *norm, const double *a, const double *b, double max_norm);
void tr_cuda_adamw_dev(const struct tr_adamw_step *k, const float *gscale, tr_real *p, const tr_real *g, float *m,
	float *v, size_t n);
int tr_cuda_graph_begin(char *err, size_t errlen);
int tr_cuda_graph_end(void **exec, char *err, size_t errlen);
int tr_cuda_graph_launch(void *exec, char *err, size_t errlen);
void tr_cuda_graph_free(void *exec);
/* the timed part of the peak measurement: C = A B on the bf16 operands left in scratch slots 0, 1 */
void tr_cuda_gemm_bf16_raw(int m, int n, int k, float *C);

#ifdef __cplusplus
}
#endif
#endif
