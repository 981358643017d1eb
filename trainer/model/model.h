/* model.h - the moe-train model: a decoder-only byte-level transformer with DeepSeek-V3-style MoE FFNs,
 * running on a backend (backend.h: the CPU fp32 reference, or CUDA), expert-parallel over comm.h.
 *
 * Model: token embedding x 4 (table tied with the output head) -> n_layers x [RMSNorm -> causal MHA with RoPE ->
 * residual -> RMSNorm -> FFN -> residual] -> RMSNorm -> logits -> cross-entropy.  The first n_dense_layers
 * FFNs are dense SwiGLU (d_ff); the rest are MoE: 1 shared SwiGLU expert (d_ff) + n_experts routed
 * SwiGLU experts (d_expert), sigmoid router, per-expert bias used only for selection, group-limited
 * top-k, gates from the unbiased scores normalised over the chosen k times route_scale, dropless.
 *
 * Parameters and gradients are flat arrays in two segments so the driver can all-reduce, clip, run AdamW
 * and checkpoint them generically:
 *   TR_SEG_REPLICATED  identical on every rank (embedding, attention, norms, dense and shared FFNs,
 *                      router weights);
 *   TR_SEG_EXPERT      this rank's routed experts, expert-major: [local expert j][MoE layer l][w1 | w3 | w2]
 *                      (w1, w3: d_expert x d_model, w2: d_model x d_expert).  Experts are contiguous blocks
 *                      per EP rank (rank r owns [r*E/ep, (r+1)*E/ep)), so concatenating the expert segments
 *                      of EP ranks 0..ep-1 gives exactly the EP=1 segment.
 * Initialisation depends only on the seed (expert e from a stream derived from (seed, e)), so EP=1 and
 * EP=N start from the same model.  The router bias is state, not a parameter (no gradient).
 *
 * One training step (every call below marked "collective" must be made by all ranks of the world):
 *   tr_model_step(m, tokens, B, T, &loss)   forward + backward on this rank's B sequences  (collective)
 *   tr_model_reduce_grads(m)                 grads -> mean over the global batch            (collective)
 *   [driver: clip (tr_model_grad_norm), AdamW on both segments]
 *   tr_model_update_bias(m)                  aux-loss-free balancing, global loads          (collective)
 * The element type is tr_real: float in every build except the gradient-check test (double).
 */
#ifndef TR_MODEL_H
#define TR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifndef TR_REAL
#define TR_REAL float
#endif
typedef TR_REAL tr_real;

