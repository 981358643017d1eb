/* test_optim.c - AdamW against a plain double-precision transcription of the published algorithm
 * (Loshchilov & Hutter; PyTorch's torch.optim.AdamW), the warmup + cosine schedule at its defining
 * points, global-norm clipping, and bit-identical results for any OpenMP thread count. */
#include "tap.h"
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void test_sched(void)
{
	struct tr_sched s = {.lr = 1e-3, .min_lr = 1e-4, .warmup = 10, .total = 110};
	tap_ok(fabs(tr_sched_lr(&s, 0) - 1e-4) < 1e-15, "warmup starts at lr/warmup");
	tap_ok(fabs(tr_sched_lr(&s, 4) - 5e-4) < 1e-15, "warmup is linear");
	tap_ok(fabs(tr_sched_lr(&s, 9) - 1e-3) < 1e-15, "last warmup step reaches the peak");
	tap_ok(fabs(tr_sched_lr(&s, 10) - 1e-3) < 1e-15, "cosine starts at the peak");
	tap_ok(fabs(tr_sched_lr(&s, 109) - 1e-4) < 1e-15, "the last step reaches min_lr");
	/* cos(pi/2) = 0 halfway: (lr + min_lr) / 2 at s = warmup + (total - warmup - 1) / 2 */
	struct tr_sched h = {.lr = 1.0, .min_lr = 0.0, .warmup = 0, .total = 101};
	tap_ok(fabs(tr_sched_lr(&h, 50) - 0.5) < 1e-12, "halfway through the cosine: the mean of peak and floor");
	int mono = 1;
	for (long i = 11; i < 110; i++)
		mono &= tr_sched_lr(&s, i) <= tr_sched_lr(&s, i - 1);
	tap_ok(mono, "the cosine never increases");
	tap_ok(fabs(tr_sched_lr(&s, 500) - 1e-4) < 1e-15, "past the end it stays at min_lr");
}

/* reference AdamW in double, straight from the algorithm */
static void ref_adamw(double lr, double b1, double b2, double eps, double wd, int t, double *p, const double *g,
		      double *m, double *v, int n)
{
	for (int i = 0; i < n; i++) {
		p[i] -= lr * wd * p[i];
		m[i] = b1 * m[i] + (1 - b1) * g[i];
		v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
		double mh = m[i] / (1 - pow(b1, t)), vh = v[i] / (1 - pow(b2, t));
		p[i] -= lr * mh / (sqrt(vh) + eps);
	}
}

static void test_adamw(void)
{
	enum { N = 1000, STEPS = 20 };
	struct tr_adamw h = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .wd = 0.1f};
	float *p = malloc(N * sizeof(float)), *g = malloc(N * sizeof(float)), *m = calloc(N, sizeof(float)),
	      *v = calloc(N, sizeof(float));
	double *rp = malloc(N * sizeof(double)), *rg = malloc(N * sizeof(double)), *rm = calloc(N, sizeof(double)),
	       *rv = calloc(N, sizeof(double));
	srand(3);
	for (int i = 0; i < N; i++)
		rp[i] = p[i] = (float)(rand() / (double)RAND_MAX - 0.5);
	double worst = 0;
	for (int t = 1; t <= STEPS; t++) {
		for (int i = 0; i < N; i++)
			rg[i] = g[i] = (float)((rand() / (double)RAND_MAX - 0.5) * 0.01 * (1 + i % 7));
		/* clipping by 0.5 must equal feeding the reference half the gradient */
		for (int i = 0; i < N; i++)
			rg[i] *= 0.5f;
		tr_adamw_update(&h, 1e-2, t, 0.5f, p, g, m, v, N);
		ref_adamw(1e-2, 0.9f, 0.95f, 1e-8f, 0.1f, t, rp, rg, rm, rv, N);
		for (int i = 0; i < N; i++)
			worst = fmax(worst, fabs(p[i] - rp[i]));
	}
	tap_ok(worst < 2e-6, "AdamW matches the double reference over %d steps (max diff %.2g)", STEPS, worst);

	/* first step: m_hat = g, v_hat = g^2, so each parameter moves by lr * sign(g) (plus decay) */
	float p1[3] = {1, 1, 1}, g1[3] = {0.3f, -2.0f, 1e-3f}, m1[3] = {0}, v1[3] = {0};
	struct tr_adamw nodecay = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-12f, .wd = 0};
	tr_adamw_update(&nodecay, 0.01, 1, 1.0f, p1, g1, m1, v1, 3);
	tap_ok(fabsf(p1[0] - 0.99f) < 1e-6f && fabsf(p1[1] - 1.01f) < 1e-6f && fabsf(p1[2] - 0.99f) < 1e-6f,
	       "first Adam step moves each parameter by lr against the gradient's sign");

	/* it minimises: f(p) = sum (p - 3)^2 */
	float q[4] = {0, -1, 10, 3}, qm[4] = {0}, qv[4] = {0}, qg[4];
	for (int t = 1; t <= 2000; t++) {
		for (int i = 0; i < 4; i++)
			qg[i] = 2 * (q[i] - 3);
		tr_adamw_update(&nodecay, 0.05, t, 1.0f, q, qg, qm, qv, 4);
	}
	tap_ok(fabsf(q[0] - 3) < 1e-2f && fabsf(q[2] - 3) < 1e-2f, "AdamW minimises a quadratic (%g %g)", q[0], q[2]);
	free(p), free(g), free(m), free(v), free(rp), free(rg), free(rm), free(rv);
}

