/* model.c - the transformer around the ops: configuration, parameter layout and initialisation,
 * forward + backward of one step, gradient reduction over the ranks, aux-loss-free bias update. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "model_impl.h"
#include "ops.h"

void tr_config_default(struct tr_config *c)
{
	*c = (struct tr_config){ .vocab = 256, .seq_len = 128, .d_model = 128, .n_heads = 4, .n_layers = 4,
				 .n_dense_layers = 1, .d_ff = 256, .d_expert = 64, .n_experts = 8, .top_k = 2,
				 .n_groups = 0, .topk_groups = 0, .route_scale = 1.0f, .bias_gamma = 0.02f,
				 .rope_theta = 10000.0f, .init_std = 0.1f };
}

int tr_config_check(const struct tr_config *c, char *err, size_t errlen)
{
#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
	if (c->vocab < 2 || c->vocab > 65536)
		BAD("vocab %d: must be 2..65536", c->vocab);
	if (c->seq_len < 1)
		BAD("seq_len %d: must be >= 1", c->seq_len);
	if (c->d_model < 2 || c->n_heads < 1 || c->d_model % c->n_heads || (c->d_model / c->n_heads) % 2)
		BAD("d_model %d / n_heads %d: d_model must split into heads of an even size (RoPE pairs)",
		    c->d_model, c->n_heads);
	if (c->n_layers < 1 || c->n_dense_layers < 0 || c->n_dense_layers > c->n_layers)
		BAD("n_layers %d, n_dense_layers %d: need n_layers >= 1 and 0 <= n_dense_layers <= n_layers",
		    c->n_layers, c->n_dense_layers);
	if (c->d_ff < 1)
		BAD("d_ff %d: must be >= 1", c->d_ff);
	if (!(c->init_std > 0) || !(c->rope_theta > 0) || !(c->route_scale > 0) || !(c->bias_gamma >= 0))
		BAD("init_std, rope_theta, route_scale must be > 0 and bias_gamma >= 0");
	if (c->n_dense_layers == c->n_layers)
		return 0;
	if (c->n_experts < 1 || c->d_expert < 1)
		BAD("n_experts %d, d_expert %d: MoE layers need both >= 1", c->n_experts, c->d_expert);
	if (c->top_k < 1 || c->top_k > c->n_experts)
		BAD("top_k %d: must be 1..n_experts (%d)", c->top_k, c->n_experts);
	if (c->n_groups < 0 || (c->n_groups > 0 && c->n_experts % c->n_groups))
		BAD("n_groups %d: must be 0 (one per NVLink domain) or divide n_experts (%d)", c->n_groups,
		    c->n_experts);
	if (c->topk_groups < 0)
		BAD("topk_groups %d: must be >= 0 (0 = no group limit)", c->topk_groups);
	if (c->n_groups > 0 && c->topk_groups > 0 && c->topk_groups < c->n_groups &&
	    c->topk_groups * (c->n_experts / c->n_groups) < c->top_k)
		BAD("topk_groups %d x %d experts per group < top_k %d: tokens could not reach k experts",
		    c->topk_groups, c->n_experts / c->n_groups, c->top_k);
	return 0;
#undef BAD
}

int tr_domain_id(const char *name)
{
	if (!name || !*name)
		return -1;
	uint32_t h = 2166136261u; /* FNV-1a, folded to a non-negative int */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return (int)(h & 0x7fffffff);
}

int tr_model_fail(struct tr_model *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
	return -1;
}

int tr_allreduce_real(struct tr_comm *c, tr_real *buf, size_t n)
{
	if (sizeof(tr_real) == sizeof(double))
		return tr_allreduce_f64(c, (double *)(void *)buf, n);
	return tr_allreduce_f32(c, (float *)(void *)buf, n);
}

tr_real *tr_model_scratch(struct tr_model *m, size_t n)
{
	if (n > m->scratch_n) {
		free(m->scratch);
		m->scratch = malloc(sizeof(tr_real) * n);
		m->scratch_n = m->scratch ? n : 0;
	}
	return m->scratch;
}

