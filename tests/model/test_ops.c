/* test_ops.c - behaviour of the fp32 ops and model that the trainer relies on beyond the gradient check:
 * the router's selection rules (bias only selects, group limit, gates from unbiased scores), the
 * permute/combine round trip, causality, RoPE invertibility, results independent of the thread count,
 * a batch split over "ranks" giving the same gradient and routing counts, and the bias update. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "comm.h"
#include "model.h"
#include "ops.h"
#include "tap.h"

static uint64_t rng = 0x243F6A8885A308D3ull;
static float frand(void) /* uniform in [-1, 1) */
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (float)((rng >> 40) / 8388608.0 - 1.0);
}

static float logit(float s)
{
	return logf(s / (1 - s));
}

static void test_router(void)
{
	/* groups {0,1} {2,3} {4,5} {6,7}; top-2 sums 1.0, 1.2, 1.1, 0.2: expert 0 is the best single expert,
	 * but its group is not among the best two */
	float s[8] = { 0.95f, 0.05f, 0.6f, 0.6f, 0.55f, 0.55f, 0.1f, 0.1f }, lg[8], sc[8], gates[2], bias[8] = { 0 };
	int group_of[8] = { 0, 0, 1, 1, 2, 2, 3, 3 }, idx[2];
	for (int e = 0; e < 8; e++)
		lg[e] = logit(s[e]);
	tr_router_forward(sc, idx, gates, lg, bias, group_of, 4, 0, 1, 8, 2, 1.0f);
	tap_ok(idx[0] == 0 && idx[1] == 2, "router without group limit picks the top-2 experts (got %d,%d)", idx[0], idx[1]);
	tr_router_forward(sc, idx, gates, lg, bias, group_of, 4, 2, 1, 8, 2, 1.0f);
	tap_ok(idx[0] == 2 && idx[1] == 3, "group limit M=2 keeps groups by top-2 sum, drops the best expert's group (got %d,%d)",
	       idx[0], idx[1]);
	tap_ok(fabsf(gates[0] - 0.5f) < 1e-6f && fabsf(gates[1] - 0.5f) < 1e-6f, "gates normalised over the chosen k");
	bias[4] = 0.2f; /* 0.55 + 0.2 beats 0.6 for selection only */
	tr_router_forward(sc, idx, gates, lg, bias, group_of, 4, 2, 1, 8, 2, 2.5f);
	float want0 = 2.5f * 0.55f / (0.55f + 0.6f), want1 = 2.5f * 0.6f / (0.55f + 0.6f);
	tap_ok(idx[0] == 4 && idx[1] == 2 && fabsf(gates[0] - want0) < 1e-5f && fabsf(gates[1] - want1) < 1e-5f,
	       "bias changes the selection (got %d,%d) but gates come from unbiased scores x route_scale (%.4f %.4f)",
	       idx[0], idx[1], gates[0], gates[1]);
	tap_ok(fabsf(sc[0] - 0.95f) < 1e-6f, "scores are the sigmoid of the logits");
	bias[4] = 0, bias[0] = 1.0f; /* biasing a dropped group lifts it: group 0 now sums 1.95 + 0.05 */
	tr_router_forward(sc, idx, gates, lg, bias, group_of, 4, 2, 1, 8, 2, 1.0f);
	tap_ok(idx[0] == 0 && idx[1] == 2, "group scores use the biased scores (got %d,%d)", idx[0], idx[1]);
}

/* many random tokens against a sort-based reference of the selection rules */
static int cmp_desc(const void *a, const void *b)
{
	const float *x = a, *y = b; /* pairs (score, id): score descending, then id ascending */
	return x[0] != y[0] ? (x[0] < y[0] ? 1 : -1) : (x[1] > y[1]) - (x[1] < y[1]);
}

