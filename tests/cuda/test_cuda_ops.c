/* test_cuda_ops.c - every op of the CUDA backend, forward and backward, against the CPU reference on the
 * same random inputs (backend.h, ops.h).  Skipped ("no GPU") where the CUDA backend is not built or no GPU
 * can be opened.
 *
 * Error measure: max over elements of |gpu - cpu| / max(|cpu|, floor), floor = 1e-3 x max |cpu| of the
 * tensor (values near zero are judged against the tensor's scale, not against themselves).  Bounds:
 *   1e-5  ops whose every value is computed as on the CPU (elementwise, gathers, column sums in row
 *         order, the router's per-token loop, AdamW): only libm vs CUDA math in double can differ;
 *   1e-5  row reductions (RMSNorm, softmax + cross-entropy, combine gate dot): fp32 sums of <= 2048 terms
 *         in another order stay below 1e-6 relative to the row scale;
 *   1e-4  GEMM-based ops (matmul, grouped experts, attention): cuBLAS sums K <= 1024 products in another
 *         order (tree, split-K): error grows like sqrt(K) eps relative to the row scale;
 *   bf16 (--dtype bf16, GEMMs only): 3e-2 against the fp32 CPU result: operands rounded to 8 mantissa
 *         bits (2^-9 relative each), fp32 accumulation, the same bound llm.c's test_gpt2.cu uses for its
 *         bf16 activations and gradients (1e-2 .. 1e-1 absolute on O(1) values).
 * Integer outputs (router choices, counting-sort placement) must be equal. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "ops.h"
#include "optim.h"
#include "tap.h"
#include "gpu_test.h"

static const struct tr_backend *cpu = &tr_backend_cpu, *gpu;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static int bf16;

static float frand(void) /* uniform in [-1, 1) */
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (float)((rng >> 40) / 8388608.0 - 1.0);
}

static float *rnd(size_t n, float scale)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	for (size_t i = 0; i < n; i++)
		p[i] = frand() * scale;
	return p;
}

static void *up(const void *h, size_t bytes)
{
	void *d = gpu->alloc(bytes);
	if (d)
		gpu->upload(d, h, bytes);
	return d;
}

static void check(const char *what, const void *d, const float *c, size_t n, double tol)
{
	cmp_check(gpu, what, d, c, n, tol);
}

static double gemm_tol(void)
{
	return bf16 ? 3e-2 : 1e-4;
}

/* off: every operand `off` floats past an allocation's start (operands at row offsets of a buffer, as the
 * MoE layer's scratch places them; cuBLASLt must not assume 256-byte alignment) */
static void test_matmul(int N, int C, int OC, int off)
{
	float *x = rnd((size_t)N * C, 1), *w = rnd((size_t)OC * C, 0.1f), *dy = rnd((size_t)N * OC, 1);
	float *y = calloc((size_t)N * OC, 4), *dx = rnd((size_t)N * C, 1), *dw = rnd((size_t)OC * C, 1);
	float *bx = gpu->alloc(4ul * (N * C + off)), *bw = gpu->alloc(4ul * (OC * C + off));
	float *bdy = gpu->alloc(4ul * (N * OC + off)), *by = gpu->alloc(4ul * (N * OC + off));
	float *bdx = gpu->alloc(4ul * (N * C + off)), *bdw = gpu->alloc(4ul * (OC * C + off));
	float *gx = bx + off, *gw = bw + off, *gdy = bdy + off, *gy = by + off, *gdx = bdx + off, *gdw = bdw + off;
	gpu->upload(gx, x, 4ul * N * C), gpu->upload(gw, w, 4ul * OC * C), gpu->upload(gdy, dy, 4ul * N * OC);
	gpu->upload(gdx, dx, 4ul * N * C), gpu->upload(gdw, dw, 4ul * OC * C);
	cpu->matmul_forward(y, x, w, N, C, OC);
	gpu->matmul_forward(gy, gx, gw, N, C, OC);
	char what[80];
	snprintf(what, sizeof(what), "matmul fwd %dx%dx%d%s", N, C, OC, off ? " (operands 4 bytes off alignment)" : "");
	check(what, gy, y, (size_t)N * OC, gemm_tol());
	cpu->matmul_backward(dx, dw, dy, x, w, N, C, OC);
	gpu->matmul_backward(gdx, gdw, gdy, gx, gw, N, C, OC);
	snprintf(what, sizeof(what), "matmul bwd dx (accumulating)%s", off ? ", misaligned" : "");
	check(what, gdx, dx, (size_t)N * C, gemm_tol());
	snprintf(what, sizeof(what), "matmul bwd dw (accumulating)%s", off ? ", misaligned" : "");
	check(what, gdw, dw, (size_t)OC * C, gemm_tol());
	free(x), free(w), free(dy), free(y), free(dx), free(dw);
	gpu->free(bx), gpu->free(bw), gpu->free(bdy), gpu->free(by), gpu->free(bdx), gpu->free(bdw);
}

