/* moe.c - the MoE FFN layer: shared expert + routed experts, expert-parallel over the ep communicator.
 *
 * forward:  router -> sort token-expert pairs by expert (permute) -> exchange counts, then token rows
 *           (dispatch, tr_alltoallv) -> regroup received rows expert-major -> expert SwiGLU ->
 *           back to source order -> reverse exchange (combine) -> gate-weighted sum per token (unpermute).
 * The dispatch names each row's token (tr_alltoallv_keyed), so the transport may send a token once per
 * node however many of its experts are there.
 * backward: the same exchanges in reverse with the gradients of the rows.
 * Gates stay on the token's rank, so the gate gradient <dy, expert output> is computed where the token is.
 * Rows of one expert are processed in (source rank, token) order, which is the global token order when
 * the global batch is split over ranks in rank order: the expert computes the same sums at any EP size.
 */
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "model_impl.h"
#include "ops.h"

struct tr_moe_act *tr_moe_act_new(const struct tr_model *m, int N)
{
	const struct tr_config *c = &m->cfg;
	size_t nk = (size_t)N * c->top_k, ne = (size_t)N * c->n_experts, nf = (size_t)N * c->d_ff;
	struct tr_moe_act *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->scores = malloc(sizeof(tr_real) * ne);
	a->gates = malloc(sizeof(tr_real) * nk);
	a->idx = malloc(sizeof(int) * nk);
	a->pos = malloc(sizeof(int) * nk);
	a->src_tok = malloc(sizeof(int) * nk);
	a->send_cnt = malloc(sizeof(int) * c->n_experts);
	a->recv_cnt = malloc(sizeof(int) * c->n_experts); /* ep * E_local == E */
	a->back = malloc(sizeof(tr_real) * nk * c->d_model);
	a->sh_h1 = malloc(sizeof(tr_real) * nf);
	a->sh_h3 = malloc(sizeof(tr_real) * nf);
	a->sh_g = malloc(sizeof(tr_real) * nf);
	if (!a->scores || !a->gates || !a->idx || !a->pos || !a->src_tok || !a->send_cnt || !a->recv_cnt ||
	    !a->back || !a->sh_h1 || !a->sh_h3 || !a->sh_g) {
		tr_moe_act_free(a);
		return NULL;
	}
	return a;
}

void tr_moe_act_free(struct tr_moe_act *a)
{
	if (!a)
		return;
	free(a->scores), free(a->gates), free(a->idx), free(a->pos), free(a->src_tok);
	free(a->send_cnt), free(a->recv_cnt), free(a->em_src), free(a->em_inv);
	free(a->xe), free(a->h1e), free(a->h3e), free(a->ge), free(a->back);
	free(a->sh_h1), free(a->sh_h3), free(a->sh_g);
	free(a);
}

static int grow_rows(struct tr_moe_act *a, int R, int D, int De)
{
	if (R <= a->capR)
		return 0;
	int cap = R + R / 4 + 16;
	void *p[6];
	p[0] = realloc(a->em_src, sizeof(int) * cap);
	if (p[0]) a->em_src = p[0];
	p[1] = realloc(a->em_inv, sizeof(int) * cap);
	if (p[1]) a->em_inv = p[1];
	p[2] = realloc(a->xe, sizeof(tr_real) * cap * D);
	if (p[2]) a->xe = p[2];
	p[3] = realloc(a->h1e, sizeof(tr_real) * cap * De);
	if (p[3]) a->h1e = p[3];
	p[4] = realloc(a->h3e, sizeof(tr_real) * cap * De);
	if (p[4]) a->h3e = p[4];
	p[5] = realloc(a->ge, sizeof(tr_real) * cap * De);
	if (p[5]) a->ge = p[5];
	for (int i = 0; i < 6; i++)
		if (!p[i])
			return -1;
	a->capR = cap;
	return 0;
}

/* byte counts and offsets of both directions from the per-expert row counts */
struct xfer {
	size_t *sb, *so, *rb, *ro; /* send/recv bytes and offsets per EP rank (dispatch direction) */
	uint64_t rows_out, rows_back; /* rows to other ranks: dispatch direction, combine direction */
};

static void xfer_sizes(const struct tr_model *m, const struct tr_moe_act *a, struct xfer *x)
{
	int P = m->ep_size, El = m->n_local;
	size_t row = sizeof(tr_real) * m->cfg.d_model, s_off = 0, r_off = 0;
	x->rows_out = x->rows_back = 0;
	for (int p = 0; p < P; p++) {
		size_t s = 0, r = 0;
		for (int j = 0; j < El; j++) {
			s += (size_t)a->send_cnt[p * El + j];
			r += (size_t)a->recv_cnt[p * El + j];
		}
		if (p != m->ep_rank)
			x->rows_out += s, x->rows_back += r;
		x->sb[p] = s * row, x->so[p] = s_off, s_off += s * row;
		x->rb[p] = r * row, x->ro[p] = r_off, r_off += r * row;
	}
}

