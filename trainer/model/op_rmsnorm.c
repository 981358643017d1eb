/* op_rmsnorm.c - RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight. */
#include <math.h>
#include "ops.h"

#define RMS_EPS 1e-5

void tr_rmsnorm_forward(tr_real *out, tr_real *rstd, const tr_real *inp, const tr_real *weight, int N, int D)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		const tr_real *x = inp + (size_t)n * D;
		tr_real *y = out + (size_t)n * D;
		tr_real ss = 0;
		for (int d = 0; d < D; d++)
			ss += x[d] * x[d];
		tr_real r = (tr_real)(1.0 / sqrt((double)ss / D + RMS_EPS));
		rstd[n] = r;
		for (int d = 0; d < D; d++)
			y[d] = x[d] * r * weight[d];
	}
}

/* y_d = x_d r w_d, r = (mean x^2 + eps)^-1/2:  dx_d = r (w_d dy_d - x_d r^2 <w dy, x> / D) */
void tr_rmsnorm_backward(tr_real *dinp, tr_real *dweight, const tr_real *dout, const tr_real *inp,
			 const tr_real *weight, const tr_real *rstd, int N, int D)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		const tr_real *x = inp + (size_t)n * D, *dy = dout + (size_t)n * D;
		tr_real *dx = dinp + (size_t)n * D;
		tr_real r = rstd[n], dot = 0;
		for (int d = 0; d < D; d++)
			dot += weight[d] * dy[d] * x[d];
		tr_real c = r * r * r * dot / D;
		for (int d = 0; d < D; d++)
			dx[d] += r * weight[d] * dy[d] - c * x[d];
	}
#pragma omp parallel for
	for (int d = 0; d < D; d++) {
		tr_real acc = 0;
		for (int n = 0; n < N; n++)
			acc += dout[(size_t)n * D + d] * inp[(size_t)n * D + d] * rstd[n];
		dweight[d] += acc;
	}
}