static void test_experts(void)
{
	int El = 4, C = 64, OC = 48, rows[4] = { 37, 0, 5, 90 }, R = 132;
	size_t ws = (size_t)OC * C * 3; /* experts spaced like the expert segment (other weights between) */
	float *x = rnd((size_t)R * C, 1), *w = rnd(ws * El, 0.1f), *dy = rnd((size_t)R * OC, 1);
	float *y = calloc((size_t)R * OC, 4), *dx = rnd((size_t)R * C, 1), *dw = rnd(ws * El, 1);
	float *gx = up(x, 4ul * R * C), *gw = up(w, 4 * ws * El), *gdy = up(dy, 4ul * R * OC);
	float *gy = gpu->alloc(4ul * R * OC), *gdx = up(dx, 4ul * R * C), *gdw = up(dw, 4 * ws * El);
	cpu->expert_matmul_forward(y, x, w, ws, rows, El, C, OC);
	gpu->expert_matmul_forward(gy, gx, gw, ws, rows, El, C, OC);
	check("grouped experts fwd (4, one empty)", gy, y, (size_t)R * OC, gemm_tol());
	cpu->expert_matmul_backward(dx, dw, dy, x, w, ws, rows, El, C, OC);
	gpu->expert_matmul_backward(gdx, gdw, gdy, gx, gw, ws, rows, El, C, OC);
	check("grouped experts bwd dx", gdx, dx, (size_t)R * C, gemm_tol());
	check("grouped experts bwd dw (gaps untouched)", gdw, dw, ws * El, gemm_tol());
	free(x), free(w), free(dy), free(y), free(dx), free(dw);
	gpu->free(gx), gpu->free(gw), gpu->free(gdy), gpu->free(gy), gpu->free(gdx), gpu->free(gdw);
}

/* bf16 to nearest even, on the host */
static float bf16_round(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
	memcpy(&f, &u, 4);
	return f;
}

/* bf16 mode really rounds the operands, on every call (not only the first): the GPU's grouped product
 * equals the CPU's fp32 product of the rounded operands within the fp32 bound, called twice */
static void test_experts_rounded(void)
{
	int El = 3, C = 64, OC = 40, rows[3] = { 21, 50, 9 }, R = 80;
	size_t ws = (size_t)OC * C;
	float *x = rnd((size_t)R * C, 1), *w = rnd(ws * El, 0.1f), *y = calloc((size_t)R * OC, 4);
	float *xr = malloc(4ul * R * C), *wr = malloc(4 * ws * El);
	for (size_t i = 0; i < (size_t)R * C; i++)
		xr[i] = bf16_round(x[i]);
	for (size_t i = 0; i < ws * El; i++)
		wr[i] = bf16_round(w[i]);
	cpu->expert_matmul_forward(y, xr, wr, ws, rows, El, C, OC);
	float *gx = up(x, 4ul * R * C), *gw = up(w, 4 * ws * El), *gy = gpu->alloc(4ul * R * OC);
	for (int call = 1; call <= 2; call++) {
		gpu->expert_matmul_forward(gy, gx, gw, ws, rows, El, C, OC);
		char what[80];
		snprintf(what, sizeof(what), "bf16 grouped experts fwd = fp32 product of rounded operands (call %d)", call);
		check(what, gy, y, (size_t)R * OC, 1e-4);
	}
	free(x), free(w), free(y), free(xr), free(wr);
	gpu->free(gx), gpu->free(gw), gpu->free(gy);
}