#ifdef __cplusplus
extern "C" {
#endif

struct tr_comm;
struct tr_model;
struct tr_backend;

struct tr_config {
	int vocab;          /* 256: bytes */
	int seq_len;        /* max T (RoPE table, activation sizing) */
	int d_model, n_heads, n_layers;
	int n_dense_layers; /* leading layers with a dense FFN; n_dense_layers == n_layers: no MoE */
	int d_ff;           /* hidden size of the dense FFNs and of the shared expert */
	int d_expert;       /* hidden size of a routed expert */
	int n_experts;      /* routed experts E (global) */
	int top_k;          /* experts per token */
	int n_groups;       /* routing groups G: 0 = one per distinct NVLink domain of the EP group (tr_par.domain);
			       > 0 = force G contiguous groups of E/G experts (tests, single process) */
	int topk_groups;    /* M: groups a token may reach; 0 or >= G: no group limit */
	float route_scale;  /* gate multiplier (DeepSeek-V3: 2.5) */
	float bias_gamma;   /* aux-loss-free bias update speed; default 0.02 (DeepSeek-V3: 0.001 over ~10^5 steps;
			       runs of 10^2..10^3 steps need faster, too fast makes all tokens swing together) */
	float rope_theta;   /* 10000 */
	float init_std;     /* default 0.1; output projections use init_std / sqrt(2 * n_layers).  Keep it near
			       1/sqrt(d_model) at learning rates ~1e-2: much smaller weights change by half their size
			       per AdamW step and the router input collapses (see EMB_SCALE in model.c) */
};
/* A small default model (d_model 128, 4 heads, 4 layers, 1 dense, 8 experts top-2, init_std 0.1,
 * bias_gamma 0.02). */
void tr_config_default(struct tr_config *c);
/* 0 when consistent; else -1 and one line naming the bad field and what it must be. */
int tr_config_check(const struct tr_config *c, char *err, size_t errlen);

/* How the ranks are arranged.  The driver creates world with tr_comm_init and splits
 * ep (color = MOE_EP_GROUP, key = MOE_EP_RANK) and dp (color = MOE_EP_RANK, key = MOE_DP_RANK).
 * With one process all three are the same size-1 communicator.  The model does not free them. */
struct tr_par {
	struct tr_comm *world, *ep, *dp;
	int domain;         /* MOE_DOMAIN of this rank (NVLink domain index); -1 = unknown (all the same) */
	const struct tr_backend *be; /* where tensors live and ops run (initialised); NULL = the CPU reference */
};

/* A stable id for an NVLink domain name (MOE_DOMAIN is a name, e.g. "rack07"), for tr_par.domain:
 * equal names give equal ids on every rank; NULL or "" gives -1. */
int tr_domain_id(const char *name);

/* Collective over par->ep (allgathers the domains).  n_experts must be a multiple of the EP size. */
int tr_model_create(const struct tr_config *cfg, const struct tr_par *par, uint64_t seed,
		    struct tr_model **out, char *err, size_t errlen);
/* How device buffers move between ranks (devcomm.h): "staged" or NULL (through host memory and comm.h,
 * the default), "cuda-ipc" (the EP all-to-alls, and the all-reduces of communicators on one node) or
 * "nccl" (all of them).  Collective over world, ep and dp; needs a backend with device memory.  0, or -1
 * with one line in err (the same on every rank). */
int tr_model_set_device_comm(struct tr_model *m, const char *kind, char *err, size_t errlen);
const char *tr_model_device_comm(const struct tr_model *m); /* "staged", "cuda-ipc", "nccl" */
void tr_model_free(struct tr_model *m);
const struct tr_config *tr_model_config(const struct tr_model *m);
/* One line describing the last failure (a communication error, a bad batch shape). */
const char *tr_model_error(const struct tr_model *m);

enum tr_seg { TR_SEG_REPLICATED = 0, TR_SEG_EXPERT = 1 };
size_t tr_model_nparams(const struct tr_model *m, enum tr_seg s); /* elements in this rank's segment */
/* The segments in the backend's memory (device memory for cuda: move them with its upload/download). */
tr_real *tr_model_params(struct tr_model *m, enum tr_seg s);
tr_real *tr_model_grads(struct tr_model *m, enum tr_seg s);
const struct tr_backend *tr_model_backend(const struct tr_model *m);
/* Model FLOPs per trained token at sequence length T (forward + backward = 3 x forward; every matrix
 * product a token goes through: attention projections, scores and values over all T positions (the
 * causal mask not discounted), dense or shared + router + top_k routed FFNs, output head). */
double tr_model_flops_per_token(const struct tr_model *m, int T);
/* Routed experts held here: global ids [*first, *first + *count); one expert's elements (all layers). */
void tr_model_local_experts(const struct tr_model *m, int *first, int *count, size_t *expert_elems);
/* The RMSNorm gains (the parameters that usually take no weight decay): offsets of their ranges in the
 * replicated segment, each d_model long; fills at most max entries, returns how many there are
 * (2 * n_layers + 1).  Everything else, in both segments, is a weight matrix. */
size_t tr_model_norm_gains(const struct tr_model *m, size_t *off, size_t max);
/* Parameters of the whole model (replicated + all E experts), for the banner. */
size_t tr_model_nparams_global(const struct tr_model *m);

/* Forward + backward on this rank's batch: tokens holds B rows of T+1 tokens (inputs are the first T,
 * targets the last T of each row), T <= seq_len, each < vocab.  Grads are OVERWRITTEN with the gradient
 * of this rank's mean loss over its B*T targets; *loss is that local mean (the driver averages over
 * ranks for the global loss).  Every rank must use the same B*T so tr_model_reduce_grads yields the
 * gradient of the global mean.  Collective over ep (expert all-to-all).  0, or -1 (tr_model_error). */
int tr_model_step(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss);
/* Forward only (evaluation); grads untouched, routing loads not counted.  Collective over ep. */
int tr_model_eval(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss);

/* Graph mode (moe-train --cuda-graph), EP size 1 only.  mode 1: the step's ops keep the routing counts,
 * the loss and the loads in backend memory (the routed experts through the device-count grouped GEMM,
 * R = B*T*top_k rows), so the step has no host round trip; its tokens and the router bias go to the
 * backend before it, the loss and the loads come back once after it.  mode 2: the same, and
 * tr_model_step captures the step as a graph at the second step of a batch shape and replays it from
 * then on (backends with graph capture: cuda).  mode 0: the default path.  0, or -1 with one line in
 * err (EP size > 1, a backend that cannot capture). */
int tr_model_set_graph(struct tr_model *m, int mode, char *err, size_t errlen);

/* Replicated grads: sum over world / world size; expert grads: sum over dp / world size.  Afterwards
 * both segments hold the gradient of the mean loss over the global batch.  Collective. */
int tr_model_reduce_grads(struct tr_model *m);
/* Global L2 norm of the (reduced) gradient: replicated part once, expert parts summed over the EP group.
 * Collective over ep; the same value on every rank. */
int tr_model_grad_norm(struct tr_model *m, double *norm);

/* Aux-loss-free balancing after a step: per-layer expert loads of the last tr_model_step summed over
 * the world, then bias_e += bias_gamma * sign(mean_load - load_e).  Also fills the stats.  Collective. */
int tr_model_update_bias(struct tr_model *m);
/* The router bias, [n_moe_layers][n_experts], identical on every rank (for checkpoints); *n elements.
 * Host memory on every backend (the model copies it to the backend at each forward). */
tr_real *tr_model_router_bias(struct tr_model *m, size_t *n);

struct tr_moe_stats {
	int n_moe_layers, n_experts;
	const double *load;     /* [n_moe_layers][n_experts]: tokens routed to each expert in the last step,
				   summed over the world (valid after tr_model_update_bias) */
	double max_over_mean;   /* max over layers of max_e load / mean load (1 = perfectly balanced) */
	double tokens_routed;   /* token-expert assignments in the last step, world total, all MoE layers */
	uint64_t rows_sent;     /* token rows this rank sent to other EP ranks since create (dispatch+combine, fwd+bwd) */
	/* this rank's MoE all-to-alls since create: wall seconds inside them (counts and rows, waiting for
	 * peers included), and the row bytes it handed them for other EP ranks inside its NVLink domain
	 * (tr_par.domain) and for ranks in other domains: the two add up to tr_comm_alltoall_bytes of ep */
	double a2a_seconds;
	uint64_t a2a_domain_bytes, a2a_xdomain_bytes;
};
void tr_model_stats(const struct tr_model *m, struct tr_moe_stats *st);

#ifdef __cplusplus
}
#endif
#endif