/* ---- deterministic initialisation: splitmix64 + Box-Muller */
static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void fill_normal(tr_real *p, size_t n, double std, uint64_t *s)
{
	for (size_t i = 0; i < n; i++) {
		double u1 = ((splitmix(s) >> 11) + 1.0) / 9007199254740993.0;
		double u2 = (splitmix(s) >> 11) / 9007199254740992.0;
		p[i] = (tr_real)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
	}
}

static void fill_const(tr_real *p, size_t n, tr_real v)
{
	for (size_t i = 0; i < n; i++)
		p[i] = v;
}

/* lays out the replicated segment (base NULL: just count) */
static size_t layout(const struct tr_config *c, tr_real *base, struct tr_layer_w *lw, tr_real **wte, tr_real **lnf)
{
	size_t D = c->d_model, F = c->d_ff, E = c->n_experts, o = 0;
#define TAKE(ptr, n) do { if (base) (ptr) = base + o; o += (n); } while (0)
	tr_real *dummy;
	TAKE(*(wte ? wte : &dummy), (size_t)c->vocab * D);
	for (int l = 0; l < c->n_layers; l++) {
		struct tr_layer_w tmp, *w = lw ? &lw[l] : &tmp;
		memset(w, 0, sizeof(*w));
		TAKE(w->ln1, D);
		TAKE(w->wqkv, 3 * D * D);
		TAKE(w->wo, D * D);
		TAKE(w->ln2, D);
		TAKE(w->w1, F * D);
		TAKE(w->w3, F * D);
		TAKE(w->w2, D * F);
		if (l >= c->n_dense_layers)
			TAKE(w->wr, E * D);
	}
	TAKE(*(lnf ? lnf : &dummy), D);
#undef TAKE
	return o;
}

static void init_params(struct tr_model *m, uint64_t seed)
{
	const struct tr_config *c = &m->cfg;
	size_t D = c->d_model, F = c->d_ff, De = c->d_expert;
	double std = c->init_std, ostd = c->init_std / sqrt(2.0 * c->n_layers);
	uint64_t s = seed;
	fill_normal(m->wte, (size_t)c->vocab * D, std, &s);
	for (int l = 0; l < c->n_layers; l++) {
		struct tr_layer_w *w = &m->lw[l];
		fill_const(w->ln1, D, 1);
		fill_normal(w->wqkv, 3 * D * D, std, &s);
		fill_normal(w->wo, D * D, ostd, &s);
		fill_const(w->ln2, D, 1);
		fill_normal(w->w1, F * D, std, &s);
		fill_normal(w->w3, F * D, std, &s);
		fill_normal(w->w2, D * F, ostd, &s);
		if (w->wr)
			fill_normal(w->wr, (size_t)c->n_experts * D, std, &s);
	}
	fill_const(m->lnf, D, 1);
	/* each expert from its own stream, so its weights do not depend on which rank holds it */
	for (int j = 0; j < m->n_local; j++) {
		uint64_t es = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(m->first_expert + j + 1));
		tr_real *p = m->params[TR_SEG_EXPERT] + (size_t)j * m->expert_elems;
		for (int l = 0; l < m->n_moe; l++, p += m->moe_expert_elems) {
			fill_normal(p, De * D, std, &es);
			fill_normal(p + De * D, De * D, std, &es);
			fill_normal(p + 2 * De * D, D * De, ostd, &es);
		}
	}
}