static void test_rows(void)
{
	int N = 96, D = 160, V = 256;
	size_t ND = (size_t)N * D;
	/* RMSNorm */
	float *x = rnd(ND, 2), *w = rnd(D, 1), *dy = rnd(ND, 1), *y = calloc(ND, 4), *rs = calloc(N, 4);
	float *dx = rnd(ND, 1), *dw = rnd(D, 1);
	float *gx = up(x, 4 * ND), *gw = up(w, 4ul * D), *gdy = up(dy, 4 * ND), *gy = gpu->alloc(4 * ND);
	float *grs = gpu->alloc(4ul * N), *gdx = up(dx, 4 * ND), *gdw = up(dw, 4ul * D);
	cpu->rmsnorm_forward(y, rs, x, w, N, D);
	gpu->rmsnorm_forward(gy, grs, gx, gw, N, D);
	check("rmsnorm fwd", gy, y, ND, 1e-5);
	check("rmsnorm fwd rstd", grs, rs, N, 1e-5);
	cpu->rmsnorm_backward(dx, dw, dy, x, w, rs, N, D);
	gpu->rmsnorm_backward(gdx, gdw, gdy, gx, gw, grs, N, D);
	check("rmsnorm bwd dx", gdx, dx, ND, 1e-5);
	check("rmsnorm bwd dweight (row order)", gdw, dw, D, 1e-5);
	/* SwiGLU */
	float *h3 = rnd(ND, 2), *dh1 = calloc(ND, 4), *dh3 = calloc(ND, 4), *gh3 = up(h3, 4 * ND);
	cpu->swiglu_forward(y, x, h3, ND);
	gpu->swiglu_forward(gy, gx, gh3, ND);
	check("swiglu fwd", gy, y, ND, 1e-5);
	cpu->swiglu_backward(dh1, dh3, dy, x, h3, ND);
	gpu->swiglu_backward(gdx, gy, gdy, gx, gh3, ND);
	check("swiglu bwd dh1", gdx, dh1, ND, 1e-5);
	check("swiglu bwd dh3", gy, dh3, ND, 1e-5);
	/* add, scale, sums */
	cpu->add(y, x, h3, ND);
	gpu->add(gy, gx, gh3, ND);
	check("add", gy, y, ND, 1e-7);
	cpu->scale(y, 4, ND);
	gpu->scale(gy, 4, ND);
	check("scale", gy, y, ND, 1e-7);
	double sc = cpu->sumsq(x, ND), sg = gpu->sumsq(gx, ND), uc = cpu->sum(x, ND), ug = gpu->sum(gx, ND);
	tap_ok(fabs(sc - sg) <= 1e-12 * sc && fabs(uc - ug) <= 1e-12 * (cpu->sumsq(x, ND) + 1),
	       "sum %.15g vs %.15g, sum of squares %.15g vs %.15g (double)", ug, uc, sg, sc);
	/* cross-entropy, probs aliasing the logits as the model calls it */
	float *lg = rnd((size_t)N * V, 4), *loss = calloc(N, 4), *dl = calloc((size_t)N * V, 4);
	uint16_t tg[96];
	for (int n = 0; n < N; n++)
		tg[n] = (uint16_t)((n * 37) % V);
	float *glg = up(lg, 4ul * N * V), *gloss = gpu->alloc(4ul * N);
	uint16_t *gtg = up(tg, sizeof(tg));
	cpu->crossentropy_forward(loss, lg, lg, tg, N, V);
	gpu->crossentropy_forward(gloss, glg, glg, gtg, N, V);
	check("softmax + cross-entropy: losses", gloss, loss, N, 1e-5);
	check("softmax + cross-entropy: probs (in place)", glg, lg, (size_t)N * V, 1e-5);
	cpu->crossentropy_backward(dl, lg, tg, 1.0f / N, N, V);
	gpu->crossentropy_backward(glg, glg, gtg, 1.0f / N, N, V);
	check("cross-entropy bwd", glg, dl, (size_t)N * V, 1e-5);
	/* embedding: repeated tokens, so the backward adds rows in token order */
	float *wte = rnd((size_t)V * D, 1), *dwte = rnd((size_t)V * D, 1);
	uint16_t tok[96];
	for (int n = 0; n < N; n++)
		tok[n] = (uint16_t)((n * n) % 17);
	float *gwte = up(wte, 4ul * V * D), *gdwte = up(dwte, 4ul * V * D);
	uint16_t *gtok = up(tok, sizeof(tok));
	cpu->embedding_forward(y, tok, wte, N, D);
	gpu->embedding_forward(gy, gtok, gwte, N, D);
	check("embedding fwd", gy, y, ND, 0);
	cpu->embedding_backward(dwte, dy, tok, N, D);
	gpu->embedding_backward(gdwte, gdy, gtok, N, D);
	check("embedding bwd (token order)", gdwte, dwte, (size_t)V * D, 1e-6);
	free(x), free(w), free(dy), free(y), free(rs), free(dx), free(dw), free(h3), free(dh1), free(dh3);
	free(lg), free(loss), free(dl), free(wte), free(dwte);
	gpu->free(gx), gpu->free(gw), gpu->free(gdy), gpu->free(gy), gpu->free(grs), gpu->free(gdx), gpu->free(gdw);
	gpu->free(gh3), gpu->free(glg), gpu->free(gloss), gpu->free(gtg), gpu->free(gwte), gpu->free(gdwte), gpu->free(gtok);
}

