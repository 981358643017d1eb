/* test_gradcheck.c - the model's analytic gradient against central finite differences, for every
 * parameter kind: embedding, attention qkv and output, norms, dense FFN, shared expert, routed experts,
 * router (whose gradient flows only through the gate weights).
 *
 * Built with the model compiled in double (TR_REAL=double), so the finite differences are exact to
 * ~1e-10 and a tolerance of 1e-6 relative (1e-9 absolute for gradients under 1e-3) separates a wrong derivative from rounding.  Group-limited
 * routing is on (3 groups of 4 experts, tokens reach 2 groups, top-3) with a non-zero selection bias,
 * and every finite-difference pair is checked to keep the routing unchanged (top-k is piecewise). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "comm.h"
#include "model_impl.h"
#include "tap.h"

#define H 1e-5
#define TOL 1e-6

static int B = 2, T = 7;
static uint16_t tok[2 * 8];

static double loss_at(struct tr_model *m)
{
	float l;
	/* tr_model_eval returns a float; recompute the mean in double from the per-token losses */
	if (tr_model_eval(m, tok, B, T, &l))
		return NAN;
	double s = 0;
	for (int n = 0; n < B * T; n++)
		s += m->losses[n];
	return s / (B * T);
}

/* routing of every MoE layer, to detect a finite-difference step that flips a top-k choice */
static void routing(struct tr_model *m, int *out)
{
	int nk = B * T * m->cfg.top_k, o = 0;
	for (int l = 0; l < m->cfg.n_layers; l++)
		if (m->act[l].moe) {
			memcpy(out + o, m->act[l].moe->idx, sizeof(int) * nk);
			o += nk;
		}
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return rng;
}

/* checks `count` entries of the tensor p[0..n) against grads at g; returns the worst relative error */
static void check(struct tr_model *m, const char *name, double *p, const double *g, size_t n, int count)
{
	int nr = B * T * m->cfg.top_k * (m->cfg.n_layers - m->cfg.n_dense_layers);
	int *r0 = malloc(sizeof(int) * (nr + 1)), *r1 = malloc(sizeof(int) * (nr + 1));
	double worst = 0, gmax = 0;
	int flips = 0, checked = 0;
	loss_at(m);
	routing(m, r0);
	for (int c = 0; c < count; c++) {
		size_t i = next() % n;
		double keep = p[i];
		p[i] = keep + H;
		double lp = loss_at(m);
		routing(m, r1);
		int same = memcmp(r0, r1, sizeof(int) * nr) == 0;
		p[i] = keep - H;
		double lm = loss_at(m);
		routing(m, r1);
		same &= memcmp(r0, r1, sizeof(int) * nr) == 0;
		p[i] = keep;
		if (!same) {
			flips++;
			continue;
		}
		double num = (lp - lm) / (2 * H), err = fabs(num - g[i]) / fmax(fabs(num) + fabs(g[i]), 1e-3);
		if (err > worst)
			worst = err;
		if (fabs(g[i]) > gmax)
			gmax = fabs(g[i]);
		checked++;
	}
	tap_ok(worst < TOL && checked >= count / 2 && gmax > 1e-9,
	       "%-14s %d entries, worst relative error %.2e (max |grad| %.1e, %d routing flips skipped)",
	       name, checked, worst, gmax, flips);
	free(r0), free(r1);
}