/* routing groups: forced contiguous groups, or one group per distinct domain of the EP group */
static int make_groups(struct tr_model *m, char *err, size_t errlen)
{
	const struct tr_config *c = &m->cfg;
	int E = c->n_experts, P = m->ep_size;
	if (c->n_groups > 0) {
		m->G = c->n_groups;
		for (int e = 0; e < E; e++)
			m->group_of[e] = e / (E / c->n_groups);
		return 0;
	}
	int dom[P], mine = m->par.domain;
	if (tr_allgather(m->par.ep, &mine, dom, sizeof(int))) {
		snprintf(err, errlen, "allgather of NVLink domains over the EP group: %s", tr_comm_error(m->par.ep));
		return -1;
	}
	/* group of EP rank r = index of its domain among the group's distinct domains, ascending */
	int gid[P];
	m->G = 0;
	for (int r = 0; r < P; r++) {
		int below = 0, first = 1;
		for (int q = 0; q < P; q++) {
			int dup = 0;
			for (int z = 0; z < q; z++)
				dup |= dom[z] == dom[q];
			if (!dup && dom[q] < dom[r])
				below++;
			if (q < r && dom[q] == dom[r])
				first = 0;
		}
		gid[r] = below;
		m->G += first;
	}
	for (int e = 0; e < E; e++)
		m->group_of[e] = gid[e / m->n_local];
	int M = c->topk_groups;
	if (M > 0 && M < m->G) {
		/* the M smallest groups must still hold k experts */
		int size[P], total = 0;
		memset(size, 0, sizeof(size));
		for (int e = 0; e < E; e++)
			size[m->group_of[e]]++;
		for (int i = 0; i < M; i++) {
			int best = -1;
			for (int q = 0; q < m->G; q++)
				if (size[q] >= 0 && (best < 0 || size[q] < size[best]))
					best = q;
			total += size[best];
			size[best] = -1;
		}
		if (total < c->top_k) {
			snprintf(err, errlen, "topk_groups %d: the %d smallest NVLink-domain groups hold %d experts "
				 "< top_k %d", M, M, total, c->top_k);
			return -1;
		}
	}
	return 0;
}

int tr_model_create(const struct tr_config *cfg, const struct tr_par *par, uint64_t seed,
		    struct tr_model **out, char *err, size_t errlen)
{
	*out = NULL;
	if (tr_config_check(cfg, err, errlen))
		return -1;
	if (!par || !par->world || !par->ep || !par->dp) {
		snprintf(err, errlen, "model needs world, ep and dp communicators (size-1 ones for one process)");
		return -1;
	}
	struct tr_model *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m->cfg = *cfg;
	m->par = *par;
	m->world_size = tr_comm_size(par->world);
	m->ep_size = tr_comm_size(par->ep);
	m->ep_rank = tr_comm_rank(par->ep);
	m->n_moe = cfg->n_layers - cfg->n_dense_layers;
	int E = m->n_moe ? cfg->n_experts : 0;
	if (m->n_moe && E % m->ep_size) {
		snprintf(err, errlen, "n_experts %d is not a multiple of the EP size %d", E, m->ep_size);
		free(m);
		return -1;
	}
	m->n_local = m->n_moe ? E / m->ep_size : 0;
	m->first_expert = m->ep_rank * m->n_local;
	m->moe_expert_elems = 3 * (size_t)cfg->d_expert * cfg->d_model;
	m->expert_elems = m->moe_expert_elems * m->n_moe;
	m->n_seg[TR_SEG_REPLICATED] = layout(cfg, NULL, NULL, NULL, NULL);
	m->n_seg[TR_SEG_EXPERT] = m->expert_elems * m->n_local;
	m->lw = calloc(cfg->n_layers, sizeof(*m->lw));
	m->lg = calloc(cfg->n_layers, sizeof(*m->lg));
	m->group_of = calloc(E ? E : 1, sizeof(int));
	m->bias = calloc((size_t)m->n_moe * E + 1, sizeof(tr_real));
	m->load_local = calloc((size_t)m->n_moe * E + 1, sizeof(double));
	m->load_global = calloc((size_t)m->n_moe * E + 1, sizeof(double));
	m->rope_cs = malloc(sizeof(tr_real) * (size_t)cfg->seq_len * (cfg->d_model / cfg->n_heads));
	int ok = m->lw && m->lg && m->group_of && m->bias && m->load_local && m->load_global && m->rope_cs;
	for (int s = 0; s < 2 && ok; s++) {
		m->params[s] = calloc(m->n_seg[s] + 1, sizeof(tr_real));
		m->grads[s] = calloc(m->n_seg[s] + 1, sizeof(tr_real));
		ok = m->params[s] && m->grads[s];
	}
	if (!ok) {
		snprintf(err, errlen, "out of memory for %zu parameters", m->n_seg[0] + m->n_seg[1]);
		tr_model_free(m);
		return -1;
	}
	layout(cfg, m->params[TR_SEG_REPLICATED], m->lw, &m->wte, &m->lnf);
	layout(cfg, m->grads[TR_SEG_REPLICATED], m->lg, &m->dwte, &m->dlnf);
	if (m->n_moe && make_groups(m, err, errlen)) {
		tr_model_free(m);
		return -1;
	}
	tr_rope_table(m->rope_cs, cfg->seq_len, cfg->d_model / cfg->n_heads, cfg->rope_theta);
	init_params(m, seed);
	m->stats.n_moe_layers = m->n_moe;
	m->stats.n_experts = E;
	m->stats.load = m->load_global;
	*out = m;
	return 0;
}