static void test_attention(int B, int T, int C, int NH)
{
	size_t N = (size_t)B * T, hd = C / NH;
	float *qkv = rnd(N * 3 * C, 1), *cs = malloc(sizeof(float) * T * hd), *out = calloc(N * C, 4);
	float *att = calloc((size_t)B * NH * T * T, 4), *dout = rnd(N * C, 1), *dqkv = rnd(N * 3 * C, 1);
	tr_rope_table(cs, T, (int)hd, 10000.0f);
	float *gqkv = up(qkv, 4 * N * 3 * C), *gcs = up(cs, 4 * T * hd), *gout = gpu->alloc(4 * N * C);
	float *gatt = gpu->alloc(4ul * B * NH * T * T), *gdout = up(dout, 4 * N * C), *gdqkv = up(dqkv, 4 * N * 3 * C);
	cpu->rope_forward(qkv, cs, B, T, 3 * C, NH, (int)hd);
	gpu->rope_forward(gqkv, gcs, B, T, 3 * C, NH, (int)hd);
	check("rope fwd (q heads, strided rows)", gqkv, qkv, N * 3 * C, 1e-5);
	cpu->attention_forward(out, att, qkv, B, T, C, NH);
	gpu->attention_forward(gout, gatt, gqkv, B, T, C, NH);
	check("attention fwd out", gout, out, N * C, 1e-4);
	check("attention fwd probabilities (causal zeros)", gatt, att, (size_t)B * NH * T * T, 1e-4);
	cpu->attention_backward(dqkv, dout, qkv, att, B, T, C, NH);
	gpu->attention_backward(gdqkv, gdout, gqkv, gatt, B, T, C, NH);
	check("attention bwd dqkv (accumulating)", gdqkv, dqkv, N * 3 * C, 1e-4);
	cpu->rope_backward(dqkv, cs, B, T, 3 * C, NH, (int)hd);
	gpu->rope_backward(gdqkv, gcs, B, T, 3 * C, NH, (int)hd);
	check("rope bwd", gdqkv, dqkv, N * 3 * C, 1e-4);
	free(qkv), free(cs), free(out), free(att), free(dout), free(dqkv);
	gpu->free(gqkv), gpu->free(gcs), gpu->free(gout), gpu->free(gatt), gpu->free(gdout), gpu->free(gdqkv);
}

