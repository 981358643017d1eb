/* moe_graph.c - the MoE layer in graph mode (tr_model_set_graph, moe-train --cuda-graph; EP size 1):
 * the computation of moe.c with every routed row local, so there is no exchange and the routing counts
 * never leave the backend: they drive the device-count grouped GEMM (backend.h expert_matmul_*_dev)
 * over R = N*k rows, a size fixed by the batch, and the step has no host round trip.
 *
 * At EP size 1 the rows moe.c sends are already in expert order (the counting sort) and arrive as they
 * left, so its received-row order, its expert-major order and the send order are one order here: the
 * row p of the sort is the row every buffer below is indexed by.  The combine sums a token's rows in
 * ascending row order, the transport's order (backend.h key_sum).  What moe.c computes at EP size 1,
 * this computes with the same ops, except the expert products (another GEMM kernel on a GPU; the same
 * op on the CPU, where tests/cuda/test_graph_path.c checks the two paths bit for bit). */
#include "model_impl.h"

int tr_moe_forward_graph(struct tr_model *m, int l, int layer, tr_real *y, const tr_real *x, int N)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	struct tr_moe_act *a = m->act[layer].moe;
	const struct tr_layer_w *w = &m->lw[layer];
	int E = c->n_experts, k = c->top_k, D = c->d_model, De = c->d_expert, R = N * k;
	int *cnt = m->dcnt + (size_t)l * E;

	tr_ffn_forward_dev(be, y, a->sh_h1, a->sh_h3, a->sh_g, x, w->w1, w->w3, w->w2, 0, NULL, 1, N, D, c->d_ff);
	be->matmul_forward(a->scores, x, w->wr, N, D, E);
	be->router_forward(a->scores, a->idx, a->gates, a->scores, m->dbias + (size_t)l * E, m->dgroup_of, m->G,
			   c->topk_groups, N, E, k, c->route_scale);
	be->route_plan_dev(cnt, a->pos, a->src_tok, a->idx, R, k, E);
	a->R = R;
	if (tr_moe_grow_rows(a, R, D, De))
		return tr_model_fail(m, "out of memory for %d expert rows", R);
	tr_real *yg = tr_model_scratch(m, ((size_t)R + N) * D);
	if (!yg)
		return tr_model_fail(m, "out of memory for the expert outputs");
	tr_real *ysum = yg + (size_t)R * D;

	/* row p: the input of token src_tok[p], and the gate of its (token, slot) */
	be->permute_forward(a->xe, x, a->src_tok, R, D);
	be->permute_scatter(a->grecv, a->gates, a->pos, R, 1);
	tr_real *ew = m->params[TR_SEG_EXPERT] + (size_t)l * m->moe_expert_elems;
	tr_ffn_forward_dev(be, a->yrow, a->h1e, a->h3e, a->ge, a->xe, ew, ew + (size_t)De * D, ew + 2 * (size_t)De * D,
			   m->expert_elems, cnt, E, R, D, De);
	/* times the gates, summed per token */
	be->zero(yg, sizeof(tr_real) * (size_t)R * D);
	be->unpermute_forward(yg, a->yrow, a->ident, a->grecv, R, 1, D);
	be->key_sum(ysum, yg, a->pos, N, k, D);
	be->add(y, y, ysum, (size_t)N * D);
	return 0;
}

int tr_moe_backward_graph(struct tr_model *m, int l, int layer, tr_real *dx, const tr_real *dy, const tr_real *x,
			  int N)
{
	const struct tr_config *c = &m->cfg;
	const struct tr_backend *be = m->be;
	struct tr_moe_act *a = m->act[layer].moe;
	const struct tr_layer_w *w = &m->lw[layer];
	const struct tr_layer_w *g = &m->lg[layer];
	int E = c->n_experts, k = c->top_k, D = c->d_model, De = c->d_expert, R = N * k;
	int *cnt = m->dcnt + (size_t)l * E;

	size_t nffn = 3 * (size_t)R * De;
	if (3 * (size_t)N * c->d_ff > nffn)
		nffn = 3 * (size_t)N * c->d_ff;
	tr_real *drow = tr_model_scratch(m, 3 * (size_t)R * D + 2 * (size_t)R + (size_t)N * D + (size_t)N * E + nffn);
	if (!drow)
		return tr_model_fail(m, "out of memory for the expert gradients");
	tr_real *dyr = drow + (size_t)R * D, *dxe = dyr + (size_t)R * D, *dgr = dxe + (size_t)R * D, *dgates = dgr + R;
	tr_real *dxsum = dgates + R, *dlogits = dxsum + (size_t)N * D, *fscr = dlogits + (size_t)N * E;

	tr_ffn_backward_dev(be, dx, g->w1, g->w3, g->w2, dy, x, a->sh_h1, a->sh_h3, a->sh_g, w->w1, w->w3, w->w2, 0, NULL,
			    1, N, D, c->d_ff, fscr);
	/* dy of each row's token; d(output) = gate * dy, d(gate) = <dy, output>, the gates' back per slot */
	be->permute_forward(drow, dy, a->src_tok, R, D);
	be->unpermute_backward(dyr, dgr, drow, a->yrow, a->ident, a->grecv, R, 1, D);
	be->permute_forward(dgates, dgr, a->pos, R, 1);

	be->zero(dxe, sizeof(tr_real) * (size_t)R * D);
	size_t o1 = (size_t)De * D;
	tr_real *ew = m->params[TR_SEG_EXPERT] + (size_t)l * m->moe_expert_elems;
	tr_real *eg = m->grads[TR_SEG_EXPERT] + (size_t)l * m->moe_expert_elems;
	tr_ffn_backward_dev(be, dxe, eg, eg + o1, eg + 2 * o1, dyr, a->xe, a->h1e, a->h3e, a->ge, ew, ew + o1, ew + 2 * o1,
			    m->expert_elems, cnt, E, R, D, De, fscr);
	be->key_sum(dxsum, dxe, a->pos, N, k, D);
	be->add(dx, dx, dxsum, (size_t)N * D);

	be->router_backward(dlogits, dgates, a->scores, a->idx, N, E, k, c->route_scale);
	be->matmul_backward(dx, g->wr, dlogits, x, w->wr, N, D, E);
	return 0;
}
