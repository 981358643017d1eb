/* gpu_test.h - what the CUDA tests share: opening the GPU (or reporting the test skipped), and how they
 * judge a GPU tensor against the CPU reference's:
 *   worst relative error: max over elements of |g - c| / max(|c|, 1e-3 max|c|) (values near zero are
 *   judged against the tensor's scale, not against themselves), for op-by-op bounds;
 *   relative norm: ||g - c|| / ||c||, for whole gradients after a step. */
#ifndef TESTS_CUDA_GPU_TEST_H
#define TESTS_CUDA_GPU_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "backend.h"
#include "tap.h"

/* the CUDA backend ready for dtype; where it is not built or no GPU opens, the TAP plan says SKIP ("no GPU")
 * and the test exits 0 */
static inline const struct tr_backend *gpu_test_open(enum tr_dtype dtype)
{
	char err[512] = "";
	if (!tr_backend_have_cuda()) {
		printf("1..0 # SKIP no GPU: the CUDA backend is not built (configure --with-cuda)\n");
		exit(0);
	}
	const struct tr_backend *be = tr_backend_get("cuda", err, sizeof(err));
	if (!be || be->init(dtype, err, sizeof(err)) != 0) {
		printf("1..0 # SKIP no GPU: %s\n", err);
		exit(0);
	}
	return be;
}

static inline double cmp_worst_rel(const float *g, const float *c, size_t n)
{
	double mx = 0, worst = 0;
	for (size_t i = 0; i < n; i++)
		mx = fabs(c[i]) > mx ? fabs(c[i]) : mx;
	double floor = mx * 1e-3 > 1e-30 ? mx * 1e-3 : 1e-30;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)g[i] - c[i]), s = fabs(c[i]) > floor ? fabs(c[i]) : floor;
		if (!(d / s <= worst))
			worst = isfinite(d / s) ? d / s : INFINITY;
	}
	return worst;
}

static inline double cmp_rel_norm(const float *g, const float *c, size_t n)
{
	double d = 0, s = 0;
	for (size_t i = 0; i < n; i++)
		d += ((double)g[i] - c[i]) * ((double)g[i] - c[i]), s += (double)c[i] * c[i];
	return s > 0 ? sqrt(d / s) : sqrt(d);
}

/* one test point: device tensor d (n floats on be) against host reference c within tol */
static inline void cmp_check(const struct tr_backend *be, const char *what, const void *d, const float *c, size_t n,
			     double tol)
{
	float *g = malloc(sizeof(float) * (n ? n : 1));
	be->download(g, d, sizeof(float) * n);
	double e = cmp_worst_rel(g, c, n);
	tap_ok(e <= tol, "%-40s %7zu values, worst relative error %.2e (bound %.0e)", what, n, e, tol);
	free(g);
}

#endif