static void test_threads(void)
{
	size_t n = 300001; /* not a multiple of the block */
	float *g = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++)
		g[i] = (float)sin((double)i * 0.37) * (float)(1 + i % 13);
	double serial = 0;
	for (size_t i = 0; i < n; i++)
		serial += (double)g[i] * g[i];
	double s1, s2;
#ifdef _OPENMP
	omp_set_num_threads(1);
	s1 = tr_sumsq(g, n);
	omp_set_num_threads(2);
	s2 = tr_sumsq(g, n);
	int th = 1;
#else
	s1 = s2 = tr_sumsq(g, n);
	int th = 0;
#endif
	tap_ok(fabs(s1 - serial) <= 1e-9 * serial, "sum of squares matches a serial sum");
	tap_ok(memcmp(&s1, &s2, sizeof(s1)) == 0, "sum of squares is bit-identical on 1 and 2 threads%s",
	       th ? "" : " (no OpenMP)");

	/* AdamW on 1 and 2 threads: the same bits */
	float *p[2], *m[2], *v[2];
	struct tr_adamw h = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .wd = 0.1f};
	for (int k = 0; k < 2; k++) {
		p[k] = malloc(n * sizeof(float));
		m[k] = calloc(n, sizeof(float));
		v[k] = calloc(n, sizeof(float));
		for (size_t i = 0; i < n; i++)
			p[k][i] = (float)cos((double)i);
#ifdef _OPENMP
		omp_set_num_threads(k + 1);
#endif
		for (int t = 1; t <= 3; t++)
			tr_adamw_update(&h, 1e-3, t, 0.7f, p[k], g, m[k], v[k], n);
	}
	tap_ok(memcmp(p[0], p[1], n * sizeof(float)) == 0 && memcmp(v[0], v[1], n * sizeof(float)) == 0,
	       "AdamW is bit-identical on 1 and 2 threads");
	for (int k = 0; k < 2; k++)
		free(p[k]), free(m[k]), free(v[k]);
	free(g);
}

static void test_clip(void)
{
	tap_ok(tr_clip_scale(10.0, 1.0) == 0.1f, "norm 10, max 1: scale 0.1");
	tap_ok(tr_clip_scale(0.5, 1.0) == 1.0f, "norm below the max: no clipping");
	tap_ok(tr_clip_scale(10.0, 0.0) == 1.0f, "max 0 turns clipping off");
	tap_ok(tr_clip_scale(NAN, 1.0) == 1.0f, "a NaN norm is left for the caller to detect, not hidden");
}

int main(void)
{
	test_sched();
	test_adamw();
	test_threads();
	test_clip();
	return tap_done();
}
