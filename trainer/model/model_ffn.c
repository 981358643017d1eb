/* model_ffn.c - the SwiGLU feed-forward block, one definition for the dense FFNs, the shared expert and
 * every routed expert, so an expert computes the same thing wherever it lives. */
#include <string.h>
#include "model_impl.h"
#include "ops.h"

void tr_ffn_forward(tr_real *y, tr_real *h1, tr_real *h3, tr_real *g, const tr_real *x,
		    const tr_real *w1, const tr_real *w3, const tr_real *w2, int N, int D, int F)
{
	if (N == 0)
		return;
	tr_matmul_forward(h1, x, w1, N, D, F);
	tr_matmul_forward(h3, x, w3, N, D, F);
	tr_swiglu_forward(g, h1, h3, (size_t)N * F);
	tr_matmul_forward(y, g, w2, N, F, D);
}

void tr_ffn_backward(tr_real *dx, tr_real *dw1, tr_real *dw3, tr_real *dw2, const tr_real *dy,
		     const tr_real *x, const tr_real *h1, const tr_real *h3, const tr_real *g,
		     const tr_real *w1, const tr_real *w3, const tr_real *w2, int N, int D, int F, tr_real *scratch)
{
	if (N == 0)
		return;
	size_t nf = (size_t)N * F;
	tr_real *dg = scratch, *dh1 = scratch + nf, *dh3 = scratch + 2 * nf;
	memset(dg, 0, sizeof(tr_real) * nf);
	tr_matmul_backward(dg, dw2, dy, g, w2, N, F, D);
	tr_swiglu_backward(dh1, dh3, dg, h1, h3, nf);
	tr_matmul_backward(dx, dw1, dh1, x, w1, N, D, F);
	tr_matmul_backward(dx, dw3, dh3, x, w3, N, D, F);
}
