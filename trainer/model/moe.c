/* moe.c - the MoE FFN layer: shared expert + routed experts, expert-parallel over the ep communicator.
 *
 * forward:  router -> sort token-expert pairs by expert (permute) -> exchange counts, then token rows
 *           (dispatch, tr_alltoallv_keyed) and their gates -> regroup received rows expert-major ->
 *           expert SwiGLU -> back to received order, times the gate -> reverse exchange summed per token
 *           (combine, tr_alltoallv_sum_f32).
 * The dispatch names each row's token, so the transport may send a token once per node however many
 * of its experts are there; the combine sums a token's weighted expert outputs per node before they
 * cross back (rail mode), in one fixed order that every mode and EP layout on one node shares.
 * backward: dy of each token goes to its experts keyed the same way; each expert row computes its gate's
 * gradient <dy, output> and gate * dy there, the gate gradients travel back, and the input gradients
 * return summed per token like the forward's outputs.
 * Rows of one expert are processed in (source rank, token) order, which is the global token order when
 * the global batch is split over ranks in rank order: the expert computes the same sums at any EP size.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "comm.h"
#include "devcomm.h"
#include "model_impl.h"

struct tr_moe_act *tr_moe_act_new(const struct tr_model *m, int N)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	size_t nk = (size_t)N * c->top_k, ne = (size_t)N * c->n_experts, nf = (size_t)N * c->d_ff;
	struct tr_moe_act *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->scores = be->alloc(sizeof(tr_real) * ne);
	a->gates = be->alloc(sizeof(tr_real) * nk);
	a->idx = be->alloc(sizeof(int) * nk);
	a->pos = be->alloc(sizeof(int) * nk);
	a->src_tok = be->alloc(sizeof(int) * nk);
	a->send_cnt = malloc(sizeof(int) * c->n_experts);
	a->recv_cnt = malloc(sizeof(int) * c->n_experts); /* ep * E_local == E */
	a->rows = malloc(sizeof(int) * c->n_experts);
	a->sh_h1 = be->alloc(sizeof(tr_real) * nf);
	a->sh_h3 = be->alloc(sizeof(tr_real) * nf);
	a->sh_g = be->alloc(sizeof(tr_real) * nf);
	a->be = be;
	if (!a->scores || !a->gates || !a->idx || !a->pos || !a->src_tok || !a->send_cnt || !a->recv_cnt ||
	    !a->rows || !a->sh_h1 || !a->sh_h3 || !a->sh_g) {
		tr_moe_act_free(a);
		return NULL;
	}
	return a;
}

static void free_rows(struct tr_moe_act *a)
{
	const struct tr_backend *be = a->be;
	be->free(a->em_src), be->free(a->em_inv), be->free(a->xe), be->free(a->h1e), be->free(a->h3e);
	be->free(a->ge), be->free(a->yrow), be->free(a->grecv), be->free(a->ident);
	free(a->em_host);
	a->em_src = a->em_inv = a->em_host = a->ident = NULL;
	a->xe = a->h1e = a->h3e = a->ge = a->yrow = a->grecv = NULL;
	a->capR = 0;
}

void tr_moe_act_free(struct tr_moe_act *a)
{
	if (!a)
		return;
	const struct tr_backend *be = a->be;
	free_rows(a);
	be->free(a->scores), be->free(a->gates), be->free(a->idx), be->free(a->pos), be->free(a->src_tok);
	free(a->send_cnt), free(a->recv_cnt), free(a->rows);
	be->free(a->sh_h1), be->free(a->sh_h3), be->free(a->sh_g);
	free(a);
}

