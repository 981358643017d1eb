/* model_impl.h - the model's private state, shared by model.c (transformer, parameters, step), model_ffn.c
 * (SwiGLU FFN used by dense layers, the shared expert and every routed expert) and moe.c (MoE layer and its
 * expert-parallel exchange).  Not for the driver: it uses model.h only. */
#ifndef TR_MODEL_IMPL_H
#define TR_MODEL_IMPL_H

#include "model.h"

/* views of one layer's tensors inside a segment (parameters or their gradients) */
struct tr_layer_w {
	tr_real *ln1, *wqkv, *wo, *ln2;
	tr_real *w1, *w3, *w2;  /* dense FFN, or the shared expert of a MoE layer (d_ff) */
	tr_real *wr;            /* router [E][D]; NULL in dense layers */
};

/* activations of one MoE layer kept for its backward (N = B*T tokens, k = top_k) */
struct tr_moe_act {
	tr_real *scores, *gates;    /* [N][E] sigmoid scores, [N][k] gates */
	int *idx, *pos, *src_tok;   /* [N][k] chosen experts; position of (t, s) in send order; token of each */
	int *send_cnt;              /* [E] rows sent to each global expert (send order is expert order) */
	int *recv_cnt;              /* [ep][E_local] rows received from each source for each local expert */
	int R, capR;                /* rows received (this layer), allocated capacity */
	int *em_src, *em_inv;       /* [R] expert-major row -> received row, and back */
	tr_real *xe, *h1e, *h3e, *ge; /* [R][D], [R][De] x3: expert inputs and hidden, expert-major */
	tr_real *back;              /* [N*k][D] expert outputs returned to this rank, send order */
	tr_real *sh_h1, *sh_h3, *sh_g; /* shared expert hidden [N][F] */
};

struct tr_layer_act {
	tr_real *ln1, *rstd1, *qkv, *att, *atty, *mid, *ln2, *rstd2;
	tr_real *h1, *h3, *g;       /* dense FFN hidden [N][F] */
	struct tr_moe_act *moe;     /* MoE layers */
};

struct tr_model {
	struct tr_config cfg;
	struct tr_par par;
	int world_size, ep_size, ep_rank, n_local, first_expert, n_moe;
	int G;                      /* routing groups */
	int *group_of;              /* [E] */
	size_t n_seg[2], expert_elems, moe_expert_elems; /* per expert: all layers; one layer */
	tr_real *params[2], *grads[2];
	tr_real *wte, *lnf, *dwte, *dlnf;
	struct tr_layer_w *lw, *lg; /* [n_layers] params, grads */
	tr_real *bias;              /* [n_moe][E] */
	double *load_local, *load_global; /* [n_moe][E] */
	struct tr_moe_stats stats;
	tr_real *rope_cs;
	/* activations, sized for (B, T) of the last call */
	int B, T;
	uint16_t *inputs, *targets;
	tr_real **resid;            /* [n_layers + 1][N][D] */
	struct tr_layer_act *act;
	tr_real *lnf_out, *rstdf, *logits, *losses, *tmp;
	/* backward scratch */
	tr_real *dresid, *dln, *dqkv, *datty, *dlnf_out, *dffn;
	tr_real *scratch;           /* grows: MoE exchange and FFN backward buffers */
	size_t scratch_n;
	uint64_t rows_sent;
	char err[256];
};

/* a scratch area of at least n elements (reallocated, contents lost); NULL on allocation failure */
tr_real *tr_model_scratch(struct tr_model *m, size_t n);
int tr_model_fail(struct tr_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tr_allreduce_real(struct tr_comm *c, tr_real *buf, size_t n);

/* model_ffn.c: y = (silu(x W1^T) * (x W3^T)) W2^T, hidden h1, h3, g [N][F] saved */
void tr_ffn_forward(tr_real *y, tr_real *h1, tr_real *h3, tr_real *g, const tr_real *x,
		    const tr_real *w1, const tr_real *w3, const tr_real *w2, int N, int D, int F);
/* dx += ..., dw1/dw3/dw2 += ...; scratch holds 3*N*F elements */
void tr_ffn_backward(tr_real *dx, tr_real *dw1, tr_real *dw3, tr_real *dw2, const tr_real *dy,
		     const tr_real *x, const tr_real *h1, const tr_real *h3, const tr_real *g,
		     const tr_real *w1, const tr_real *w3, const tr_real *w2, int N, int D, int F, tr_real *scratch);

/* moe.c: l is the MoE layer index (0..n_moe-1), layer the transformer layer */
struct tr_moe_act *tr_moe_act_new(const struct tr_model *m, int N);
void tr_moe_act_free(struct tr_moe_act *a);
/* y (=) = shared(x) + sum_k gate * expert(x); count: add this step's routing to load_local */
int tr_moe_forward(struct tr_model *m, int l, int layer, tr_real *y, const tr_real *x, int N, int count);
/* dx += d/dx; grads of the shared expert, the router and the local experts += */
int tr_moe_backward(struct tr_model *m, int l, int layer, tr_real *dx, const tr_real *dy, const tr_real *x, int N);

#endif