static void test_routing(int limit)
{
	int N = 200, E = 16, k = 3, G = 4, D = 40, Nk = N * k;
	int group_of[16];
	for (int e = 0; e < E; e++)
		group_of[e] = e / (E / G);
	float *lg = rnd((size_t)N * E, 3), *bias = rnd(E, 0.2f), *sc = calloc((size_t)N * E, 4), *gates = calloc(Nk, 4);
	int *idx = calloc(Nk, sizeof(int));
	float *glg = up(lg, 4ul * N * E), *gbias = up(bias, 4ul * E), *ggates = gpu->alloc(4ul * Nk);
	int *ggroup = up(group_of, sizeof(group_of)), *gidx = gpu->alloc(sizeof(int) * Nk);
	cpu->router_forward(sc, idx, gates, lg, bias, group_of, G, limit ? 2 : 0, N, E, k, 2.5f);
	gpu->router_forward(glg, gidx, ggates, glg, gbias, ggroup, G, limit ? 2 : 0, N, E, k, 2.5f);
	int *hidx = malloc(sizeof(int) * Nk);
	gpu->download(hidx, gidx, sizeof(int) * Nk);
	tap_ok(!memcmp(hidx, idx, sizeof(int) * Nk), "router %s: the same experts in the same order for %d tokens",
	       limit ? "with group limit M=2 of 4" : "without group limit", N);
	check("router scores (sigmoid, in place)", glg, sc, (size_t)N * E, 1e-5);
	check("router gates", ggates, gates, Nk, 1e-5);
	/* backward */
	float *dg = rnd(Nk, 1), *dlg = calloc((size_t)N * E, 4), *gdg = up(dg, 4ul * Nk), *gdlg = gpu->alloc(4ul * N * E);
	cpu->router_backward(dlg, dg, sc, idx, N, E, k, 2.5f);
	gpu->router_backward(gdlg, gdg, glg, gidx, N, E, k, 2.5f);
	check("router bwd dlogits", gdlg, dlg, (size_t)N * E, 1e-5);
	/* counting sort */
	int cc[16], gc[16], *pos = malloc(sizeof(int) * Nk), *src = malloc(sizeof(int) * Nk);
	int *hpos = malloc(sizeof(int) * Nk), *hsrc = malloc(sizeof(int) * Nk);
	int *gpos = gpu->alloc(sizeof(int) * Nk), *gsrc = gpu->alloc(sizeof(int) * Nk);
	cpu->route_plan(cc, pos, src, idx, Nk, k, E);
	gpu->route_plan(gc, gpos, gsrc, gidx, Nk, k, E);
	gpu->download(hpos, gpos, sizeof(int) * Nk);
	gpu->download(hsrc, gsrc, sizeof(int) * Nk);
	tap_ok(!memcmp(cc, gc, sizeof(cc)) && !memcmp(pos, hpos, sizeof(int) * Nk) && !memcmp(src, hsrc, sizeof(int) * Nk),
	       "route plan: counts, places and source tokens equal (stable order within each expert)");
	/* permute / unpermute around it */
	float *x = rnd((size_t)N * D, 1), *rows = calloc((size_t)Nk * D, 4), *yv = rnd((size_t)N * D, 1);
	float *gx = up(x, 4ul * N * D), *grows = gpu->alloc(4ul * Nk * D), *gyv = up(yv, 4ul * N * D);
	cpu->permute_forward(rows, x, src, Nk, D);
	gpu->permute_forward(grows, gx, gsrc, Nk, D);
	check("permute fwd", grows, rows, (size_t)Nk * D, 0);
	cpu->unpermute_forward(yv, rows, pos, gates, N, k, D);
	gpu->unpermute_forward(gyv, grows, gpos, ggates, N, k, D);
	check("unpermute fwd (gates in the combine, +=)", gyv, yv, (size_t)N * D, 1e-5);
	float *dy = rnd((size_t)N * D, 1), *drows = calloc((size_t)Nk * D, 4), *dgt = calloc(Nk, 4);
	float *gdy = up(dy, 4ul * N * D), *gdrows = gpu->alloc(4ul * Nk * D), *gdgt = gpu->alloc(4ul * Nk);
	cpu->unpermute_backward(drows, dgt, dy, rows, pos, gates, N, k, D);
	gpu->unpermute_backward(gdrows, gdgt, gdy, grows, gpos, ggates, N, k, D);
	check("unpermute bwd rows", gdrows, drows, (size_t)Nk * D, 1e-5);
	check("unpermute bwd gates (dot over d_model)", gdgt, dgt, Nk, 1e-5);
	cpu->permute_backward(x, drows, pos, N, k, D);
	gpu->permute_backward(gx, gdrows, gpos, N, k, D);
	check("permute bwd (per-token sum, +=)", gx, x, (size_t)N * D, 1e-5);
	free(lg), free(bias), free(sc), free(gates), free(idx), free(hidx), free(dg), free(dlg), free(pos), free(src);
	free(hpos), free(hsrc), free(x), free(rows), free(yv), free(dy), free(drows), free(dgt);
	gpu->free(glg), gpu->free(gbias), gpu->free(ggates), gpu->free(ggroup), gpu->free(gidx), gpu->free(gdg);
	gpu->free(gdlg), gpu->free(gpos), gpu->free(gsrc), gpu->free(gx), gpu->free(grows), gpu->free(gyv);
	gpu->free(gdy), gpu->free(gdrows), gpu->free(gdgt);
}

