/* trainer_ops.c - speed of the trainer's CPU hot paths as ratios against baselines measured in the same
 * run: the tiled matmul against the plain triple loop it must match bit for bit, and a full model step
 * (forward + backward) with all OpenMP threads against one thread.  Prints figures; not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "comm.h"
#include "model.h"
#include "ops.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

/* the reference: one dot product per output, in the same (ascending) order */
static void plain_forward(float *y, const float *x, const float *w, int N, int C, int OC)
{
	for (int n = 0; n < N; n++)
		for (int o = 0; o < OC; o++) {
			float s = 0;
			for (int c = 0; c < C; c++)
				s += x[(size_t)n * C + c] * w[(size_t)o * C + c];
			y[(size_t)n * OC + o] = s;
		}
}

static void plain_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int N, int C, int OC)
{
	for (int n = 0; n < N; n++)
		for (int c = 0; c < C; c++) {
			float s = dx[(size_t)n * C + c];
			for (int o = 0; o < OC; o++)
				s += dy[(size_t)n * OC + o] * w[(size_t)o * C + c];
			dx[(size_t)n * C + c] = s;
		}
	for (int o = 0; o < OC; o++)
		for (int c = 0; c < C; c++) {
			float s = dw[(size_t)o * C + c];
			for (int n = 0; n < N; n++)
				s += dy[(size_t)n * OC + o] * x[(size_t)n * C + c];
			dw[(size_t)o * C + c] = s;
		}
}

static void set_threads(int n)
{
#ifdef _OPENMP
	omp_set_num_threads(n);
#else
	(void)n;
#endif
}

static int max_threads(void)
{
#ifdef _OPENMP
	return omp_get_max_threads();
#else
	return 1;
#endif
}

static void bench_matmul(int N, int C, int OC, int reps)
{
	size_t nx = (size_t)N * C, nw = (size_t)OC * C, ny = (size_t)N * OC;
	float *x = malloc(4 * nx), *w = malloc(4 * nw), *dy = malloc(4 * ny), *y1 = malloc(4 * ny), *y2 = malloc(4 * ny);
	float *dx1 = calloc(nx, 4), *dx2 = calloc(nx, 4), *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4);
	srand(1);
	for (size_t i = 0; i < nx; i++)
		x[i] = rand() / (float)RAND_MAX - 0.5f;
	for (size_t i = 0; i < nw; i++)
		w[i] = rand() / (float)RAND_MAX - 0.5f;
	for (size_t i = 0; i < ny; i++)
		dy[i] = rand() / (float)RAND_MAX - 0.5f;
	set_threads(1);
	double t0 = now();
	for (int r = 0; r < reps; r++)
		plain_forward(y1, x, w, N, C, OC);
	double t1 = now();
	for (int r = 0; r < reps; r++)
		tr_matmul_forward(y2, x, w, N, C, OC);
	double t2 = now();
	for (int r = 0; r < reps; r++)
		plain_backward(dx1, dw1, dy, x, w, N, C, OC);
	double t3 = now();
	for (int r = 0; r < reps; r++)
		tr_matmul_backward(dx2, dw2, dy, x, w, N, C, OC);
	double t4 = now();
	double gf = 2.0 * N * C * OC * reps / 1e9;
	int same = !memcmp(y1, y2, 4 * ny) && !memcmp(dx1, dx2, 4 * nx) && !memcmp(dw1, dw2, 4 * nw);
	printf("matmul %dx%dx%d, 1 thread: forward %.2f GFLOP/s = %.1fx plain loops, backward %.2f GFLOP/s = %.1fx; "
	       "bit-identical: %s\n", N, C, OC, gf / (t2 - t1), (t1 - t0) / (t2 - t1), 2 * gf / (t4 - t3),
	       (t3 - t2) / (t4 - t3), same ? "yes" : "NO");
	free(x), free(w), free(dy), free(y1), free(y2), free(dx1), free(dx2), free(dw1), free(dw2);
}

static int nt_all = 1;

static void bench_step(struct tr_comm *world, int steps)
{
	struct tr_config c;
	tr_config_default(&c); /* d_model 128, 4 layers (1 dense), 8 experts top-2 */
	c.seq_len = 64;
	struct tr_par par = { world, world, world, 0, NULL };
	struct tr_model *m;
	char err[256];
	if (tr_model_create(&c, &par, 1, &m, err, sizeof(err))) {
		printf("model: %s\n", err);
		return;
	}
	enum { B = 8, T = 64 };
	uint16_t tok[B * (T + 1)];
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (uint16_t)((i * 7919) % 256);
	int nt = nt_all;
	double ms[2];
	for (int k = 0; k < 2; k++) {
		set_threads(k ? nt : 1);
		float loss;
		tr_model_step(m, tok, B, T, &loss); /* warm-up: allocations */
		double t0 = now();
		for (int s = 0; s < steps; s++)
			tr_model_step(m, tok, B, T, &loss);
		ms[k] = (now() - t0) * 1e3 / steps;
	}
	printf("model step (d_model 128, 4 layers, 8 experts top-2, %d tokens): %.1f ms with 1 thread = %.0f tokens/s; "
	       "%d threads: %.2fx\n", B * T, ms[0], B * T / ms[0] * 1e3, nt, ms[0] / ms[1]);
	tr_model_free(m);
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 5;
	nt_all = max_threads();
	struct tr_comm *w;
	char err[256];
	if (tr_comm_init("self", &w, err, sizeof(err))) {
		fprintf(stderr, "trainer_ops: %s\n", err);
		return 1;
	}
	bench_matmul(512, 128, 384, reps);
	bench_matmul(512, 256, 256, reps);
	bench_step(w, reps);
	tr_comm_free(w);
	return 0;
}
