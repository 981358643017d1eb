/* op_matmul.c - the linear layer y = x W^T (W is [out][in]) and its backward. */
#include "ops.h"

void tr_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, int N, int C, int OC)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		const tr_real *x = inp + (size_t)n * C;
		tr_real *y = out + (size_t)n * OC;
		for (int o = 0; o < OC; o++) {
			const tr_real *wr = w + (size_t)o * C;
			tr_real acc = 0;
			for (int c = 0; c < C; c++)
				acc += x[c] * wr[c];
			y[o] = acc;
		}
	}
}

void tr_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
			const tr_real *w, int N, int C, int OC)
{
	if (dinp) {
#pragma omp parallel for
		for (int n = 0; n < N; n++) {
			const tr_real *dy = dout + (size_t)n * OC;
			tr_real *dx = dinp + (size_t)n * C;
			for (int o = 0; o < OC; o++) {
				tr_real d = dy[o];
				const tr_real *wr = w + (size_t)o * C;
				for (int c = 0; c < C; c++)
					dx[c] += d * wr[c];
			}
		}
	}
	/* one output row of dW per iteration: the sum over n stays in row order */
#pragma omp parallel for
	for (int o = 0; o < OC; o++) {
		tr_real *dwr = dw + (size_t)o * C;
		for (int n = 0; n < N; n++) {
			tr_real d = dout[(size_t)n * OC + o];
			if (d == 0)
				continue;
			const tr_real *x = inp + (size_t)n * C;
			for (int c = 0; c < C; c++)
				dwr[c] += d * x[c];
		}
	}
}