static void test_adamw(void)
{
	size_t n = 100003;
	float *p = rnd(n, 1), *g = rnd(n, 1), *m = rnd(n, 0.1f), *v = rnd(n, 0.1f);
	for (size_t i = 0; i < n; i++)
		v[i] = fabsf(v[i]);
	float *gp = up(p, 4 * n), *gg = up(g, 4 * n), *gm = up(m, 4 * n), *gv = up(v, 4 * n);
	struct tr_adamw h = { 0.9f, 0.95f, 1e-8f, 0.1f };
	for (int t = 1; t <= 3; t++) {
		cpu->adamw(&h, 1e-3, t, 0.5f, p, g, m, v, n);
		gpu->adamw(&h, 1e-3, t, 0.5f, gp, gg, gm, gv, n);
	}
	check("adamw params (3 steps)", gp, p, n, 1e-6);
	check("adamw first moment", gm, m, n, 1e-6);
	check("adamw second moment", gv, v, n, 1e-6);
	free(p), free(g), free(m), free(v);
	gpu->free(gp), gpu->free(gg), gpu->free(gm), gpu->free(gv);
}

int main(int argc, char **argv)
{
	char err[512];
	const char *bf = argc > 1 && !strcmp(argv[1], "bf16") ? argv[1] : NULL;
	bf16 = bf != NULL;
	gpu = gpu_test_open(bf ? TR_DTYPE_BF16 : TR_DTYPE_FP32);
	printf("# %s, %s GEMMs\n", gpu->device_name(), bf ? "bf16" : "fp32");
	test_matmul(64, 96, 80, 0);
	test_matmul(257, 128, 384, 0);  /* odd rows, K that splits */
	test_matmul(63, 96, 80, 1);
	test_experts();
	if (bf)
		test_experts_rounded();
	if (!bf) {
		test_rows();
		test_attention(2, 33, 64, 4);
		test_routing(0);
		test_routing(1);
		test_adamw();
	}
	tap_ok(gpu->sync(err, sizeof(err)) == 0, "no CUDA error recorded (%s)", gpu->sync(err, sizeof(err)) ? err : "none");
	return tap_done();
}