static tr_real *expert_w(tr_real *seg, const struct tr_model *m, int j, int l)
{
	return seg + (size_t)j * m->expert_elems + (size_t)l * m->moe_expert_elems;
}

int tr_moe_forward(struct tr_model *m, int l, int layer, tr_real *y, const tr_real *x, int N, int count)
{
	const struct tr_config *c = &m->cfg;
	struct tr_moe_act *a = m->act[layer].moe;
	const struct tr_layer_w *w = &m->lw[layer];
	int E = c->n_experts, k = c->top_k, D = c->d_model, De = c->d_expert, El = m->n_local, P = m->ep_size;
	int Nk = N * k;

	tr_ffn_forward(y, a->sh_h1, a->sh_h3, a->sh_g, x, w->w1, w->w3, w->w2, N, D, c->d_ff);

	/* the router writes the scores over its logits */
	tr_matmul_forward(a->scores, x, w->wr, N, D, E);
	tr_router_forward(a->scores, a->idx, a->gates, a->scores, m->bias + (size_t)l * E, m->group_of, m->G,
			  c->topk_groups, N, E, k, c->route_scale);

	/* counting sort of (token, slot) pairs by expert; stable, so each expert sees its tokens in order */
	memset(a->send_cnt, 0, sizeof(int) * E);
	for (int i = 0; i < Nk; i++)
		a->send_cnt[a->idx[i]]++;
	if (count)
		for (int e = 0; e < E; e++)
			m->load_local[(size_t)l * E + e] += a->send_cnt[e];
	int off[E];
	for (int e = 0, o = 0; e < E; e++)
		off[e] = o, o += a->send_cnt[e];
	for (int i = 0; i < Nk; i++) {
		int p = off[a->idx[i]]++;
		a->pos[i] = p;
		a->src_tok[p] = i / k;
	}

	/* experts are contiguous per EP rank, so send_cnt is already [dest][local expert] */
	if (tr_alltoall(m->par.ep, a->send_cnt, a->recv_cnt, sizeof(int) * El))
		return tr_model_fail(m, "expert dispatch counts: %s", tr_comm_error(m->par.ep));
	size_t sb[P], so[P], rb[P], ro[P];
	struct xfer xf = { sb, so, rb, ro, 0, 0 };
	xfer_sizes(m, a, &xf);
	int R = 0;
	for (int i = 0; i < P * El; i++)
		R += a->recv_cnt[i];
	a->R = R;
	if (grow_rows(a, R, D, De))
		return tr_model_fail(m, "out of memory for %d expert rows", R);
	tr_real *xsend = tr_model_scratch(m, ((size_t)Nk + 2 * (size_t)R) * D);
	if (!xsend)
		return tr_model_fail(m, "out of memory for the expert exchange");
	tr_real *xrecv = xsend + (size_t)Nk * D, *ye = xrecv + (size_t)R * D;

	tr_permute_forward(xsend, x, a->src_tok, Nk, D);
	/* the rows of one token are equal: keyed by token, they cross to a node once (rail mode) */
	if (tr_alltoallv_keyed(m->par.ep, xsend, sb, so, xrecv, rb, ro, sizeof(tr_real) * D, a->src_tok, N))
		return tr_model_fail(m, "expert dispatch: %s", tr_comm_error(m->par.ep));

	/* received rows are [source][local expert]; the experts want [local expert][source] */
	int srcstart[P];
	for (int s = 0, o = 0; s < P; s++) {
		srcstart[s] = o;
		for (int j = 0; j < El; j++)
			o += a->recv_cnt[s * El + j];
	}
	int q = 0;
	for (int j = 0; j < El; j++)
		for (int s = 0; s < P; s++) {
			int base = srcstart[s];
			for (int jj = 0; jj < j; jj++)
				base += a->recv_cnt[s * El + jj];
			for (int r = 0; r < a->recv_cnt[s * El + j]; r++, q++)
				a->em_src[q] = base + r, a->em_inv[base + r] = q;
		}
	tr_permute_forward(a->xe, xrecv, a->em_src, R, D);

	for (int j = 0, q0 = 0; j < El; j++) {
		int nj = 0;
		for (int s = 0; s < P; s++)
			nj += a->recv_cnt[s * El + j];
		tr_real *ew = expert_w(m->params[TR_SEG_EXPERT], m, j, l);
		tr_ffn_forward(ye + (size_t)q0 * D, a->h1e + (size_t)q0 * De, a->h3e + (size_t)q0 * De,
			       a->ge + (size_t)q0 * De, a->xe + (size_t)q0 * D, ew, ew + (size_t)De * D,
			       ew + 2 * (size_t)De * D, nj, D, De);
		q0 += nj;
	}

	tr_permute_forward(xrecv, ye, a->em_inv, R, D);
	if (tr_alltoallv(m->par.ep, xrecv, rb, ro, a->back, sb, so))
		return tr_model_fail(m, "expert combine: %s", tr_comm_error(m->par.ep));
	m->rows_sent += xf.rows_out + xf.rows_back;
	tr_unpermute_forward(y, a->back, a->pos, a->gates, N, k, D);
	return 0;
}