static void free_acts(struct tr_model *m)
{
	if (m->act)
		for (int l = 0; l < m->cfg.n_layers; l++) {
			struct tr_layer_act *a = &m->act[l];
			free(a->ln1), free(a->rstd1), free(a->qkv), free(a->att), free(a->atty), free(a->mid);
			free(a->ln2), free(a->rstd2), free(a->h1), free(a->h3), free(a->g);
			tr_moe_act_free(a->moe);
		}
	free(m->act);
	m->act = NULL;
	if (m->resid)
		for (int l = 0; l <= m->cfg.n_layers; l++)
			free(m->resid[l]);
	free(m->resid);
	m->resid = NULL;
	free(m->inputs), free(m->targets), free(m->lnf_out), free(m->rstdf), free(m->logits), free(m->losses);
	free(m->tmp), free(m->dresid), free(m->dln), free(m->dqkv), free(m->datty), free(m->dlnf_out), free(m->dffn);
	m->inputs = m->targets = NULL;
	m->lnf_out = m->rstdf = m->logits = m->losses = m->tmp = NULL;
	m->dresid = m->dln = m->dqkv = m->datty = m->dlnf_out = m->dffn = NULL;
	m->B = m->T = 0;
}

void tr_model_free(struct tr_model *m)
{
	if (!m)
		return;
	free_acts(m);
	for (int s = 0; s < 2; s++)
		free(m->params[s]), free(m->grads[s]);
	free(m->lw), free(m->lg), free(m->group_of), free(m->bias), free(m->load_local), free(m->load_global);
	free(m->rope_cs), free(m->scratch);
	free(m);
}

/* activations for B x T; kept while the shape repeats */
static int alloc_acts(struct tr_model *m, int B, int T)
{
	if (m->B == B && m->T == T)
		return 0;
	free_acts(m);
	const struct tr_config *c = &m->cfg;
	size_t N = (size_t)B * T, D = c->d_model, F = c->d_ff, V = c->vocab;
	int ok = 1;
#define ALLOC(p, n) do { (p) = malloc(sizeof(*(p)) * (n)); ok &= (p) != NULL; } while (0)
	m->act = calloc(c->n_layers, sizeof(*m->act));
	m->resid = calloc(c->n_layers + 1, sizeof(*m->resid));
	if (!m->act || !m->resid) {
		free_acts(m);
		return -1;
	}
	for (int l = 0; l <= c->n_layers; l++)
		ALLOC(m->resid[l], N * D);
	for (int l = 0; l < c->n_layers; l++) {
		struct tr_layer_act *a = &m->act[l];
		ALLOC(a->ln1, N * D);
		ALLOC(a->rstd1, N);
		ALLOC(a->qkv, N * 3 * D);
		ALLOC(a->att, (size_t)B * c->n_heads * T * T);
		ALLOC(a->atty, N * D);
		ALLOC(a->mid, N * D);
		ALLOC(a->ln2, N * D);
		ALLOC(a->rstd2, N);
		if (l < c->n_dense_layers) {
			ALLOC(a->h1, N * F);
			ALLOC(a->h3, N * F);
			ALLOC(a->g, N * F);
		} else {
			a->moe = tr_moe_act_new(m, (int)N);
			ok &= a->moe != NULL;
		}
	}
	ALLOC(m->inputs, N);
	ALLOC(m->targets, N);
	ALLOC(m->lnf_out, N * D);
	ALLOC(m->rstdf, N);
	ALLOC(m->logits, N * V);
	ALLOC(m->losses, N);
	ALLOC(m->tmp, N * D);
	ALLOC(m->dresid, N * D);
	ALLOC(m->dln, N * D);
	ALLOC(m->dqkv, N * 3 * D);
	ALLOC(m->datty, N * D);
	ALLOC(m->dlnf_out, N * D);
	ALLOC(m->dffn, 3 * N * F);
#undef ALLOC
	if (!ok) {
		free_acts(m);
		return -1;
	}
	m->B = B, m->T = T;
	return 0;
}

