/* ops.h - the model's operations, each with its forward and backward in one file (op_NAME.c), the CPU
 * reference in tr_real (fp32) with OpenMP.  The model reaches them through struct tr_backend
 * (backend.h: tr_backend_cpu binds these); the CUDA backend mirrors them op by op.
 *
 * Conventions: row-major; a weight W of a linear layer is [out][in] (y = x W^T); backward functions
 * ACCUMULATE (+=) into every gradient they produce unless said otherwise, so a tensor used twice
 * collects both contributions.  Every float sum has a fixed order: OpenMP splits only independent
 * rows/columns, never a sum, so results do not depend on the thread count or on where an expert lives.
 */
#ifndef TR_OPS_H
#define TR_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "model.h"

/* embedding (op_embedding.c): out[n] = wte[tok[n]] */
void tr_embedding_forward(tr_real *out, const uint16_t *tok, const tr_real *wte, int N, int D);
void tr_embedding_backward(tr_real *dwte, const tr_real *dout, const uint16_t *tok, int N, int D);

/* matmul (op_matmul.c): out[N][OC] = inp[N][C] w[OC][C]^T */
void tr_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, int N, int C, int OC);
/* dinp (may be NULL) += dout w;  dw += dout^T inp */
void tr_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
			const tr_real *w, int N, int C, int OC);

/* rmsnorm (op_rmsnorm.c): out = inp / rms(inp) * weight; rstd[n] saved for the backward */
void tr_rmsnorm_forward(tr_real *out, tr_real *rstd, const tr_real *inp, const tr_real *weight, int N, int D);
void tr_rmsnorm_backward(tr_real *dinp, tr_real *dweight, const tr_real *dout, const tr_real *inp,
			 const tr_real *weight, const tr_real *rstd, int N, int D);

/* rope (op_rope.c): rotates pairs (2i, 2i+1) of each head by pos * theta^(-2i/hd), in place, on
 * nh heads of hd values starting at x[row * stride]; rows are B sequences of T positions.
 * cs holds the table [T][hd/2][cos, sin] from tr_rope_table. The backward rotates the gradient back. */
void tr_rope_table(tr_real *cs, int T, int hd, float theta);
void tr_rope_forward(tr_real *x, const tr_real *cs, int B, int T, int stride, int nh, int hd);
void tr_rope_backward(tr_real *dx, const tr_real *cs, int B, int T, int stride, int nh, int hd);

/* causal multi-head attention (op_attention.c): qkv [B][T][3C] (q | k | v, head h at h*hd),
 * out [B][T][C], att [B][NH][T][T] softmax probabilities saved for the backward. */
void tr_attention_forward(tr_real *out, tr_real *att, const tr_real *qkv, int B, int T, int C, int NH);
void tr_attention_backward(tr_real *dqkv, const tr_real *dout, const tr_real *qkv, const tr_real *att,
			   int B, int T, int C, int NH);

/* swiglu (op_swiglu.c): out = silu(h1) * h3 elementwise over n values; backward writes (=) dh1, dh3 */
void tr_swiglu_forward(tr_real *out, const tr_real *h1, const tr_real *h3, size_t n);
void tr_swiglu_backward(tr_real *dh1, tr_real *dh3, const tr_real *dout, const tr_real *h1,
			const tr_real *h3, size_t n);

/* router (op_router.c): scores = sigmoid(logits) [N][E]; selection on scores + bias: with
 * topk_groups M in (0, G), keep the M groups with the largest sum of their top-2 biased scores
 * (group_of[e] in [0, G)), then the top k experts inside them.  idx [N][k] in descending biased score
 * (ties: lower expert id), gates [N][k] = route_scale * s_i / sum of the k chosen s (unbiased). */
void tr_router_forward(tr_real *scores, int *idx, tr_real *gates, const tr_real *logits, const tr_real *bias,
		       const int *group_of, int G, int topk_groups, int N, int E, int k, float route_scale);
/* dlogits (=, zero where not chosen) from dgates through the gate normalisation and the sigmoid */
void tr_router_backward(tr_real *dlogits, const tr_real *dgates, const tr_real *scores, const int *idx,
			int N, int E, int k, float route_scale);

/* permute / unpermute (op_permute.c) of token rows around the expert exchange.
 * gather: out[p] = in[src[p]] for p < n (rows of D).  Its backward, as a per-token sum over the
 * inverse map pos[t][s] (no scatter races): din[t] += sum_s dout[pos[t*k+s]]. */
void tr_permute_forward(tr_real *out, const tr_real *in, const int *src, int n, int D);
void tr_permute_backward(tr_real *din, const tr_real *dout, const int *pos, int N, int k, int D);
/* scatter: out[dst[p]] = in[p] for p < n (rows of D; dst one-to-one) */
void tr_permute_scatter(tr_real *out, const tr_real *in, const int *dst, int n, int D);
/* combine: y[t] += sum_s gates[t][s] * rows[pos[t][s]] */
void tr_unpermute_forward(tr_real *y, const tr_real *rows, const int *pos, const tr_real *gates, int N, int k, int D);
/* drows[pos[t][s]] = gates[t][s] * dy[t] (=);  dgates[t][s] = <dy[t], rows[pos[t][s]]> (=) */
void tr_unpermute_backward(tr_real *drows, tr_real *dgates, const tr_real *dy, const tr_real *rows,
			   const int *pos, const tr_real *gates, int N, int k, int D);

/* cross-entropy (op_crossentropy.c): probs = softmax(logits) (may alias logits), losses[n] = -log p[target];
 * backward: dlogits (=) = (probs - onehot(target)) * dloss  (dloss per row, the same for all rows) */
void tr_crossentropy_forward(tr_real *losses, tr_real *probs, const tr_real *logits, const uint16_t *targets,
			     int N, int V);
void tr_crossentropy_backward(tr_real *dlogits, const tr_real *probs, const uint16_t *targets, tr_real dloss,
			      int N, int V);

/* routing bookkeeping (op_experts.c): stable counting sort of the Nk = N*k (token, slot) pairs idx by
 * expert: send_cnt_host[E] pairs per expert, pos[i] the place of pair i in expert order, src_tok[p] the
 * token of the pair at place p */
void tr_route_plan(int *send_cnt_host, int *pos, int *src_tok, const int *idx, int Nk, int k, int E);
/* the routed experts' linear layers (op_experts.c): El experts over consecutive row blocks (rows_host[j]
 * rows each), expert j's weight w + j * wstride ([OC][C]); as tr_matmul_forward / _backward per block */
void tr_expert_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride,
			      const int *rows_host, int El, int C, int OC);
void tr_expert_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
			       const tr_real *w, size_t wstride, const int *rows_host, int El, int C, int OC);

/* elementwise and sums (op_elementwise.c): y = a + b; y *= f; sums in double over fixed blocks of 8192
 * combined in order (the same value for any thread count) */
void tr_add(tr_real *y, const tr_real *a, const tr_real *b, size_t n);
void tr_scale(tr_real *y, tr_real f, size_t n);
double tr_sum(const tr_real *x, size_t n);
double tr_sumsq(const tr_real *x, size_t n);

/* AdamW (op_adamw.c): one update of n parameters at 1-based optimizer step t; g scaled by gscale first
 * (the clipping factor); m, v the moments (fp32 whatever tr_real is).  The rule is in optim.h. */
struct tr_adamw;
void tr_adamw_update(const struct tr_adamw *h, double lr, long t, float gscale, tr_real *p, const tr_real *g,
		     float *m, float *v, size_t n);

#endif