int tr_moe_grow_rows(struct tr_moe_act *a, int R, int D, int De)
{
	if (R <= a->capR)
		return 0;
	const struct tr_backend *be = a->be;
	free_rows(a);
	size_t cap = (size_t)R + R / 4 + 16;
	a->em_src = be->alloc(sizeof(int) * cap);
	a->em_inv = be->alloc(sizeof(int) * cap);
	a->em_host = malloc(sizeof(int) * 2 * cap);
	a->xe = be->alloc(sizeof(tr_real) * cap * D);
	a->h1e = be->alloc(sizeof(tr_real) * cap * De);
	a->h3e = be->alloc(sizeof(tr_real) * cap * De);
	a->ge = be->alloc(sizeof(tr_real) * cap * De);
	a->yrow = be->alloc(sizeof(tr_real) * cap * D);
	a->grecv = be->alloc(sizeof(tr_real) * cap);
	a->ident = be->alloc(sizeof(int) * cap);
	if (!a->em_src || !a->em_inv || !a->em_host || !a->xe || !a->h1e || !a->h3e || !a->ge || !a->yrow ||
	    !a->grecv || !a->ident) {
		free_rows(a);
		return -1;
	}
	for (size_t i = 0; i < cap; i++)
		a->em_host[i] = (int)i;
	be->upload(a->ident, a->em_host, sizeof(int) * cap);
	a->capR = (int)cap;
	return 0;
}

/* a device exchange's result, its failure in m->dc_err */
static int dc_result(struct tr_model *m, int rc)
{
	if (rc)
		snprintf(m->dc_err, sizeof(m->dc_err), "%s", tr_devcomm_error(m->dc_ep));
	return rc ? -1 : 0;
}

/* the failure of the last row exchange over the EP group */
static const char *ep_error(const struct tr_model *m)
{
	return m->dc_ep ? m->dc_err : tr_comm_error(m->par.ep);
}

/* tr_alltoallv over the EP group on backend memory, keyed by token (tr_alltoallv_keyed) when keys is
 * given: as is on host memory; with the device communicator where there is one (--device-comm); a
 * device copy when the group is this rank alone; otherwise staged through pinned host memory, keys too */
