/* model_impl.h - the model's private state, shared by model.c (transformer, parameters, step), model_ffn.c
 * (SwiGLU FFN used by dense layers, the shared expert and every routed expert) and moe.c (MoE layer and its
 * expert-parallel exchange).  Not for the driver: it uses model.h only. */
#ifndef TR_MODEL_IMPL_H
#define TR_MODEL_IMPL_H

#include "backend.h"
#include "model.h"

/* views of one layer's tensors inside a segment (parameters or their gradients) */
struct tr_layer_w {
	tr_real *ln1, *wqkv, *wo, *ln2;
	tr_real *w1, *w3, *w2;  /* dense FFN, or the shared expert of a MoE layer (d_ff) */
	tr_real *wr;            /* router [E][D]; NULL in dense layers */
};

/* activations of one MoE layer kept for its backward (N = B*T tokens, k = top_k).  Backend memory,
 * except the _host arrays (counts the exchange needs, and the maps built from them). */
struct tr_moe_act {
	tr_real *scores, *gates;    /* [N][E] sigmoid scores, [N][k] gates */
	int *idx, *pos, *src_tok;   /* [N][k] chosen experts; position of (t, s) in send order; token of each */
	int *send_cnt;              /* host [E] rows sent to each global expert (send order is expert order) */
	int *recv_cnt;              /* host [ep][E_local] rows received from each source for each local expert */
	int *rows;                  /* host [E_local] rows of each local expert (all sources) */
	int R, capR;                /* rows received (this layer), allocated capacity */
	int *em_src, *em_inv;       /* [R] expert-major row -> received row, and back */
	int *em_host;               /* host [2][capR] staging of em_src | em_inv */
	tr_real *xe, *h1e, *h3e, *ge; /* [R][D], [R][De] x3: expert inputs and hidden, expert-major */
	tr_real *yrow;              /* [R][D] expert outputs (before the gate), received-row order */
	tr_real *grecv;             /* [R] the gate of each received row (it came with the row) */
	int *ident;                 /* [capR] 0, 1, ...: the per-row ops as k = 1 over rows in order */
	tr_real *sh_h1, *sh_h3, *sh_g; /* shared expert hidden [N][F] */
	const struct tr_backend *be;   /* where the above live */
};

struct tr_layer_act {
	tr_real *ln1, *rstd1, *qkv, *att, *atty, *mid, *ln2, *rstd2;
	tr_real *h1, *h3, *g;       /* dense FFN hidden [N][F] */
	struct tr_moe_act *moe;     /* MoE layers */
};

/* Every tensor below lives in the backend's memory (be), except what is marked host. */
struct tr_model {
	struct tr_config cfg;
	struct tr_par par;
	const struct tr_backend *be;
	int world_size, ep_size, ep_rank, n_local, first_expert, n_moe;
	int G;                      /* routing groups */
	int *group_of;              /* [E] */
	size_t n_seg[2], expert_elems, moe_expert_elems; /* per expert: all layers; one layer */
	tr_real *params[2], *grads[2];
	tr_real *wte, *lnf, *dwte, *dlnf;
	struct tr_layer_w *lw, *lg; /* [n_layers] params, grads */
	tr_real *bias;              /* host [n_moe][E] (the driver's copy: checkpoints, skew) */
	tr_real *dbias;             /* its backend copy, refreshed at every forward */
	int *dgroup_of;             /* backend copy of group_of (host) */
	double *load_local, *load_global; /* host [n_moe][E] */
	struct tr_moe_stats stats;
	tr_real *rope_cs;
	/* activations, sized for (B, T) of the last call */
	int B, T;
	uint16_t *inputs, *targets;
	uint16_t *tok_host;         /* host [2][N]: inputs | targets before the upload */
	tr_real **resid;            /* [n_layers + 1][N][D] */
	struct tr_layer_act *act;
	tr_real *lnf_out, *rstdf, *logits, *losses, *tmp;
	/* backward scratch */
	tr_real *dresid, *dln, *dqkv, *datty, *dlnf_out, *dffn;
	tr_real *scratch;           /* grows: MoE exchange and FFN backward buffers */
	size_t scratch_n;
	void *stage;                /* host (pinned), grows: all-to-all and all-reduce staging of a device backend */
	size_t stage_n;
	uint64_t rows_sent;
	int *ep_dom;                /* host [ep_size]: MOE_DOMAIN id of each EP rank (tr_par.domain) */
	int graph;                  /* tr_model_set_graph: 0 off, 1 counts stay on the backend, 2 and captured */
	int *dcnt;                  /* graph mode: [n_moe][E] rows per expert of the last step (backend) */
	int *cnt_host;              /* graph mode: host copy of dcnt, read once per step */
	double *gsum;               /* graph mode: [TR_SUM_DOUBLES(N)] the step's loss sum (backend) */
	void *gexec;                /* graph mode 2: the captured step (backend graph_end) */
	int gsteps;                 /* graph-mode steps since the activations were (re)allocated */
	double a2a_s;               /* seconds in the MoE all-to-alls (counts and rows) since create */
	uint64_t a2a_dom_bytes, a2a_xdom_bytes; /* row bytes to other EP ranks of this rank's / other domains */
	/* device communicators (devcomm.h, tr_model_set_device_comm), NULL = staged; world/dp may be ep */
	struct tr_devcomm *dc_ep, *dc_world, *dc_dp;
	char dc_err[600];           /* the last device exchange's failure */
	char err[256];
};

