/* op_permute.c - moving token rows into expert order for the dispatch (permute) and back, weighted
 * by the gates, for the combine (unpermute).  Every backward is written per destination row through
 * the inverse map, so no two threads add into one row. */
#include <string.h>
#include "ops.h"

void tr_permute_forward(tr_real *out, const tr_real *in, const int *src, int n, int D)
{
#pragma omp parallel for
	for (int p = 0; p < n; p++)
		memcpy(out + (size_t)p * D, in + (size_t)src[p] * D, sizeof(tr_real) * D);
}

void tr_permute_scatter(tr_real *out, const tr_real *in, const int *dst, int n, int D)
{
#pragma omp parallel for
	for (int p = 0; p < n; p++)
		memcpy(out + (size_t)dst[p] * D, in + (size_t)p * D, sizeof(tr_real) * D);
}

void tr_permute_backward(tr_real *din, const tr_real *dout, const int *pos, int N, int k, int D)
{
#pragma omp parallel for
	for (int t = 0; t < N; t++) {
		tr_real *dx = din + (size_t)t * D;
		for (int s = 0; s < k; s++) {
			const tr_real *r = dout + (size_t)pos[(size_t)t * k + s] * D;
			for (int d = 0; d < D; d++)
				dx[d] += r[d];
		}
	}
}

void tr_unpermute_forward(tr_real *y, const tr_real *rows, const int *pos, const tr_real *gates, int N, int k, int D)
{
#pragma omp parallel for
	for (int t = 0; t < N; t++) {
		tr_real *yt = y + (size_t)t * D;
		for (int s = 0; s < k; s++) {
			tr_real g = gates[(size_t)t * k + s];
			const tr_real *r = rows + (size_t)pos[(size_t)t * k + s] * D;
			for (int d = 0; d < D; d++)
				yt[d] += g * r[d];
		}
	}
}

void tr_unpermute_backward(tr_real *drows, tr_real *dgates, const tr_real *dy, const tr_real *rows,
			   const int *pos, const tr_real *gates, int N, int k, int D)
{
#pragma omp parallel for
	for (int t = 0; t < N; t++) {
		const tr_real *dyt = dy + (size_t)t * D;
		for (int s = 0; s < k; s++) {
			size_t p = (size_t)pos[(size_t)t * k + s];
			tr_real g = gates[(size_t)t * k + s], dot = 0;
			const tr_real *r = rows + p * D;
			tr_real *dr = drows + p * D;
			for (int d = 0; d < D; d++) {
				dr[d] = g * dyt[d];
				dot += dyt[d] * r[d];
			}
			dgates[(size_t)t * k + s] = dot;
		}
	}
}