static void test_router_random(void)
{
	enum { N = 300, E = 16, G = 4, M = 2, K = 4 };
	float lg[N * E], sc[N * E], gates[N * K], bias[E];
	int idx[N * K], group_of[E], bad = 0, spread = 0;
	for (int e = 0; e < E; e++)
		group_of[e] = e / (E / G), bias[e] = 0.3f * frand();
	for (int i = 0; i < N * E; i++)
		lg[i] = 3 * frand();
	tr_router_forward(sc, idx, gates, lg, bias, group_of, G, M, N, E, K, 1.5f);
	for (int n = 0; n < N; n++) {
		float sel[E], gs[G][2], cand[E][2];
		for (int e = 0; e < E; e++)
			sel[e] = sc[n * E + e] + bias[e];
		for (int g = 0; g < G; g++) {
			float pair[E / G][2];
			for (int i = 0; i < E / G; i++)
				pair[i][0] = sel[g * (E / G) + i], pair[i][1] = (float)i;
			qsort(pair, E / G, sizeof(pair[0]), cmp_desc);
			gs[g][0] = pair[0][0] + pair[1][0], gs[g][1] = (float)g;
		}
		qsort(gs, G, sizeof(gs[0]), cmp_desc);
		int nc = 0;
		for (int e = 0; e < E; e++)
			for (int m = 0; m < M; m++)
				if ((int)gs[m][1] == group_of[e])
					cand[nc][0] = sel[e], cand[nc][1] = (float)e, nc++;
		qsort(cand, nc, sizeof(cand[0]), cmp_desc);
		double S = 0;
		int groups_hit = 0;
		for (int k = 0; k < K; k++)
			S += sc[n * E + (int)cand[k][1]];
		for (int k = 0; k < K; k++) {
			bad |= idx[n * K + k] != (int)cand[k][1];
			bad |= fabs(gates[n * K + k] - 1.5 * sc[n * E + (int)cand[k][1]] / S) > 1e-5;
		}
		for (int g = 0; g < G; g++) {
			int hit = 0;
			for (int k = 0; k < K; k++)
				hit |= group_of[idx[n * K + k]] == g;
			groups_hit += hit;
		}
		bad |= groups_hit > M;
		/* would the unlimited top-k have left the kept groups? */
		float all[E][2];
		for (int e = 0; e < E; e++)
			all[e][0] = sel[e], all[e][1] = (float)e;
		qsort(all, E, sizeof(all[0]), cmp_desc);
		int outside = 0;
		for (int k = 0; k < K; k++)
			outside |= group_of[(int)all[k][1]] != (int)gs[0][1] && group_of[(int)all[k][1]] != (int)gs[1][1];
		spread += outside;
	}
	tap_ok(!bad, "router on %d random tokens matches a sort-based reference; no token reaches more than %d of %d groups",
	       N, M, G);
	tap_ok(spread > N / 4, "group limit exercised: for %d of %d tokens the unlimited top-k would leave the kept groups",
	       spread, N);
}

static void test_dense_only(struct tr_comm *w)
{
	struct tr_config c;
	tr_config_default(&c);
	c.vocab = 64, c.seq_len = 8, c.d_model = 16, c.n_heads = 2, c.n_layers = 2, c.n_dense_layers = 2, c.d_ff = 32;
	struct tr_par par = { w, w, w, 0 };
	struct tr_model *m;
	char err[256];
	uint16_t tok[2 * 9];
	for (int i = 0; i < 18; i++)
		tok[i] = (uint16_t)(i * 5 % 64);
	float loss = 0;
	int rc = tr_model_create(&c, &par, 1, &m, err, sizeof(err));
	rc = rc ? rc : tr_model_step(m, tok, 2, 8, &loss);
	rc = rc ? rc : tr_model_reduce_grads(m);
	rc = rc ? rc : tr_model_update_bias(m);
	struct tr_moe_stats st = { 0 };
	if (!rc)
		tr_model_stats(m, &st);
	tap_ok(!rc && tr_model_nparams(m, TR_SEG_EXPERT) == 0 && st.n_moe_layers == 0 && loss > 0,
	       "a model without MoE layers (n_dense_layers = n_layers) trains: loss %.3f (%s)", loss, rc ? err : "ok");
	if (!rc)
		tr_model_free(m);
}

