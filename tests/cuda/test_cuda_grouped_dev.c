/* test_cuda_grouped_dev.c - the graph-mode ops of the CUDA backend (backend.h, --cuda-graph) against
 * the CPU reference on the same inputs, and against the default CUDA ops where they must give the same
 * bits.  Skipped ("no GPU") where the CUDA backend is not built or no GPU can be opened.
 *   device-count grouped GEMM (gemm_dev.cu), forward, dx, dw, over a split with an empty expert, row
 *   blocks below, at and above the 64-row tile, and C, OC not multiples of 64: fp32 within 1e-4 of the
 *   CPU (the kernel sums K products in K order like the CPU, but in 16-wide shared-memory steps and
 *   without FMA: rounding differs by ~sqrt(K) eps relative to the row scale, the bound test_cuda_ops.c
 *   uses for every GEMM); bf16 within 3e-2 of the fp32 CPU (operands rounded to 8 mantissa bits);
 *   key_sum (the EP=1 combine) equal to the CPU's bit for bit (the same additions in the same order);
 *   route_plan_dev: the counts and placement of the CPU's counting sort;
 *   sum_to equal to the GPU's sum()/sumsq() bit for bit, clip_dev to tr_clip_scale, adamw_dev to the
 *   GPU's adamw bit for bit (the same kernels and constants: what makes the optimizer graph's steps
 *   those of the default path).
 * tests/gpu/run-all.sh also runs this under compute-sanitizer memcheck. */
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
static uint64_t rng = 0x2545F4914F6CDD1Dull;

static float frand(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (float)((rng >> 40) / 8388608.0 - 1.0);
}

static float *rnd(size_t n)
{
	float *p = malloc(sizeof(float) * (n ? n : 1));
	for (size_t i = 0; i < n; i++)
		p[i] = frand();
	return p;
}

/* device memory, freed at the end (memcheck's leak check) */
static void *held[64];
static int nheld;

static void *ga(size_t bytes)
{
	void *d = gpu->alloc(bytes);
	if (d && nheld < 64)
		held[nheld++] = d;
	return d;
}

static void *up(const void *h, size_t bytes)
{
	void *d = ga(bytes);
	if (d)
		gpu->upload(d, h, bytes);
	return d;
}

static void check(const char *what, const void *d, const float *c, size_t n, double tol)
{
	cmp_check(gpu, what, d, c, n, tol);
}

static void grouped(int bf16)
{
	char err[256];
	if (gpu->init(bf16 ? TR_DTYPE_BF16 : TR_DTYPE_FP32, err, sizeof(err))) {
		tap_ok(0, "init: %s", err);
		return;
	}
	enum { El = 6, C = 96, OC = 72 };
	int rows[El] = { 5, 0, 64, 130, 1, 63 }, R = 0;
	for (int j = 0; j < El; j++)
		R += rows[j];
	size_t ws = (size_t)OC * C + 8; /* a stride larger than one weight, as in the expert segment */
	float *x = rnd((size_t)R * C), *w = rnd(ws * El), *dy = rnd((size_t)R * OC);
	float *y = calloc((size_t)R * OC, sizeof(float)), *dx = rnd((size_t)R * C), *dw = rnd(ws * El);
	float *dx0 = malloc(sizeof(float) * R * C), *dw0 = malloc(sizeof(float) * ws * El);
	memcpy(dx0, dx, sizeof(float) * R * C);
	memcpy(dw0, dw, sizeof(float) * ws * El);
	float *gx = up(x, sizeof(float) * R * C), *gw = up(w, sizeof(float) * ws * El), *gdy = up(dy, sizeof(float) * R * OC);
	float *gy = ga(sizeof(float) * R * OC), *gdx = up(dx, sizeof(float) * R * C);
	float *gdw = up(dw, sizeof(float) * ws * El);
	int *grows = up(rows, sizeof(rows));
	cpu->expert_matmul_forward(y, x, w, ws, rows, El, C, OC);
	cpu->expert_matmul_backward(dx, dw, dy, x, w, ws, rows, El, C, OC);
	gpu->expert_matmul_forward_dev(gy, gx, gw, ws, grows, El, R, C, OC);
	gpu->expert_matmul_backward_dev(gdx, gdw, gdy, gx, gw, ws, grows, El, R, C, OC);
	int rc = gpu->sync(err, sizeof(err));
	tap_ok(rc == 0, "%s device-count grouped GEMM ran (%d experts, %d rows, %dx%d)%s%s", bf16 ? "bf16" : "fp32", El,
	       R, OC, C, rc ? ": " : "", rc ? err : "");
	double tol = bf16 ? 3e-2 : 1e-4;
	check(bf16 ? "bf16 grouped (device counts) forward" : "fp32 grouped (device counts) forward", gy, y,
	      (size_t)R * OC, tol);
	check(bf16 ? "bf16 grouped (device counts) dx" : "fp32 grouped (device counts) dx", gdx, dx, (size_t)R * C, tol);
	check(bf16 ? "bf16 grouped (device counts) dw" : "fp32 grouped (device counts) dw", gdw, dw, ws * El, tol);
	/* the stride's padding and the empty expert's weights are untouched: dw of expert 1 is as it was */
	float *h = malloc(sizeof(float) * ws * El);
	gpu->download(h, gdw, sizeof(float) * ws * El);
	int kept = !memcmp(h + ws, dw0 + ws, sizeof(float) * ws);
	for (int j = 0; j < El; j++)
		kept &= !memcmp(h + j * ws + (size_t)OC * C, dw0 + j * ws + (size_t)OC * C, 8 * sizeof(float));
	tap_ok(kept, "%s: dw of the expert without rows and the stride padding untouched", bf16 ? "bf16" : "fp32");
	free(h);
	free(x), free(w), free(dy), free(y), free(dx), free(dw), free(dx0), free(dw0);
}

