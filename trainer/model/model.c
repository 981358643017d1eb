/* model.c - the transformer around the ops: configuration, parameter layout and initialisation,
 * forward + backward of one step, gradient reduction over the ranks, aux-loss-free bias update. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "devcomm.h"
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
		m->be->free(m->scratch);
		m->scratch = m->be->alloc(sizeof(tr_real) * n);
		m->scratch_n = m->scratch ? n : 0;
	}
	return m->scratch;
}

int tr_model_dev_ready(struct tr_model *m)
{
	char why[256];
	if (m->be->sync(why, sizeof(why)) == 0)
		return 0;
	snprintf(m->dc_err, sizeof(m->dc_err), "%s before a device exchange: %s", m->be->name, why);
	return -1;
}

static void free_devcomms(struct tr_model *m)
{
	if (m->dc_world != m->dc_ep)
		tr_devcomm_free(m->dc_world);
	if (m->dc_dp != m->dc_ep && m->dc_dp != m->dc_world)
		tr_devcomm_free(m->dc_dp);
	tr_devcomm_free(m->dc_ep);
	m->dc_ep = m->dc_world = m->dc_dp = NULL;
}

/* the device communicator of c: the one of an equal communicator already opened, or a new one where kind
 * serves c (cuda-ipc: one host), else none (staged) */
static int open_dc(struct tr_model *m, struct tr_comm *c, const char *kind, struct tr_devcomm **out, char *err,
		   size_t errlen)
{
	*out = c == m->par.ep ? m->dc_ep : c == m->par.world ? m->dc_world : NULL;
	if (*out || !tr_devcomm_serves(c, kind))
		return 0;
	return tr_devcomm_open(c, kind, out, err, errlen);
}

int tr_model_set_device_comm(struct tr_model *m, const char *kind, char *err, size_t errlen)
{
	free_devcomms(m);
	if (!kind || !strcmp(kind, "staged"))
		return 0;
	if (!tr_devcomm_kind_known(kind)) {
		snprintf(err, errlen, "--device-comm '%s': valid " TR_DEVCOMM_KINDS, kind);
		return -1;
	}
	if (!m->be->device_mem || sizeof(tr_real) != sizeof(float)) {
		snprintf(err, errlen, "--device-comm %s moves device memory: it needs --device cuda (this run is on %s); "
			 "valid with --device %s: staged", kind, m->be->name, m->be->name);
		return -1;
	}
	/* the EP group must be served (cuda-ipc across hosts is an error there); world and dp where possible */
	if (tr_devcomm_open(m->par.ep, kind, &m->dc_ep, err, errlen) ||
	    open_dc(m, m->par.world, kind, &m->dc_world, err, errlen) ||
	    open_dc(m, m->par.dp, kind, &m->dc_dp, err, errlen)) {
		free_devcomms(m);
		return -1;
	}
	return 0;
}

const char *tr_model_device_comm(const struct tr_model *m)
{
	return m->dc_ep ? tr_devcomm_kind(m->dc_ep) : "staged";
}