static void test_permute(void)
{
	enum { N = 5, K = 2, D = 3 };
	float x[N * D], rows[N * K * D], y[N * D], g[N * K], dy[N * D], drows[N * K * D], dg[N * K], dx[N * D];
	int pos[N * K], src[N * K];
	/* send order: reverse of (token, slot) order */
	for (int i = 0; i < N * K; i++)
		pos[i] = N * K - 1 - i, src[N * K - 1 - i] = i / K, g[i] = frand();
	for (int i = 0; i < N * D; i++)
		x[i] = frand(), dy[i] = frand();
	tr_permute_forward(rows, x, src, N * K, D);
	memset(y, 0, sizeof(y));
	tr_unpermute_forward(y, rows, pos, g, N, K, D);
	double err = 0;
	for (int t = 0; t < N; t++)
		for (int d = 0; d < D; d++)
			err = fmax(err, fabs(y[t * D + d] - (g[t * K] + g[t * K + 1]) * x[t * D + d]));
	tap_ok(err < 1e-6, "permute then gate-weighted combine returns sum(gates) * x (err %.1e)", err);
	tr_unpermute_backward(drows, dg, dy, rows, pos, g, N, K, D);
	err = 0;
	for (int t = 0; t < N; t++)
		for (int s = 0; s < K; s++) {
			double dot = 0;
			for (int d = 0; d < D; d++) {
				dot += dy[t * D + d] * x[t * D + d];
				err = fmax(err, fabs(drows[pos[t * K + s] * D + d] - g[t * K + s] * dy[t * D + d]));
			}
			err = fmax(err, fabs(dg[t * K + s] - dot));
		}
	tap_ok(err < 1e-5, "combine backward: row gradients gate*dy, gate gradients <dy, row> (err %.1e)", err);
	memset(dx, 0, sizeof(dx));
	tr_permute_backward(dx, drows, pos, N, K, D);
	err = 0;
	for (int t = 0; t < N; t++)
		for (int d = 0; d < D; d++)
			err = fmax(err, fabs(dx[t * D + d] - (g[t * K] + g[t * K + 1]) * dy[t * D + d]));
	tap_ok(err < 1e-5, "permute backward sums each token's rows (err %.1e)", err);
}

static void test_attention_rope(void)
{
	enum { B = 1, T = 6, C = 8, NH = 2 };
	float qkv[B * T * 3 * C], out1[B * T * C], out2[B * T * C], att[B * NH * T * T], cs[T * (C / NH)];
	for (int i = 0; i < B * T * 3 * C; i++)
		qkv[i] = frand();
	tr_attention_forward(out1, att, qkv, B, T, C, NH);
	for (int i = 3 * 3 * C; i < B * T * 3 * C; i++) /* change positions 3.. */
		qkv[i] += 1.0f;
	tr_attention_forward(out2, att, qkv, B, T, C, NH);
	tap_ok(memcmp(out1, out2, sizeof(float) * 3 * C) == 0 && memcmp(out1, out2, sizeof(out1)) != 0,
	       "attention is causal: positions 0-2 do not see later tokens");
	double rowsum = 0;
	for (int t = 0; t < T; t++)
		rowsum += att[(1 * T + 5) * 1 + t]; /* head 1, query 5 */
	tap_ok(fabs(rowsum - 1) < 1e-5, "attention rows are probabilities (sum %.6f)", rowsum);

	float x[T * C], x0[T * C];
	for (int i = 0; i < T * C; i++)
		x[i] = x0[i] = frand();
	tr_rope_table(cs, T, C / NH, 10000.0f);
	tr_rope_forward(x, cs, 1, T, C, NH, C / NH);
	double n0 = 0, n1 = 0, back = 0;
	for (int i = 0; i < T * C; i++)
		n0 += x0[i] * x0[i], n1 += x[i] * x[i];
	tap_ok(fabs(n0 - n1) < 1e-4 && memcmp(x, x0, sizeof(float) * C) == 0 && memcmp(x, x0, sizeof(x)) != 0,
	       "RoPE rotates (norm kept, position 0 unchanged, others moved)");
	tr_rope_backward(x, cs, 1, T, C, NH, C / NH);
	for (int i = 0; i < T * C; i++)
		back = fmax(back, fabs(x[i] - x0[i]));
	tap_ok(back < 1e-6, "RoPE backward is the inverse rotation (err %.1e)", back);
}

static void small_config(struct tr_config *c)
{
	tr_config_default(c);
	c->vocab = 64, c->seq_len = 16, c->d_model = 32, c->n_heads = 4, c->n_layers = 3, c->n_dense_layers = 1;
	c->d_ff = 48, c->d_expert = 16, c->n_experts = 8, c->top_k = 2, c->n_groups = 4, c->topk_groups = 2;
	c->init_std = 0.1f, c->bias_gamma = 0.01f;
}