static void add(tr_real *y, const tr_real *a, const tr_real *b, size_t n)
{
#pragma omp parallel for
	for (size_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
}

static void scale(tr_real *y, tr_real f, size_t n)
{
#pragma omp parallel for if (n > 65536)
	for (size_t i = 0; i < n; i++)
		y[i] *= f;
}

/* The token embedding enters the residual stream times 4 (the tied output head uses the table as is).
 * AdamW moves a table row by about lr per step, while a branch output (attention, FFN) moves by up to
 * lr x fan-in; unscaled, the embedding is soon swamped by what the first steps grow in the branches: a
 * vector common to all tokens (the unigram prediction).  The router then sees nearly the same input for
 * every token, every token ranks the experts alike, and the aux-loss-free bias can only move all of them
 * at once between the same few experts (max/mean load E/k).  Measured on the quick-start model (d 64,
 * 16 experts top-2, lr 0.01, 40 steps, 3 seeds): x1 load 7-8 with init_std 0.02, 2.0-2.5 with 0.1;
 * x4 1.7-1.8 (bias_gamma 0.02) and a lower loss.  sqrt(d_model) balances as well but its tied head
 * starts with a strong "repeat the input byte" guess (initial loss 9.2 instead of ~6 at d_model 128). */
#define EMB_SCALE 4

static int forward(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss, int train)
{
	const struct tr_config *c = &m->cfg;
	if (B < 1 || T < 1 || T > c->seq_len)
		return tr_model_fail(m, "batch %d x %d: need B >= 1 and 1 <= T <= seq_len %d", B, T, c->seq_len);
	for (size_t i = 0; i < (size_t)B * (T + 1); i++)
		if (tokens[i] >= c->vocab)
			return tr_model_fail(m, "token %u at %zu is outside the vocabulary (%d)", tokens[i], i, c->vocab);
	if (alloc_acts(m, B, T))
		return tr_model_fail(m, "out of memory for activations of a %d x %d batch", B, T);
	int N = B * T, D = c->d_model, NH = c->n_heads, hd = D / NH;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			m->inputs[b * T + t] = tokens[(size_t)b * (T + 1) + t];
			m->targets[b * T + t] = tokens[(size_t)b * (T + 1) + t + 1];
		}
	tr_embedding_forward(m->resid[0], m->inputs, m->wte, N, D);
	scale(m->resid[0], EMB_SCALE, (size_t)N * D);
	for (int l = 0; l < c->n_layers; l++) {
		struct tr_layer_act *a = &m->act[l];
		struct tr_layer_w *w = &m->lw[l];
		tr_rmsnorm_forward(a->ln1, a->rstd1, m->resid[l], w->ln1, N, D);
		tr_matmul_forward(a->qkv, a->ln1, w->wqkv, N, D, 3 * D);
		tr_rope_forward(a->qkv, m->rope_cs, B, T, 3 * D, NH, hd);
		tr_rope_forward(a->qkv + D, m->rope_cs, B, T, 3 * D, NH, hd);
		tr_attention_forward(a->atty, a->att, a->qkv, B, T, D, NH);
		tr_matmul_forward(m->tmp, a->atty, w->wo, N, D, D);
		add(a->mid, m->resid[l], m->tmp, (size_t)N * D);
		tr_rmsnorm_forward(a->ln2, a->rstd2, a->mid, w->ln2, N, D);
		if (a->moe) {
			if (tr_moe_forward(m, l - c->n_dense_layers, l, m->tmp, a->ln2, N, train))
				return -1;
		} else {
			tr_ffn_forward(m->tmp, a->h1, a->h3, a->g, a->ln2, w->w1, w->w3, w->w2, N, D, c->d_ff);
		}
		add(m->resid[l + 1], a->mid, m->tmp, (size_t)N * D);
	}
	tr_rmsnorm_forward(m->lnf_out, m->rstdf, m->resid[c->n_layers], m->lnf, N, D);
	tr_matmul_forward(m->logits, m->lnf_out, m->wte, N, D, c->vocab);
	tr_crossentropy_forward(m->losses, m->logits, m->logits, m->targets, N, c->vocab);
	double sum = 0;
	for (int n = 0; n < N; n++)
		sum += m->losses[n];
	*loss = (float)(sum / N);
	return 0;
}