int tr_moe_backward(struct tr_model *m, int l, int layer, tr_real *dx, const tr_real *dy, const tr_real *x, int N)
{
	const struct tr_config *c = &m->cfg;
	struct tr_moe_act *a = m->act[layer].moe;
	const struct tr_layer_w *w = &m->lw[layer];
	const struct tr_layer_w *g = &m->lg[layer];
	int E = c->n_experts, k = c->top_k, D = c->d_model, De = c->d_expert, El = m->n_local, P = m->ep_size;
	int Nk = N * k, R = a->R;

	/* largest expert, for the FFN backward scratch */
	int maxj = 0;
	for (int j = 0; j < El; j++) {
		int nj = 0;
		for (int s = 0; s < P; s++)
			nj += a->recv_cnt[s * El + j];
		if (nj > maxj)
			maxj = nj;
	}
	size_t nd = (size_t)Nk * D + 2 * (size_t)R * D + (size_t)Nk + (size_t)N * E;
	size_t nffn = 3 * (size_t)maxj * De;
	if (3 * (size_t)N * c->d_ff > nffn)
		nffn = 3 * (size_t)N * c->d_ff;
	tr_real *dback = tr_model_scratch(m, nd + nffn);
	if (!dback)
		return tr_model_fail(m, "out of memory for the expert exchange");
	tr_real *drecv = dback + (size_t)Nk * D, *dye = drecv + (size_t)R * D, *dgates = dye + (size_t)R * D;
	tr_real *dlogits = dgates + Nk, *fscr = dlogits + (size_t)N * E;

	tr_ffn_backward(dx, g->w1, g->w3, g->w2, dy, x, a->sh_h1, a->sh_h3, a->sh_g, w->w1, w->w3, w->w2,
			N, D, c->d_ff, fscr);

	size_t sb[P], so[P], rb[P], ro[P];
	struct xfer xf = { sb, so, rb, ro, 0, 0 };
	xfer_sizes(m, a, &xf);
	tr_unpermute_backward(dback, dgates, dy, a->back, a->pos, a->gates, N, k, D);
	if (tr_alltoallv(m->par.ep, dback, sb, so, drecv, rb, ro))
		return tr_model_fail(m, "expert dispatch (backward): %s", tr_comm_error(m->par.ep));
	tr_permute_forward(dye, drecv, a->em_src, R, D);

	tr_real *dxe = drecv; /* the received rows are consumed */
	memset(dxe, 0, sizeof(tr_real) * (size_t)R * D);
	for (int j = 0, q0 = 0; j < El; j++) {
		int nj = 0;
		for (int s = 0; s < P; s++)
			nj += a->recv_cnt[s * El + j];
		tr_real *ew = expert_w(m->params[TR_SEG_EXPERT], m, j, l);
		tr_real *eg = expert_w(m->grads[TR_SEG_EXPERT], m, j, l);
		size_t o1 = (size_t)De * D;
		tr_ffn_backward(dxe + (size_t)q0 * D, eg, eg + o1, eg + 2 * o1, dye + (size_t)q0 * D,
				a->xe + (size_t)q0 * D, a->h1e + (size_t)q0 * De, a->h3e + (size_t)q0 * De,
				a->ge + (size_t)q0 * De, ew, ew + o1, ew + 2 * o1, nj, D, De, fscr);
		q0 += nj;
	}
	tr_permute_forward(dye, dxe, a->em_inv, R, D);
	if (tr_alltoallv(m->par.ep, dye, rb, ro, dback, sb, so))
		return tr_model_fail(m, "expert combine (backward): %s", tr_comm_error(m->par.ep));
	m->rows_sent += xf.rows_out + xf.rows_back;
	tr_permute_backward(dx, dback, a->pos, N, k, D);

	tr_router_backward(dlogits, dgates, a->scores, a->idx, N, E, k, c->route_scale);
	tr_matmul_backward(dx, g->wr, dlogits, x, w->wr, N, D, E);
	return 0;
}