static void set_threads(int n)
{
#ifdef _OPENMP
	omp_set_num_threads(n);
#else
	(void)n;
#endif
}

static void test_model(struct tr_comm *w)
{
	struct tr_config c;
	small_config(&c);
	struct tr_par par = { w, w, w, 0 };
	struct tr_model *m = NULL, *m2 = NULL;
	char err[256];
	int rc = tr_model_create(&c, &par, 7, &m, err, sizeof(err));
	tap_ok(rc == 0, "fp32 model created (%s)", rc ? err : "ok");
	if (rc)
		return;
	enum { B = 4, T = 12 };
	uint16_t tok[B * (T + 1)];
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (uint16_t)("the quick brown fox jumps over the lazy dog. "[i % 45] % c.vocab);
	size_t nr = tr_model_nparams(m, TR_SEG_REPLICATED), ne = tr_model_nparams(m, TR_SEG_EXPERT);
	float *gr = malloc(sizeof(float) * nr), *ge = malloc(sizeof(float) * ne);
	float l1, l2, la, lb;

	/* the norm gains are where the header says: 2L+1 ranges of d_model ones at initialisation */
	size_t goff[16], ng = tr_model_norm_gains(m, goff, 16);
	int gains_ok = ng == (size_t)(2 * c.n_layers + 1);
	for (size_t i = 0; i < ng && gains_ok; i++)
		for (int d = 0; d < c.d_model; d++)
			gains_ok &= goff[i] + c.d_model <= nr && tr_model_params(m, TR_SEG_REPLICATED)[goff[i] + d] == 1.0f;
	tap_ok(gains_ok, "tr_model_norm_gains: %zu ranges of d_model gains, all 1 at initialisation", ng);

	/* thread count must not change a single bit */
	set_threads(1);
	tr_model_step(m, tok, B, T, &l1);
	memcpy(gr, tr_model_grads(m, TR_SEG_REPLICATED), sizeof(float) * nr);
	memcpy(ge, tr_model_grads(m, TR_SEG_EXPERT), sizeof(float) * ne);
	set_threads(2);
	tr_model_step(m, tok, B, T, &l2);
	tap_ok(l1 == l2 && !memcmp(gr, tr_model_grads(m, TR_SEG_REPLICATED), sizeof(float) * nr) &&
	       !memcmp(ge, tr_model_grads(m, TR_SEG_EXPERT), sizeof(float) * ne),
	       "1 and 2 OpenMP threads give bit-identical loss and gradients");
	tap_ok(fabsf(l1 - logf((float)c.vocab)) < 0.5f, "initial loss %.3f near ln(vocab) %.3f", l1, logf((float)c.vocab));

	/* the batch split in two halves (what two ranks see): mean of the halves' gradients = full gradient */
	rc = tr_model_update_bias(m); /* loads of the full batch, before the bias moves */
	struct tr_moe_stats st;
	tr_model_stats(m, &st);
	int nl = st.n_moe_layers * st.n_experts;
	double *full = malloc(sizeof(double) * nl), *half = calloc(nl, sizeof(double));
	memcpy(full, st.load, sizeof(double) * nl);
	tap_ok(rc == 0 && st.tokens_routed == (double)B * T * c.top_k * st.n_moe_layers,
	       "loads count every token-expert assignment (%.0f)", st.tokens_routed);
	struct tr_config c0 = c;
	c0.bias_gamma = 0; /* keep the bias at zero across the halves so their routing matches the full batch */
	rc = tr_model_create(&c0, &par, 7, &m2, err, sizeof(err));
	tr_model_step(m2, tok, B, T, &l1);
	memcpy(gr, tr_model_grads(m2, TR_SEG_REPLICATED), sizeof(float) * nr);
	memcpy(ge, tr_model_grads(m2, TR_SEG_EXPERT), sizeof(float) * ne);
	float *hr = calloc(nr, sizeof(float)), *he = calloc(ne, sizeof(float));
	for (int h = 0; h < 2; h++) {
		tr_model_step(m2, tok + h * (B / 2) * (T + 1), B / 2, T, h ? &lb : &la);
		for (size_t i = 0; i < nr; i++)
			hr[i] += tr_model_grads(m2, TR_SEG_REPLICATED)[i] / 2;
		for (size_t i = 0; i < ne; i++)
			he[i] += tr_model_grads(m2, TR_SEG_EXPERT)[i] / 2;
		tr_model_update_bias(m2);
		tr_model_stats(m2, &st);
		for (int i = 0; i < nl; i++)
			half[i] += st.load[i];
	}
	double gmax = 0, dmax = 0;
	for (size_t i = 0; i < nr; i++)
		gmax = fmax(gmax, fabs(gr[i])), dmax = fmax(dmax, fabs(gr[i] - hr[i]));
	for (size_t i = 0; i < ne; i++)
		gmax = fmax(gmax, fabs(ge[i])), dmax = fmax(dmax, fabs(ge[i] - he[i]));
	tap_ok(fabs((la + lb) / 2 - l1) < 1e-5 * l1 && dmax < 1e-5 * gmax,
	       "two half batches average to the full batch: loss %.6f vs %.6f, grad diff %.1e of max %.1e",
	       (la + lb) / 2, l1, dmax, gmax);
	tap_ok(memcmp(full, half, sizeof(double) * nl) == 0, "expert loads of the halves add up to the full batch's");

	/* aux-loss-free update: overloaded experts' bias goes down by gamma, underloaded up */
	size_t nb;
	float *bias = tr_model_router_bias(m, &nb);
	int okb = 1;
	for (int l = 0; l < st.n_moe_layers; l++) {
		double mean = 0;
		for (int e = 0; e < st.n_experts; e++)
			mean += full[l * st.n_experts + e] / st.n_experts;
		for (int e = 0; e < st.n_experts; e++) {
			double ld = full[l * st.n_experts + e];
			float want = ld > mean ? -c.bias_gamma : ld < mean ? c.bias_gamma : 0;
			okb &= bias[l * st.n_experts + e] == want;
		}
	}
	tap_ok(okb && nb == (size_t)nl, "bias += gamma * sign(mean load - load) per expert and layer");
	free(full), free(half), free(hr), free(he), free(gr), free(ge);
	tr_model_free(m);
	tr_model_free(m2);
}

