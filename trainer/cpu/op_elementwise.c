/* op_elementwise.c - the model's elementwise steps (residual add, scaling) and the double-precision
 * sums (mean loss, gradient norm) on the CPU.  Sums use fixed blocks combined in block order, so they do
 * not depend on the thread count. */
#include <stdlib.h>
#include "ops.h"

void tr_add(tr_real *y, const tr_real *a, const tr_real *b, size_t n)
{
#pragma omp parallel for
	for (size_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
}

void tr_scale(tr_real *y, tr_real f, size_t n)
{
#pragma omp parallel for if (n > 65536)
	for (size_t i = 0; i < n; i++)
		y[i] *= f;
}

#define SUM_BLOCK 8192

static double block_sum(const tr_real *x, size_t n, int square)
{
	size_t nb = (n + SUM_BLOCK - 1) / SUM_BLOCK;
	double stackpart[64], *part = nb <= 64 ? stackpart : malloc(nb * sizeof(double));
	if (!part) { /* no memory for partials: a serial sum is just as deterministic */
		double s = 0;
		for (size_t i = 0; i < n; i++)
			s += square ? (double)x[i] * x[i] : (double)x[i];
		return s;
	}
#pragma omp parallel for schedule(static) if (nb > 4)
	for (size_t b = 0; b < nb; b++) {
		size_t lo = b * SUM_BLOCK, hi = lo + SUM_BLOCK < n ? lo + SUM_BLOCK : n;
		double s = 0;
		for (size_t i = lo; i < hi; i++)
			s += square ? (double)x[i] * x[i] : (double)x[i];
		part[b] = s;
	}
	double s = 0;
	for (size_t b = 0; b < nb; b++)
		s += part[b];
	if (part != stackpart)
		free(part);
	return s;
}

double tr_sum(const tr_real *x, size_t n)
{
	return block_sum(x, n, 0);
}

double tr_sumsq(const tr_real *x, size_t n)
{
	return block_sum(x, n, 1);
}