int main(void)
{
	struct tr_config c;
	tr_config_default(&c);
	c.vocab = 32, c.seq_len = 8, c.d_model = 16, c.n_heads = 2, c.n_layers = 3, c.n_dense_layers = 1;
	c.d_ff = 24, c.d_expert = 8, c.n_experts = 12, c.top_k = 3, c.n_groups = 3, c.topk_groups = 2;
	c.route_scale = 2.5f, c.init_std = 0.3f;

	struct tr_comm *world;
	char err[256];
	if (tr_comm_init("self", &world, err, sizeof(err))) {
		printf("Bail out! self transport: %s\n", err);
		return 1;
	}
	struct tr_par par = { world, world, world, 0 };
	struct tr_model *m;
	int rc = tr_model_create(&c, &par, 1234, &m, err, sizeof(err));
	tap_ok(rc == 0, "model created (%s)", rc ? err : "ok");
	if (rc)
		return tap_done();
	/* a selection bias that matters: the same size as the score differences */
	size_t nb;
	double *bias = tr_model_router_bias(m, &nb);
	for (size_t i = 0; i < nb; i++)
		bias[i] = ((double)(next() % 1000) / 1000 - 0.5) * 0.2;
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (uint16_t)(next() % c.vocab);

	float lf;
	rc = tr_model_step(m, tok, B, T, &lf);
	tap_ok(rc == 0 && isfinite(lf), "step: loss %.4f", lf);
	size_t nrep = tr_model_nparams(m, TR_SEG_REPLICATED), nexp = tr_model_nparams(m, TR_SEG_EXPERT);
	double *g0 = malloc(sizeof(double) * nrep), *g1 = malloc(sizeof(double) * nexp);
	memcpy(g0, tr_model_grads(m, TR_SEG_REPLICATED), sizeof(double) * nrep);
	memcpy(g1, tr_model_grads(m, TR_SEG_EXPERT), sizeof(double) * nexp);
	double *p0 = tr_model_params(m, TR_SEG_REPLICATED), *p1 = tr_model_params(m, TR_SEG_EXPERT);
#define G0(ptr) (g0 + ((ptr) - p0))
	size_t D = c.d_model, F = c.d_ff, De = c.d_expert;
	struct tr_layer_w *dl = &m->lw[0], *ml = &m->lw[2];
	check(m, "embedding", m->wte, G0(m->wte), (size_t)c.vocab * D, 24);
	check(m, "attn qkv (L0)", dl->wqkv, G0(dl->wqkv), 3 * D * D, 24);
	check(m, "attn qkv (L2)", ml->wqkv, G0(ml->wqkv), 3 * D * D, 24);
	check(m, "attn out", ml->wo, G0(ml->wo), D * D, 18);
	check(m, "norm ln1", ml->ln1, G0(ml->ln1), D, 12);
	check(m, "norm ln2", dl->ln2, G0(dl->ln2), D, 12);
	check(m, "norm final", m->lnf, G0(m->lnf), D, 12);
	check(m, "dense w1", dl->w1, G0(dl->w1), F * D, 15);
	check(m, "dense w3", dl->w3, G0(dl->w3), F * D, 15);
	check(m, "dense w2", dl->w2, G0(dl->w2), D * F, 15);
	check(m, "shared w1", ml->w1, G0(ml->w1), F * D, 15);
	check(m, "shared w2", ml->w2, G0(ml->w2), D * F, 15);
	check(m, "router (L1)", m->lw[1].wr, G0(m->lw[1].wr), (size_t)c.n_experts * D, 30);
	check(m, "router (L2)", ml->wr, G0(ml->wr), (size_t)c.n_experts * D, 30);
	/* routed experts: w1 | w3 | w2 of every layer of every expert */
	for (int part = 0; part < 3; part++) {
		const char *nm[] = { "expert w1", "expert w3", "expert w2" };
		for (int trial = 0; trial < 2; trial++) {
			size_t e, l;
			do /* an expert that got tokens in this layer */
				e = next() % c.n_experts, l = next() % 2;
			while (m->load_local[l * c.n_experts + e] == 0);
			size_t o = e * m->expert_elems + l * m->moe_expert_elems + part * De * D;
			check(m, nm[part], p1 + o, g1 + o, De * D, 4);
		}
	}
	/* gradients are overwritten, not accumulated, by a second step, and reproducible bit for bit */
	rc = tr_model_step(m, tok, B, T, &lf);
	int same = rc == 0 && memcmp(g0, tr_model_grads(m, TR_SEG_REPLICATED), sizeof(double) * nrep) == 0 &&
		   memcmp(g1, tr_model_grads(m, TR_SEG_EXPERT), sizeof(double) * nexp) == 0;
	tap_ok(same, "a second step on the same batch gives bit-identical gradients (overwritten, deterministic)");
	free(g0), free(g1);
	tr_model_free(m);
	tr_comm_free(world);
	return tap_done();
}
