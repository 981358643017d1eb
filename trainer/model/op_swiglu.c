/* op_swiglu.c - the SwiGLU gate of the dense FFN and of every expert: silu(h1) * h3. */
#include <math.h>
#include "ops.h"

void tr_swiglu_forward(tr_real *out, const tr_real *h1, const tr_real *h3, size_t n)
{
#pragma omp parallel for
	for (size_t i = 0; i < n; i++) {
		tr_real a = h1[i], sg = (tr_real)(1.0 / (1.0 + exp(-(double)a)));
		out[i] = a * sg * h3[i];
	}
}

void tr_swiglu_backward(tr_real *dh1, tr_real *dh3, const tr_real *dout, const tr_real *h1,
			const tr_real *h3, size_t n)
{
#pragma omp parallel for
	for (size_t i = 0; i < n; i++) {
		tr_real a = h1[i], sg = (tr_real)(1.0 / (1.0 + exp(-(double)a)));
		dh3[i] = dout[i] * a * sg;
		dh1[i] = dout[i] * h3[i] * sg * (1 + a * (1 - sg));
	}
}