/* a scratch area of at least n elements (reallocated, contents lost); NULL on allocation failure */
tr_real *tr_model_scratch(struct tr_model *m, size_t n);
/* host staging of at least bytes (contents lost); NULL on allocation failure */
void *tr_model_stage(struct tr_model *m, size_t bytes);
int tr_model_fail(struct tr_model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tr_allreduce_real(struct tr_comm *c, tr_real *buf, size_t n);
/* before a device collective: the backend's queued work done; 0, or -1 with m->dc_err set */
int tr_model_dev_ready(struct tr_model *m);

/* model_ffn.c: y = (silu(x W1^T) * (x W3^T)) W2^T for El FFNs over consecutive row blocks (rows[j] rows
 * each, host array; one FFN: El = 1), FFN j's weights at w1/w3/w2 + j * wstride; hidden h1, h3, g [R][F]
 * saved (R = sum of rows) */
void tr_ffn_forward(const struct tr_backend *be, tr_real *y, tr_real *h1, tr_real *h3, tr_real *g,
		    const tr_real *x, const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride,
		    const int *rows, int El, int D, int F);
/* dx += ..., dw1/dw3/dw2 (+ j * wstride) += ...; scratch holds 3*R*F elements */
void tr_ffn_backward(const struct tr_backend *be, tr_real *dx, tr_real *dw1, tr_real *dw3, tr_real *dw2,
		     const tr_real *dy, const tr_real *x, const tr_real *h1, const tr_real *h3, const tr_real *g,
		     const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride, const int *rows, int El,
		     int D, int F, tr_real *scratch);

/* The same in graph mode: rows_dev[El] in backend memory (the device-count grouped GEMM), R rows in
 * all; rows_dev NULL: one FFN (El = 1) over R rows through the plain linear layer (matmul_*). */
void tr_ffn_forward_dev(const struct tr_backend *be, tr_real *y, tr_real *h1, tr_real *h3, tr_real *g,
			const tr_real *x, const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride,
			const int *rows_dev, int El, int R, int D, int F);
void tr_ffn_backward_dev(const struct tr_backend *be, tr_real *dx, tr_real *dw1, tr_real *dw3, tr_real *dw2,
			 const tr_real *dy, const tr_real *x, const tr_real *h1, const tr_real *h3, const tr_real *g,
			 const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride, const int *rows_dev,
			 int El, int R, int D, int F, tr_real *scratch);

/* moe.c: l is the MoE layer index (0..n_moe-1), layer the transformer layer */
struct tr_moe_act *tr_moe_act_new(const struct tr_model *m, int N);
void tr_moe_act_free(struct tr_moe_act *a);
/* y (=) = shared(x) + sum_k gate * expert(x); count: add this step's routing to load_local */
int tr_moe_forward(struct tr_model *m, int l, int layer, tr_real *y, const tr_real *x, int N, int count);
/* dx += d/dx; grads of the shared expert, the router and the local experts += */
int tr_moe_backward(struct tr_model *m, int l, int layer, tr_real *dx, const tr_real *dy, const tr_real *x, int N);
/* room for R expert rows in a (moe.c); 0, or -1 when out of memory */
int tr_moe_grow_rows(struct tr_moe_act *a, int R, int D, int De);
/* moe_graph.c: the same layer in graph mode (EP size 1, counts on the backend, no host round trip) */
int tr_moe_forward_graph(struct tr_model *m, int l, int layer, tr_real *y, const tr_real *x, int N);
int tr_moe_backward_graph(struct tr_model *m, int l, int layer, tr_real *dx, const tr_real *dy, const tr_real *x,
			  int N);

#endif