static void test_config_errors(struct tr_comm *w)
{
	struct tr_config c;
	char err[256] = "";
	small_config(&c);
	c.n_heads = 3;
	tap_ok(tr_config_check(&c, err, sizeof(err)) == -1 && strstr(err, "n_heads"), "bad head split rejected: %s", err);
	small_config(&c);
	c.topk_groups = 1, c.top_k = 3; /* one group of 2 experts cannot give 3 */
	tap_ok(tr_config_check(&c, err, sizeof(err)) == -1 && strstr(err, "top_k"), "unreachable top_k rejected: %s", err);
	small_config(&c);
	c.n_groups = 3;
	tap_ok(tr_config_check(&c, err, sizeof(err)) == -1 && strstr(err, "n_groups"), "groups must divide experts: %s", err);
	struct tr_model *m;
	struct tr_par par = { w, w, w, 0 };
	uint16_t tok[2 * 17] = { 0 };
	float loss;
	small_config(&c);
	tr_model_create(&c, &par, 1, &m, err, sizeof(err));
	tok[5] = 300;
	tap_ok(tr_model_step(m, tok, 2, 16, &loss) == -1 && strstr(tr_model_error(m), "vocabulary"),
	       "token outside the vocabulary rejected: %s", tr_model_error(m));
	tap_ok(tr_model_step(m, tok, 1, 17, &loss) == -1 && strstr(tr_model_error(m), "seq_len"),
	       "T beyond seq_len rejected: %s", tr_model_error(m));
	tr_model_free(m);
}

int main(void)
{
	struct tr_comm *w;
	char err[256];
	if (tr_comm_init("self", &w, err, sizeof(err))) {
		printf("Bail out! self transport: %s\n", err);
		return 1;
	}
	test_router();
	test_router_random();
	test_dense_only(w);
	test_permute();
	test_attention_rope();
	test_model(w);
	test_config_errors(w);
	tr_comm_free(w);
	return tap_done();
}