static int backward(struct tr_model *m)
{
	const struct tr_config *c = &m->cfg;
	int B = m->B, T = m->T, N = B * T, D = c->d_model, NH = c->n_heads, hd = D / NH;
	size_t ND = (size_t)N * D;
	for (int s = 0; s < 2; s++)
		memset(m->grads[s], 0, sizeof(tr_real) * m->n_seg[s]);
	tr_real *dlogits = m->logits; /* probabilities become their gradient in place */
	tr_crossentropy_backward(dlogits, m->logits, m->targets, (tr_real)(1.0 / N), N, c->vocab);
	memset(m->dlnf_out, 0, sizeof(tr_real) * ND);
	tr_matmul_backward(m->dlnf_out, m->dwte, dlogits, m->lnf_out, m->wte, N, D, c->vocab);
	memset(m->dresid, 0, sizeof(tr_real) * ND);
	tr_rmsnorm_backward(m->dresid, m->dlnf, m->dlnf_out, m->resid[c->n_layers], m->lnf, m->rstdf, N, D);
	for (int l = c->n_layers - 1; l >= 0; l--) {
		struct tr_layer_act *a = &m->act[l];
		struct tr_layer_w *w = &m->lw[l], *g = &m->lg[l];
		/* resid[l+1] = mid + ffn(ln2(mid)): dresid flows to mid unchanged plus through the FFN */
		memset(m->dln, 0, sizeof(tr_real) * ND);
		if (a->moe) {
			if (tr_moe_backward(m, l - c->n_dense_layers, l, m->dln, m->dresid, a->ln2, N))
				return -1;
		} else {
			tr_ffn_backward(m->dln, g->w1, g->w3, g->w2, m->dresid, a->ln2, a->h1, a->h3, a->g,
					w->w1, w->w3, w->w2, N, D, c->d_ff, m->dffn);
		}
		tr_rmsnorm_backward(m->dresid, g->ln2, m->dln, a->mid, w->ln2, a->rstd2, N, D);
		/* mid = resid[l] + attn(ln1(resid[l])) */
		memset(m->datty, 0, sizeof(tr_real) * ND);
		tr_matmul_backward(m->datty, g->wo, m->dresid, a->atty, w->wo, N, D, D);
		memset(m->dqkv, 0, sizeof(tr_real) * ND * 3);
		tr_attention_backward(m->dqkv, m->datty, a->qkv, a->att, B, T, D, NH);
		tr_rope_backward(m->dqkv, m->rope_cs, B, T, 3 * D, NH, hd);
		tr_rope_backward(m->dqkv + D, m->rope_cs, B, T, 3 * D, NH, hd);
		memset(m->dln, 0, sizeof(tr_real) * ND);
		tr_matmul_backward(m->dln, g->wqkv, m->dqkv, a->ln1, w->wqkv, N, D, 3 * D);
		tr_rmsnorm_backward(m->dresid, g->ln1, m->dln, m->resid[l], w->ln1, a->rstd1, N, D);
	}
	scale(m->dresid, EMB_SCALE, ND); /* dresid is not needed after this */
	tr_embedding_backward(m->dwte, m->dresid, m->inputs, N, D);
	return 0;
}

int tr_model_step(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss)
{
	if (m->n_moe)
		memset(m->load_local, 0, sizeof(double) * (size_t)m->n_moe * m->cfg.n_experts);
	if (forward(m, tokens, B, T, loss, 1))
		return -1;
	return backward(m);
}

int tr_model_eval(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss)
{
	return forward(m, tokens, B, T, loss, 0);
}

int tr_model_reduce_grads(struct tr_model *m)
{
	tr_real inv = (tr_real)(1.0 / m->world_size);
	if (tr_allreduce_real(m->par.world, m->grads[TR_SEG_REPLICATED], m->n_seg[TR_SEG_REPLICATED]))
		return tr_model_fail(m, "gradient all-reduce over the world: %s", tr_comm_error(m->par.world));
	if (m->n_seg[TR_SEG_EXPERT] &&
	    tr_allreduce_real(m->par.dp, m->grads[TR_SEG_EXPERT], m->n_seg[TR_SEG_EXPERT]))
		return tr_model_fail(m, "expert gradient all-reduce over DP: %s", tr_comm_error(m->par.dp));
	for (int s = 0; s < 2; s++) {
		tr_real *g = m->grads[s];
		for (size_t i = 0; i < m->n_seg[s]; i++)
			g[i] *= inv;
	}
	return 0;
}