static int exchange_rows(struct tr_model *m, const tr_real *send, const size_t *sb, const size_t *so, tr_real *recv,
			 const size_t *rb, const size_t *ro, const int *keys, int n_keys)
{
	const struct tr_backend *be = m->be;
	int P = m->ep_size;
	size_t row = sizeof(tr_real) * m->cfg.d_model;
	if (!be->device_mem)
		return keys ? tr_alltoallv_keyed(m->par.ep, send, sb, so, recv, rb, ro, row, keys, n_keys)
			    : tr_alltoallv(m->par.ep, send, sb, so, recv, rb, ro);
	if (m->dc_ep) /* device to device (rows not deduplicated: that is rail mode's, on the host) */
		return tr_model_dev_ready(m) || dc_result(m, tr_devcomm_alltoallv(m->dc_ep, send, sb, so, recv, rb, ro));
	if (P == 1) {
		be->copy((char *)recv + ro[0], (const char *)send + so[0], sb[0]);
		return 0;
	}
	size_t st = so[P - 1] + sb[P - 1], rt = ro[P - 1] + rb[P - 1], kt = keys ? sizeof(int) * (st / row) : 0;
	char *h = tr_model_stage(m, st + rt + kt);
	if (!h)
		return -1;
	int *hk = (int *)(void *)(h + st + rt);
	be->download(h, send, st);
	if (keys)
		be->download(hk, keys, kt);
	if (keys ? tr_alltoallv_keyed(m->par.ep, h, sb, so, h + st, rb, ro, row, hk, n_keys)
		 : tr_alltoallv(m->par.ep, h, sb, so, h + st, rb, ro))
		return -1;
	be->upload(recv, h + st, rt);
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* after an exchange: its time, and its bytes counted by the destination's NVLink domain (tr_moe_stats) */
static int account(struct tr_model *m, int rc, double t0, const size_t *sb)
{
	m->a2a_s += now_s() - t0;
	for (int p = 0; rc == 0 && p < m->ep_size; p++)
		if (p != m->ep_rank) {
			if (m->ep_dom[p] == m->ep_dom[m->ep_rank])
				m->a2a_dom_bytes += sb[p];
			else
				m->a2a_xdom_bytes += sb[p];
		}
	return rc;
}

/* exchange_rows, timed and counted */
static int exchange(struct tr_model *m, const tr_real *send, const size_t *sb, const size_t *so, tr_real *recv,
		    const size_t *rb, const size_t *ro, const int *keys, int n_keys)
{
	double t0 = now_s();
	return account(m, exchange_rows(m, send, sb, so, recv, rb, ro, keys, n_keys), t0, sb);
}

/* tr_alltoallv_sum_f32 (or _f64 where tr_real is double) on host memory */
static int sum_a2a(struct tr_comm *c, const void *send, const size_t *sb, const size_t *so, void *sum,
		   const size_t *rb, const size_t *ro, size_t row, const int *keys, int n_keys)
{
	if (sizeof(tr_real) == sizeof(double))
		return tr_alltoallv_sum_f64(c, send, sb, so, sum, rb, ro, row, keys, n_keys);
	return tr_alltoallv_sum_f32(c, send, sb, so, sum, rb, ro, row, keys, n_keys);
}

/* tr_alltoallv_sum_f32 over the EP group on backend memory (the combine): the rows sent back are summed
 * per token into sum [n_keys][D].  On device memory with the device communicator (its kernel adds in
 * the transport's order), else staged through host memory, at EP size 1 too, so the sums have the
 * transport's one order everywhere. */
static int combine_rows(struct tr_model *m, const tr_real *send, const size_t *sb, const size_t *so, tr_real *sum,
			const size_t *rb, const size_t *ro, const int *keys, int n_keys)
{
	const struct tr_backend *be = m->be;
	int P = m->ep_size;
	size_t row = sizeof(tr_real) * m->cfg.d_model;
	if (!be->device_mem)
		return sum_a2a(m->par.ep, send, sb, so, sum, rb, ro, row, keys, n_keys);
	size_t st = so[P - 1] + sb[P - 1], rt = ro[P - 1] + rb[P - 1], kt = sizeof(int) * (rt / row);
	if (m->dc_ep) { /* rows device to device, summed there; only the keys come to the host (the order) */
		int *hk = tr_model_stage(m, kt + 1);
		if (!hk)
			return -1;
		be->download(hk, keys, kt);
		return tr_model_dev_ready(m) ||
		       dc_result(m, tr_devcomm_alltoallv_sum_f32(m->dc_ep, (const float *)(const void *)send, sb, so,
								 (float *)(void *)sum, rb, ro, row, hk, n_keys));
	}
	size_t out = row * (size_t)n_keys;
	char *h = tr_model_stage(m, st + out + kt);
	if (!h)
		return -1;
	int *hk = (int *)(void *)(h + st + out);
	be->download(h, send, st);
	be->download(hk, keys, kt);
	if (sum_a2a(m->par.ep, h, sb, so, h + st, rb, ro, row, hk, n_keys))
		return -1;
	be->upload(sum, h + st, out);
	return 0;
}

/* combine_rows, timed and counted */
static int combine(struct tr_model *m, const tr_real *send, const size_t *sb, const size_t *so, tr_real *sum,
		   const size_t *rb, const size_t *ro, const int *keys, int n_keys)
{
	double t0 = now_s();
	return account(m, combine_rows(m, send, sb, so, sum, rb, ro, keys, n_keys), t0, sb);
}

/* the same exchange for one float per row (gates, gate gradients): sizes are the rows' divided by D */
static int exchange_scalars(struct tr_model *m, const tr_real *send, const size_t *sb, const size_t *so,
			    tr_real *recv, const size_t *rb, const size_t *ro)
{
	int P = m->ep_size;
	size_t D = (size_t)m->cfg.d_model, gsb[P], gso[P], grb[P], gro[P];
	for (int p = 0; p < P; p++)
		gsb[p] = sb[p] / D, gso[p] = so[p] / D, grb[p] = rb[p] / D, gro[p] = ro[p] / D;
	return exchange(m, send, gsb, gso, recv, grb, gro, NULL, 0);
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

int tr_moe_forward(struct tr_model *m, int l, int layer, tr_real *y, const tr_real *x, int N, int count)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	struct tr_moe_act *a = m->act[layer].moe;
	const struct tr_layer_w *w = &m->lw[layer];
	int E = c->n_experts, k = c->top_k, D = c->d_model, De = c->d_expert, El = m->n_local, P = m->ep_size;
	int Nk = N * k, one = N;

	tr_ffn_forward(be, y, a->sh_h1, a->sh_h3, a->sh_g, x, w->w1, w->w3, w->w2, 0, &one, 1, D, c->d_ff);

	/* the router writes the scores over its logits */
	be->matmul_forward(a->scores, x, w->wr, N, D, E);
	be->router_forward(a->scores, a->idx, a->gates, a->scores, m->dbias + (size_t)l * E, m->dgroup_of, m->G,
			   c->topk_groups, N, E, k, c->route_scale);

	/* counting sort of (token, slot) pairs by expert; stable, so each expert sees its tokens in order */
	be->route_plan(a->send_cnt, a->pos, a->src_tok, a->idx, Nk, k, E);
	if (count)
		for (int e = 0; e < E; e++)
			m->load_local[(size_t)l * E + e] += a->send_cnt[e];

	/* experts are contiguous per EP rank, so send_cnt is already [dest][local expert] */
	double t0 = now_s();
	if (tr_alltoall(m->par.ep, a->send_cnt, a->recv_cnt, sizeof(int) * El))
		return tr_model_fail(m, "expert dispatch counts: %s", tr_comm_error(m->par.ep));
	m->a2a_s += now_s() - t0;
	size_t sb[P], so[P], rb[P], ro[P];
	struct xfer xf = { sb, so, rb, ro, 0, 0 };
	xfer_sizes(m, a, &xf);
	int R = 0;
	for (int j = 0; j < El; j++) {
		a->rows[j] = 0;
		for (int s = 0; s < P; s++)
			a->rows[j] += a->recv_cnt[s * El + j];
		R += a->rows[j];
	}
	a->R = R;
	if (tr_moe_grow_rows(a, R, D, De))
		return tr_model_fail(m, "out of memory for %d expert rows", R);
	tr_real *xsend = tr_model_scratch(m, ((size_t)Nk + 2 * (size_t)R + (size_t)N) * D + (size_t)Nk);
	if (!xsend)
		return tr_model_fail(m, "out of memory for the expert exchange");
	tr_real *xrecv = xsend + (size_t)Nk * D, *ye = xrecv + (size_t)R * D, *ysum = ye + (size_t)R * D;
	tr_real *gsend = ysum + (size_t)N * D;

	be->permute_forward(xsend, x, a->src_tok, Nk, D);
	/* the rows of one token are equal: keyed by token, they cross to a node once (rail mode) */
	if (exchange(m, xsend, sb, so, xrecv, rb, ro, a->src_tok, N))
		return tr_model_fail(m, "expert dispatch: %s", ep_error(m));
	/* each row's gate goes with it: the expert side weights its output before the sums */
	be->permute_scatter(gsend, a->gates, a->pos, Nk, 1);
	if (exchange_scalars(m, gsend, sb, so, a->grecv, rb, ro))
		return tr_model_fail(m, "expert gates: %s", ep_error(m));

	/* received rows are [source][local expert]; the experts want [local expert][source] */
	int srcstart[P];
	for (int s = 0, o = 0; s < P; s++) {
		srcstart[s] = o;
		for (int j = 0; j < El; j++)
			o += a->recv_cnt[s * El + j];
	}
	int *em_src = a->em_host, *em_inv = a->em_host + a->capR, q = 0;
	for (int j = 0; j < El; j++)
		for (int s = 0; s < P; s++) {
			int base = srcstart[s];
			for (int jj = 0; jj < j; jj++)
				base += a->recv_cnt[s * El + jj];
			for (int r = 0; r < a->recv_cnt[s * El + j]; r++, q++)
				em_src[q] = base + r, em_inv[base + r] = q;
		}
	be->upload(a->em_src, em_src, sizeof(int) * (size_t)R);
	be->upload(a->em_inv, em_inv, sizeof(int) * (size_t)R);
	be->permute_forward(a->xe, xrecv, a->em_src, R, D);

	tr_real *ew = m->params[TR_SEG_EXPERT] + (size_t)l * m->moe_expert_elems;
	tr_ffn_forward(be, ye, a->h1e, a->h3e, a->ge, a->xe, ew, ew + (size_t)De * D, ew + 2 * (size_t)De * D,
		       m->expert_elems, a->rows, El, D, De);

	/* outputs in received order (kept for the backward), times their gates, summed per token */
	be->permute_forward(a->yrow, ye, a->em_inv, R, D);
	be->zero(xrecv, sizeof(tr_real) * (size_t)R * D);
	be->unpermute_forward(xrecv, a->yrow, a->ident, a->grecv, R, 1, D);
	if (combine(m, xrecv, rb, ro, ysum, sb, so, a->src_tok, N))
		return tr_model_fail(m, "expert combine: %s", ep_error(m));
	m->rows_sent += xf.rows_out + xf.rows_back;
	be->add(y, y, ysum, (size_t)N * D);
	return 0;
}

int tr_moe_backward(struct tr_model *m, int l, int layer, tr_real *dx, const tr_real *dy, const tr_real *x, int N)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	struct tr_moe_act *a = m->act[layer].moe;
	const struct tr_layer_w *w = &m->lw[layer];
	const struct tr_layer_w *g = &m->lg[layer];
	int E = c->n_experts, k = c->top_k, D = c->d_model, De = c->d_expert, El = m->n_local, P = m->ep_size;
	int Nk = N * k, R = a->R, one = N;

	size_t nd = (size_t)Nk * D + 3 * (size_t)R * D + 2 * (size_t)Nk + (size_t)R + (size_t)N * E;
	size_t nffn = 3 * (size_t)R * De;
	if (3 * (size_t)N * c->d_ff > nffn)
		nffn = 3 * (size_t)N * c->d_ff;
	tr_real *dsend = tr_model_scratch(m, nd + nffn);
	if (!dsend)
		return tr_model_fail(m, "out of memory for the expert exchange");
	tr_real *drecv = dsend + (size_t)Nk * D, *dyr = drecv + (size_t)R * D, *dye = dyr + (size_t)R * D;
	tr_real *dgates = dye + (size_t)R * D, *dgs = dgates + Nk, *dgr = dgs + Nk, *dlogits = dgr + R;
	tr_real *fscr = dlogits + (size_t)N * E;

	tr_ffn_backward(be, dx, g->w1, g->w3, g->w2, dy, x, a->sh_h1, a->sh_h3, a->sh_g, w->w1, w->w3, w->w2, 0, &one,
			1, D, c->d_ff, fscr);

	size_t sb[P], so[P], rb[P], ro[P];
	struct xfer xf = { sb, so, rb, ro, 0, 0 };
	xfer_sizes(m, a, &xf);
	/* dy of each token to its experts, keyed like the dispatch */
	be->permute_forward(dsend, dy, a->src_tok, Nk, D);
	if (exchange(m, dsend, sb, so, drecv, rb, ro, a->src_tok, N))
		return tr_model_fail(m, "expert dispatch (backward): %s", ep_error(m));
	/* per received row: d(output) = gate * dy, d(gate) = <dy, output>; the gate gradients go home */
	be->unpermute_backward(dyr, dgr, drecv, a->yrow, a->ident, a->grecv, R, 1, D);
	if (exchange_scalars(m, dgr, rb, ro, dgs, sb, so))
		return tr_model_fail(m, "expert gate gradients: %s", ep_error(m));
	be->permute_forward(dgates, dgs, a->pos, Nk, 1);
	be->permute_forward(dye, dyr, a->em_src, R, D);

	tr_real *dxe = drecv; /* the received rows are consumed */
	be->zero(dxe, sizeof(tr_real) * (size_t)R * D);
	size_t o1 = (size_t)De * D;
	tr_real *ew = m->params[TR_SEG_EXPERT] + (size_t)l * m->moe_expert_elems;
	tr_real *eg = m->grads[TR_SEG_EXPERT] + (size_t)l * m->moe_expert_elems;
	tr_ffn_backward(be, dxe, eg, eg + o1, eg + 2 * o1, dye, a->xe, a->h1e, a->h3e, a->ge, ew, ew + o1, ew + 2 * o1,
			m->expert_elems, a->rows, El, D, De, fscr);
	be->permute_forward(dyr, dxe, a->em_inv, R, D);
	tr_real *dxsum = dsend; /* consumed by the dispatch */
	if (combine(m, dyr, rb, ro, dxsum, sb, so, a->src_tok, N))
		return tr_model_fail(m, "expert combine (backward): %s", ep_error(m));
	m->rows_sent += xf.rows_out + xf.rows_back;
	be->add(dx, dx, dxsum, (size_t)N * D);

	be->router_backward(dlogits, dgates, a->scores, a->idx, N, E, k, c->route_scale);
	be->matmul_backward(dx, g->wr, dlogits, x, w->wr, N, D, E);
	return 0;
}