void *tr_model_stage(struct tr_model *m, size_t bytes)
{
	if (bytes > m->stage_n) {
		m->be->host_free(m->stage);
		m->stage = m->be->host_alloc(bytes);
		m->stage_n = m->stage ? bytes : 0;
	}
	return m->stage;
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

/* into host copies of the two segments (rep: replicated, ex: this rank's experts) */
static void init_params(const struct tr_model *m, uint64_t seed, tr_real *rep, tr_real *ex, struct tr_layer_w *lw)
{
	const struct tr_config *c = &m->cfg;
	size_t D = c->d_model, F = c->d_ff, De = c->d_expert;
	double std = c->init_std, ostd = c->init_std / sqrt(2.0 * c->n_layers);
	uint64_t s = seed;
	tr_real *wte, *lnf;
	layout(c, rep, lw, &wte, &lnf);
	fill_normal(wte, (size_t)c->vocab * D, std, &s);
	for (int l = 0; l < c->n_layers; l++) {
		struct tr_layer_w *w = &lw[l];
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
	fill_const(lnf, D, 1);
	/* each expert from its own stream, so its weights do not depend on which rank holds it */
	for (int j = 0; j < m->n_local; j++) {
		uint64_t es = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(m->first_expert + j + 1));
		tr_real *p = ex + (size_t)j * m->expert_elems;
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
	/* every EP rank's domain: the routing groups below and the a2a byte counts by domain (moe.c) */
	int *dom = m->ep_dom = malloc(sizeof(int) * (size_t)P), mine = m->par.domain;
	if (!dom) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (tr_allgather(m->par.ep, &mine, dom, sizeof(int))) {
		snprintf(err, errlen, "allgather of NVLink domains over the EP group: %s", tr_comm_error(m->par.ep));
		return -1;
	}
	if (c->n_groups > 0) {
		m->G = c->n_groups;
		for (int e = 0; e < E; e++)
			m->group_of[e] = e / (E / c->n_groups);
		return 0;
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
	m->be = par->be ? par->be : &tr_backend_cpu;
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
	size_t ncs = (size_t)cfg->seq_len * (cfg->d_model / cfg->n_heads);
	const struct tr_backend *be = m->be;
	m->rope_cs = be->alloc(sizeof(tr_real) * ncs);
	m->dbias = be->device_mem ? be->alloc(sizeof(tr_real) * ((size_t)m->n_moe * E + 1)) : m->bias;
	m->dgroup_of = be->device_mem ? be->alloc(sizeof(int) * (E ? E : 1)) : m->group_of;
	int ok = m->lw && m->lg && m->group_of && m->bias && m->load_local && m->load_global && m->rope_cs &&
		 m->dbias && m->dgroup_of;
	for (int s = 0; s < 2 && ok; s++) {
		m->params[s] = be->alloc(sizeof(tr_real) * (m->n_seg[s] + 1));
		m->grads[s] = be->alloc(sizeof(tr_real) * (m->n_seg[s] + 1));
		ok = m->params[s] && m->grads[s];
	}
	char why[256] = "";
	if (!ok || be->sync(why, sizeof(why))) {
		snprintf(err, errlen, "out of %s memory for %zu parameters%s%s", be->device_mem ? "device" : "host",
			 m->n_seg[0] + m->n_seg[1], why[0] ? ": " : "", why);
		tr_model_free(m);
		return -1;
	}
	layout(cfg, m->params[TR_SEG_REPLICATED], m->lw, &m->wte, &m->lnf);
	layout(cfg, m->grads[TR_SEG_REPLICATED], m->lg, &m->dwte, &m->dlnf);
	if (m->n_moe && make_groups(m, err, errlen)) {
		tr_model_free(m);
		return -1;
	}
	/* tables and initial weights are made on the host, then moved to the backend */
	tr_real *host[2] = { m->params[0], m->params[1] }, *cs = m->rope_cs;
	struct tr_layer_w *hlw = m->lw;
	if (be->device_mem) {
		host[0] = malloc(sizeof(tr_real) * (m->n_seg[0] + 1));
		host[1] = malloc(sizeof(tr_real) * (m->n_seg[1] + 1));
		cs = malloc(sizeof(tr_real) * ncs);
		hlw = calloc(cfg->n_layers, sizeof(*hlw));
	}
	if (!host[0] || !host[1] || !cs || !hlw) {
		snprintf(err, errlen, "out of host memory for %zu parameters", m->n_seg[0] + m->n_seg[1]);
		ok = 0;
	} else {
		tr_rope_table(cs, cfg->seq_len, cfg->d_model / cfg->n_heads, cfg->rope_theta);
		init_params(m, seed, host[0], host[1], hlw);
		if (be->device_mem) {
			be->upload(m->params[0], host[0], sizeof(tr_real) * m->n_seg[0]);
			be->upload(m->params[1], host[1], sizeof(tr_real) * m->n_seg[1]);
			be->upload(m->rope_cs, cs, sizeof(tr_real) * ncs);
			be->upload(m->dgroup_of, m->group_of, sizeof(int) * (E ? E : 1));
		}
		if (be->sync(why, sizeof(why))) {
			snprintf(err, errlen, "moving the initial model to the %s: %s", be->name, why);
			ok = 0;
		}
	}
	if (be->device_mem) {
		free(host[0]), free(host[1]), free(cs), free(hlw);
	}
	if (!ok) {
		tr_model_free(m);
		return -1;
	}
	m->stats.n_moe_layers = m->n_moe;
	m->stats.n_experts = E;
	m->stats.load = m->load_global;
	*out = m;
	return 0;
}

static void drop_graph(struct tr_model *m);

static void free_acts(struct tr_model *m)
{
	void (*bfree)(void *) = m->be->free;
	drop_graph(m); /* it holds the addresses freed below */
	bfree(m->gsum);
	m->gsum = NULL;
	if (m->act)
		for (int l = 0; l < m->cfg.n_layers; l++) {
			struct tr_layer_act *a = &m->act[l];
			bfree(a->ln1), bfree(a->rstd1), bfree(a->qkv), bfree(a->att), bfree(a->atty), bfree(a->mid);
			bfree(a->ln2), bfree(a->rstd2), bfree(a->h1), bfree(a->h3), bfree(a->g);
			tr_moe_act_free(a->moe);
		}
	free(m->act);
	m->act = NULL;
	if (m->resid)
		for (int l = 0; l <= m->cfg.n_layers; l++)
			bfree(m->resid[l]);
	free(m->resid);
	m->resid = NULL;
	bfree(m->inputs), bfree(m->targets), bfree(m->lnf_out), bfree(m->rstdf), bfree(m->logits), bfree(m->losses);
	bfree(m->tmp), bfree(m->dresid), bfree(m->dln), bfree(m->dqkv), bfree(m->datty), bfree(m->dlnf_out);
	bfree(m->dffn);
	free(m->tok_host);
	m->tok_host = NULL;
	m->inputs = m->targets = NULL;
	m->lnf_out = m->rstdf = m->logits = m->losses = m->tmp = NULL;
	m->dresid = m->dln = m->dqkv = m->datty = m->dlnf_out = m->dffn = NULL;
	m->B = m->T = 0;
}

void tr_model_free(struct tr_model *m)
{
	if (!m)
		return;
	const struct tr_backend *be = m->be;
	free_acts(m);
	for (int s = 0; s < 2; s++)
		be->free(m->params[s]), be->free(m->grads[s]);
	if (be->device_mem)
		be->free(m->dbias), be->free(m->dgroup_of);
	be->free(m->dcnt);
	free(m->cnt_host);
	free(m->lw), free(m->lg), free(m->group_of), free(m->bias), free(m->load_local), free(m->load_global);
	free(m->ep_dom);
	free_devcomms(m);
	be->free(m->rope_cs), be->free(m->scratch), be->host_free(m->stage);
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
#define ALLOC(p, n) do { (p) = m->be->alloc(sizeof(*(p)) * (n)); ok &= (p) != NULL; } while (0)
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
	ALLOC(m->gsum, TR_SUM_DOUBLES(N));
#undef ALLOC
	m->tok_host = malloc(sizeof(uint16_t) * 2 * N);
	char why[256];
	if (!ok || !m->tok_host || m->be->sync(why, sizeof(why))) {
		free_acts(m);
		return -1;
	}
	m->B = B, m->T = T;
	return 0;
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

/* the host part of a forward: checks, activations for B x T, the batch's tokens and the router bias
 * copied to the backend */
static int prologue(struct tr_model *m, const uint16_t *tokens, int B, int T)
{
	const struct tr_config *c = &m->cfg;
	if (B < 1 || T < 1 || T > c->seq_len)
		return tr_model_fail(m, "batch %d x %d: need B >= 1 and 1 <= T <= seq_len %d", B, T, c->seq_len);
	for (size_t i = 0; i < (size_t)B * (T + 1); i++)
		if (tokens[i] >= c->vocab)
			return tr_model_fail(m, "token %u at %zu is outside the vocabulary (%d)", tokens[i], i, c->vocab);
	if (alloc_acts(m, B, T))
		return tr_model_fail(m, "out of memory for activations of a %d x %d batch", B, T);
	const struct tr_backend *be = m->be;
	int N = B * T;
	uint16_t *in = m->tok_host, *tg = m->tok_host + N;
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++) {
			in[b * T + t] = tokens[(size_t)b * (T + 1) + t];
			tg[b * T + t] = tokens[(size_t)b * (T + 1) + t + 1];
		}
	be->upload(m->inputs, in, sizeof(uint16_t) * N);
	be->upload(m->targets, tg, sizeof(uint16_t) * N);
	if (be->device_mem && m->n_moe) /* the driver may have changed the bias (checkpoint, skew, update) */
		be->upload(m->dbias, m->bias, sizeof(tr_real) * (size_t)m->n_moe * c->n_experts);
	return 0;
}

/* the forward's ops, queued on the backend (no host round trip in graph mode) */
static int forward_ops(struct tr_model *m, int train)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	int B = m->B, T = m->T, N = B * T, D = c->d_model, NH = c->n_heads, hd = D / NH;
	be->embedding_forward(m->resid[0], m->inputs, m->wte, N, D);
	be->scale(m->resid[0], EMB_SCALE, (size_t)N * D);
	for (int l = 0; l < c->n_layers; l++) {
		struct tr_layer_act *a = &m->act[l];
		struct tr_layer_w *w = &m->lw[l];
		be->rmsnorm_forward(a->ln1, a->rstd1, m->resid[l], w->ln1, N, D);
		be->matmul_forward(a->qkv, a->ln1, w->wqkv, N, D, 3 * D);
		be->rope_forward(a->qkv, m->rope_cs, B, T, 3 * D, NH, hd);
		be->rope_forward(a->qkv + D, m->rope_cs, B, T, 3 * D, NH, hd);
		be->attention_forward(a->atty, a->att, a->qkv, B, T, D, NH);
		be->matmul_forward(m->tmp, a->atty, w->wo, N, D, D);
		be->add(a->mid, m->resid[l], m->tmp, (size_t)N * D);
		be->rmsnorm_forward(a->ln2, a->rstd2, a->mid, w->ln2, N, D);
		if (a->moe) {
			int ml = l - c->n_dense_layers;
			if (m->graph ? tr_moe_forward_graph(m, ml, l, m->tmp, a->ln2, N)
				     : tr_moe_forward(m, ml, l, m->tmp, a->ln2, N, train))
				return -1;
		} else if (m->graph) {
			tr_ffn_forward_dev(be, m->tmp, a->h1, a->h3, a->g, a->ln2, w->w1, w->w3, w->w2, 0, NULL, 1, N, D,
					   c->d_ff);
		} else {
			tr_ffn_forward(be, m->tmp, a->h1, a->h3, a->g, a->ln2, w->w1, w->w3, w->w2, 0, &N, 1, D, c->d_ff);
		}
		be->add(m->resid[l + 1], a->mid, m->tmp, (size_t)N * D);
	}
	be->rmsnorm_forward(m->lnf_out, m->rstdf, m->resid[c->n_layers], m->lnf, N, D);
	be->matmul_forward(m->logits, m->lnf_out, m->wte, N, D, c->vocab);
	be->crossentropy_forward(m->losses, m->logits, m->logits, m->targets, N, c->vocab);
	return 0;
}

static int forward(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss, int train)
{
	const struct tr_backend *be = m->be;
	if (prologue(m, tokens, B, T) || forward_ops(m, train))
		return -1;
	int N = B * T;
	double sum = be->sum(m->losses, (size_t)N);
	char why[256];
	if (be->sync(why, sizeof(why)))
		return tr_model_fail(m, "forward on %s: %s", be->name, why);
	*loss = (float)(sum / N);
	return 0;
}

/* the backward's ops, queued */
static int backward_ops(struct tr_model *m)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	int B = m->B, T = m->T, N = B * T, D = c->d_model, NH = c->n_heads, hd = D / NH;
	size_t ND = (size_t)N * D;
	for (int s = 0; s < 2; s++)
		be->zero(m->grads[s], sizeof(tr_real) * m->n_seg[s]);
	tr_real *dlogits = m->logits; /* probabilities become their gradient in place */
	be->crossentropy_backward(dlogits, m->logits, m->targets, (tr_real)(1.0 / N), N, c->vocab);
	be->zero(m->dlnf_out, sizeof(tr_real) * ND);
	be->matmul_backward(m->dlnf_out, m->dwte, dlogits, m->lnf_out, m->wte, N, D, c->vocab);
	be->zero(m->dresid, sizeof(tr_real) * ND);
	be->rmsnorm_backward(m->dresid, m->dlnf, m->dlnf_out, m->resid[c->n_layers], m->lnf, m->rstdf, N, D);
	for (int l = c->n_layers - 1; l >= 0; l--) {
		struct tr_layer_act *a = &m->act[l];
		struct tr_layer_w *w = &m->lw[l], *g = &m->lg[l];
		/* resid[l+1] = mid + ffn(ln2(mid)): dresid flows to mid unchanged plus through the FFN */
		be->zero(m->dln, sizeof(tr_real) * ND);
		if (a->moe) {
			int ml = l - c->n_dense_layers;
			if (m->graph ? tr_moe_backward_graph(m, ml, l, m->dln, m->dresid, a->ln2, N)
				     : tr_moe_backward(m, ml, l, m->dln, m->dresid, a->ln2, N))
				return -1;
		} else if (m->graph) {
			tr_ffn_backward_dev(be, m->dln, g->w1, g->w3, g->w2, m->dresid, a->ln2, a->h1, a->h3, a->g, w->w1,
					    w->w3, w->w2, 0, NULL, 1, N, D, c->d_ff, m->dffn);
		} else {
			tr_ffn_backward(be, m->dln, g->w1, g->w3, g->w2, m->dresid, a->ln2, a->h1, a->h3, a->g,
					w->w1, w->w3, w->w2, 0, &N, 1, D, c->d_ff, m->dffn);
		}
		be->rmsnorm_backward(m->dresid, g->ln2, m->dln, a->mid, w->ln2, a->rstd2, N, D);
		/* mid = resid[l] + attn(ln1(resid[l])) */
		be->zero(m->datty, sizeof(tr_real) * ND);
		be->matmul_backward(m->datty, g->wo, m->dresid, a->atty, w->wo, N, D, D);
		be->zero(m->dqkv, sizeof(tr_real) * ND * 3);
		be->attention_backward(m->dqkv, m->datty, a->qkv, a->att, B, T, D, NH);
		be->rope_backward(m->dqkv, m->rope_cs, B, T, 3 * D, NH, hd);
		be->rope_backward(m->dqkv + D, m->rope_cs, B, T, 3 * D, NH, hd);
		be->zero(m->dln, sizeof(tr_real) * ND);
		be->matmul_backward(m->dln, g->wqkv, m->dqkv, a->ln1, w->wqkv, N, D, 3 * D);
		be->rmsnorm_backward(m->dresid, g->ln1, m->dln, m->resid[l], w->ln1, a->rstd1, N, D);
	}
	be->scale(m->dresid, EMB_SCALE, ND); /* dresid is not needed after this */
	be->embedding_backward(m->dwte, m->dresid, m->inputs, N, D);
	return 0;
}

static int backward(struct tr_model *m)
{
	char why[256];
	if (backward_ops(m))
		return -1;
	if (m->be->sync(why, sizeof(why)))
		return tr_model_fail(m, "backward on %s: %s", m->be->name, why);
	return 0;
}

/* ---- graph mode (tr_model_set_graph) */
static void drop_graph(struct tr_model *m)
{
	if (m->gexec)
		m->be->graph_free(m->gexec);
	m->gexec = NULL;
	m->gsteps = 0;
}

int tr_model_set_graph(struct tr_model *m, int mode, char *err, size_t errlen)
{
	const struct tr_backend *be = m->be;
	size_t n = (size_t)m->n_moe * m->cfg.n_experts;
	if (mode < 0 || mode > 2) {
		snprintf(err, errlen, "graph mode %d: valid 0 (off), 1 (counts on the backend), 2 (and captured)", mode);
		return -1;
	}
	if (mode && m->ep_size != 1) {
		snprintf(err, errlen, "--cuda-graph needs EP size 1, this run has EP size %d: the expert all-to-all needs "
			 "the per-expert counts on the host; run without --cuda-graph", m->ep_size);
		return -1;
	}
	if (mode == 2 && !be->graph_begin) {
		snprintf(err, errlen, "--cuda-graph: the %s backend cannot capture graphs; valid with --device cuda", be->name);
		return -1;
	}
	if (mode && n && !m->dcnt) {
		m->dcnt = be->alloc(sizeof(int) * n);
		m->cnt_host = malloc(sizeof(int) * n);
		char why[256] = "";
		if (!m->dcnt || !m->cnt_host || be->sync(why, sizeof(why))) {
			snprintf(err, errlen, "out of memory for the routing counts of graph mode%s%s", why[0] ? ": " : "", why);
			return -1;
		}
	}
	drop_graph(m);
	m->graph = mode;
	return 0;
}

/* forward + backward queued, the loss summed on the backend: what a graph holds */
static int step_ops(struct tr_model *m)
{
	if (forward_ops(m, 1))
		return -1;
	m->be->sum_to(m->gsum, m->losses, (size_t)m->B * m->T, 0);
	return backward_ops(m);
}

/* One step in graph mode: the host part, then the ops (eager at the first step of a shape, captured at
 * the second, replayed after), then the loss and the routing counts read once */
static int graph_step(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss)
{
	const struct tr_backend *be = m->be;
	char why[256];
	if (prologue(m, tokens, B, T))
		return -1;
	if (m->graph == 2 && !m->gexec && m->gsteps > 0) {
		if (be->graph_begin(why, sizeof(why)))
			return tr_model_fail(m, "%s", why);
		int rc = step_ops(m), rc_end = be->graph_end(&m->gexec, why, sizeof(why));
		if (rc || rc_end) {
			drop_graph(m);
			return rc ? -1 : tr_model_fail(m, "%s", why);
		}
	}
	if (m->gexec ? be->graph_launch(m->gexec, why, sizeof(why)) : step_ops(m))
		return m->gexec ? tr_model_fail(m, "%s", why) : -1;
	m->gsteps++;
	size_t n = (size_t)m->n_moe * m->cfg.n_experts;
	double sum = 0;
	be->download(&sum, m->gsum, sizeof(double));
	if (n)
		be->download(m->cnt_host, m->dcnt, sizeof(int) * n);
	if (be->sync(why, sizeof(why)))
		return tr_model_fail(m, "step on %s (graph mode): %s", be->name, why);
	for (size_t i = 0; i < n; i++)
		m->load_local[i] += m->cnt_host[i];
	*loss = (float)(sum / ((double)B * T));
	return 0;
}

int tr_model_step(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss)
{
	if (m->n_moe)
		memset(m->load_local, 0, sizeof(double) * (size_t)m->n_moe * m->cfg.n_experts);
	if (m->graph)
		return graph_step(m, tokens, B, T, loss);
	if (forward(m, tokens, B, T, loss, 1))
		return -1;
	return backward(m);
}

int tr_model_eval(struct tr_model *m, const uint16_t *tokens, int B, int T, float *loss)
{
	return forward(m, tokens, B, T, loss, 0);
}

/* all-reduce (sum) of n backend values over c: in place on host memory, on the device with c's device
 * communicator dc, else staged for a device; nothing to do for a communicator of one (but dc runs then
 * too, so a one-rank run goes through it) */
static int allreduce_be(struct tr_model *m, struct tr_comm *c, struct tr_devcomm *dc, tr_real *buf, size_t n)
{
	if (dc && n) {
		if (tr_model_dev_ready(m))
			return -1;
		if (tr_devcomm_allreduce_f32(dc, (float *)(void *)buf, n) == 0)
			return 0;
		snprintf(m->dc_err, sizeof(m->dc_err), "%s", tr_devcomm_error(dc));
		return -1;
	}
	if (tr_comm_size(c) == 1 || n == 0)
		return 0;
	if (!m->be->device_mem)
		return tr_allreduce_real(c, buf, n);
	tr_real *h = tr_model_stage(m, sizeof(tr_real) * n);
	if (!h)
		return -1;
	m->be->download(h, buf, sizeof(tr_real) * n);
	if (tr_allreduce_real(c, h, n))
		return -1;
	m->be->upload(buf, h, sizeof(tr_real) * n);
	return 0;
}

int tr_model_reduce_grads(struct tr_model *m)
{
	tr_real inv = (tr_real)(1.0 / m->world_size);
	if (allreduce_be(m, m->par.world, m->dc_world, m->grads[TR_SEG_REPLICATED], m->n_seg[TR_SEG_REPLICATED]))
		return tr_model_fail(m, "gradient all-reduce over the world: %s",
				     m->dc_world ? m->dc_err : tr_comm_error(m->par.world));
	if (m->n_seg[TR_SEG_EXPERT] &&
	    allreduce_be(m, m->par.dp, m->dc_dp, m->grads[TR_SEG_EXPERT], m->n_seg[TR_SEG_EXPERT]))
		return tr_model_fail(m, "expert gradient all-reduce over DP: %s",
				     m->dc_dp ? m->dc_err : tr_comm_error(m->par.dp));
	for (int s = 0; s < 2; s++)
		m->be->scale(m->grads[s], inv, m->n_seg[s]);
	char why[256];
	if (m->be->sync(why, sizeof(why)))
		return tr_model_fail(m, "gradient reduction on %s: %s", m->be->name, why);
	return 0;
}

int tr_model_grad_norm(struct tr_model *m, double *norm)
{
	/* replicated grads are identical on every rank after the reduce: count them once; expert grads
	 * are identical across DP replicas: sum them over the EP group */
	double rep = m->be->sumsq(m->grads[TR_SEG_REPLICATED], m->n_seg[TR_SEG_REPLICATED]);
	double ex = m->be->sumsq(m->grads[TR_SEG_EXPERT], m->n_seg[TR_SEG_EXPERT]);
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
	st->a2a_seconds = m->a2a_s;
	st->a2a_domain_bytes = m->a2a_dom_bytes;
	st->a2a_xdomain_bytes = m->a2a_xdom_bytes;
}

const struct tr_config *tr_model_config(const struct tr_model *m)
{
	return &m->cfg;
}

const char *tr_model_error(const struct tr_model *m)
{
	return m->err;
}

const struct tr_backend *tr_model_backend(const struct tr_model *m)
{
	return m->be;
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

double tr_model_flops_per_token(const struct tr_model *m, int T)
{
	const struct tr_config *c = &m->cfg;
	double D = c->d_model, F = c->d_ff, De = c->d_expert, E = c->n_experts, k = c->top_k, mac = 0;
	for (int l = 0; l < c->n_layers; l++) {
		mac += 4 * D * D + 2 * (double)T * D; /* qkv + out projections; q k^T and att v */
		mac += 3 * D * F;                      /* dense FFN, or the shared expert */
		if (l >= c->n_dense_layers)
			mac += E * D + k * 3 * D * De; /* router, routed experts */
	}
	mac += (double)c->vocab * D;                   /* output head */
	return 3 * 2 * mac;
}