int tr_model_grad_norm(struct tr_model *m, double *norm)
{
	double rep = 0, ex = 0;
	for (size_t i = 0; i < m->n_seg[TR_SEG_REPLICATED]; i++)
		rep += (double)m->grads[TR_SEG_REPLICATED][i] * m->grads[TR_SEG_REPLICATED][i];
	for (size_t i = 0; i < m->n_seg[TR_SEG_EXPERT]; i++)
		ex += (double)m->grads[TR_SEG_EXPERT][i] * m->grads[TR_SEG_EXPERT][i];
	if (tr_allreduce_f64(m->par.ep, &ex, 1))
		return tr_model_fail(m, "gradient norm over the EP group: %s", tr_comm_error(m->par.ep));
	*norm = sqrt(rep + ex);
	return 0;
}

int tr_model_update_bias(struct tr_model *m)
{
	int E = m->cfg.n_experts;
	size_t n = (size_t)m->n_moe * E;
	if (!n)
		return 0;
	memcpy(m->load_global, m->load_local, sizeof(double) * n);
	if (tr_allreduce_f64(m->par.world, m->load_global, n))
		return tr_model_fail(m, "expert load all-reduce: %s", tr_comm_error(m->par.world));
	double worst = 0, total = 0;
	for (int l = 0; l < m->n_moe; l++) {
		const double *load = m->load_global + (size_t)l * E;
		double sum = 0, mx = 0;
		for (int e = 0; e < E; e++)
			sum += load[e], mx = load[e] > mx ? load[e] : mx;
		double mean = sum / E;
		for (int e = 0; e < E; e++) {
			/* sign(mean - load): underloaded experts become more attractive */
			double d = mean - load[e];
			m->bias[(size_t)l * E + e] += (tr_real)(m->cfg.bias_gamma * (d > 0 ? 1 : d < 0 ? -1 : 0));
		}
		if (mean > 0 && mx / mean > worst)
			worst = mx / mean;
		total += sum;
	}
	m->stats.max_over_mean = worst;
	m->stats.tokens_routed = total;
	return 0;
}

tr_real *tr_model_router_bias(struct tr_model *m, size_t *n)
{
	*n = (size_t)m->n_moe * (m->n_moe ? m->cfg.n_experts : 0);
	return m->bias;
}

void tr_model_stats(const struct tr_model *m, struct tr_moe_stats *st)
{
	*st = m->stats;
	st->rows_sent = m->rows_sent;
}

const struct tr_config *tr_model_config(const struct tr_model *m)
{
	return &m->cfg;
}

const char *tr_model_error(const struct tr_model *m)
{
	return m->err;
}

size_t tr_model_nparams(const struct tr_model *m, enum tr_seg s)
{
	return m->n_seg[s];
}

tr_real *tr_model_params(struct tr_model *m, enum tr_seg s)
{
	return m->params[s];
}

tr_real *tr_model_grads(struct tr_model *m, enum tr_seg s)
{
	return m->grads[s];
}

void tr_model_local_experts(const struct tr_model *m, int *first, int *count, size_t *expert_elems)
{
	*first = m->first_expert;
	*count = m->n_local;
	*expert_elems = m->expert_elems;
}

size_t tr_model_norm_gains(const struct tr_model *m, size_t *off, size_t max)
{
	size_t n = 0;
	const tr_real *base = m->params[TR_SEG_REPLICATED];
	for (int l = 0; l < m->cfg.n_layers; l++) {
		if (n < max)
			off[n] = (size_t)(m->lw[l].ln1 - base);
		n++;
		if (n < max)
			off[n] = (size_t)(m->lw[l].ln2 - base);
		n++;
	}
	if (n < max)
		off[n] = (size_t)(m->lnf - base);
	return n + 1;
}

size_t tr_model_nparams_global(const struct tr_model *m)
{
	return m->n_seg[TR_SEG_REPLICATED] + m->expert_elems * (size_t)(m->n_moe ? m->cfg.n_experts : 0);
}