int main(void)
{
	char err[256];
	gpu = gpu_test_open(TR_DTYPE_FP32);
	printf("# %s\n", gpu->device_name());
	grouped(0);
	grouped(1);
	gpu->init(TR_DTYPE_FP32, err, sizeof(err));

	/* routing: counting sort with the counts left on the device, and the EP=1 combine */
	enum { N = 300, K = 3, E = 16, D = 40 };
	int idx[N * K], pos[N * K], src[N * K], cnt[E];
	for (int t = 0; t < N; t++) /* k distinct experts per token, in no particular order */
		for (int s = 0; s < K; s++)
			idx[t * K + s] = (t * 7 + s * 5 + (t % 3)) % E;
	cpu->route_plan(cnt, pos, src, idx, N * K, K, E);
	int *gidx = up(idx, sizeof(idx)), *gpos = ga(sizeof(pos)), *gsrc = ga(sizeof(src));
	int *gcnt = ga(sizeof(cnt)), hpos[N * K], hsrc[N * K], hcnt[E];
	gpu->route_plan_dev(gcnt, gpos, gsrc, gidx, N * K, K, E);
	gpu->download(hcnt, gcnt, sizeof(hcnt));
	gpu->download(hpos, gpos, sizeof(hpos));
	gpu->download(hsrc, gsrc, sizeof(hsrc));
	tap_ok(!memcmp(cnt, hcnt, sizeof(cnt)) && !memcmp(pos, hpos, sizeof(pos)) && !memcmp(src, hsrc, sizeof(src)),
	       "route_plan_dev: the CPU's counts, positions and source tokens");
	float *rows = rnd((size_t)N * K * D), *out = malloc(sizeof(float) * N * D), *gout = malloc(sizeof(float) * N * D);
	float *grows = up(rows, sizeof(float) * N * K * D), *dout = ga(sizeof(float) * N * D);
	cpu->key_sum(out, rows, pos, N, K, D);
	gpu->key_sum(dout, grows, gpos, N, K, D);
	gpu->download(gout, dout, sizeof(float) * N * D);
	tap_ok(!memcmp(out, gout, sizeof(float) * N * D), "key_sum (EP=1 combine, top-3): the CPU's bits");

	/* the optimizer graph's ops give the default path's bits */
	size_t n = 3 * TR_SUM_BLOCK + 77;
	float *g = rnd(n), *p = rnd(n), *m0 = rnd(n), *v0 = rnd(n);
	for (size_t i = 0; i < n; i++)
		v0[i] = fabsf(v0[i]);
	float *dg = up(g, sizeof(float) * n);
	double *sq = ga(sizeof(double) * TR_SUM_DOUBLES(n)), *sq2 = ga(sizeof(double) * TR_SUM_DOUBLES(n));
	double s_host = gpu->sumsq(dg, n), s_dev = 0, t_host = gpu->sum(dg, n), t_dev = 0;
	gpu->sum_to(sq, dg, n, 1);
	gpu->sum_to(sq2, dg, n, 0);
	gpu->download(&s_dev, sq, sizeof(double));
	gpu->download(&t_dev, sq2, sizeof(double));
	tap_ok(s_host == s_dev && t_host == t_dev, "sum_to: sumsq %.17g and sum %.17g, the bits of sumsq()/sum()", s_dev,
	       t_dev);
	float *dscale = ga(sizeof(float)), scale = 0;
	double *dnorm = ga(sizeof(double)), norm = 0, clip = sqrt(s_host + t_host * t_host) / 3;
	gpu->clip_dev(dscale, dnorm, sq, sq, clip); /* norm = sqrt(2 sumsq) */
	gpu->download(&scale, dscale, sizeof(float));
	gpu->download(&norm, dnorm, sizeof(double));
	tap_ok(norm == sqrt(s_host + s_host) && scale == tr_clip_scale(norm, clip),
	       "clip_dev: norm %.9g and factor %.9g as on the host", norm, scale);
	struct tr_adamw aw = { 0.9f, 0.95f, 1e-8f, 0.1f };
	struct tr_adamw_step k = tr_adamw_fold(&aw, 3e-3, 7);
	struct tr_adamw_step *dk = up(&k, sizeof(k));
	float *p1 = up(p, sizeof(float) * n), *m1 = up(m0, sizeof(float) * n), *v1 = up(v0, sizeof(float) * n);
	float *p2 = up(p, sizeof(float) * n), *m2 = up(m0, sizeof(float) * n), *v2 = up(v0, sizeof(float) * n);
	gpu->adamw(&aw, 3e-3, 7, scale, p1, dg, m1, v1, n);
	gpu->adamw_dev(dk, dscale, p2, dg, m2, v2, n);
	float *h1 = malloc(sizeof(float) * n), *h2 = malloc(sizeof(float) * n);
	int same = 1;
	float *pairs[3][2] = { { p1, p2 }, { m1, m2 }, { v1, v2 } };
	for (int q = 0; q < 3; q++) {
		gpu->download(h1, pairs[q][0], sizeof(float) * n);
		gpu->download(h2, pairs[q][1], sizeof(float) * n);
		same &= !memcmp(h1, h2, sizeof(float) * n);
	}
	tap_ok(same, "adamw_dev (constants and clip factor from device memory): adamw's bits in p, m, v");
	int rc = gpu->sync(err, sizeof(err));
	tap_ok(rc == 0, "no GPU error%s%s", rc ? ": " : "", rc ? err : "");
	while (nheld)
		gpu->free(held[--nheld]);
	free(rows), free(out), free(gout), free(g), free(p), free(m0), free(v0), free(h1), free(h2);
	return tap_done();
}
