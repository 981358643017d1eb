/* model_ffn.c - the SwiGLU feed-forward block, one definition for the dense FFNs, the shared expert and
 * the routed experts (all local experts at once, as grouped products over their row blocks), so an
 * expert computes the same thing wherever it lives.  The _dev pair is the same block in graph mode
 * (row counts in backend memory). */
#include "model_impl.h"

void tr_ffn_forward(const struct tr_backend *be, tr_real *y, tr_real *h1, tr_real *h3, tr_real *g,
		    const tr_real *x, const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride,
		    const int *rows, int El, int D, int F)
{
	size_t R = 0;
	for (int j = 0; j < El; j++)
		R += (size_t)rows[j];
	if (R == 0)
		return;
	be->expert_matmul_forward(h1, x, w1, wstride, rows, El, D, F);
	be->expert_matmul_forward(h3, x, w3, wstride, rows, El, D, F);
	be->swiglu_forward(g, h1, h3, R * F);
	be->expert_matmul_forward(y, g, w2, wstride, rows, El, F, D);
}

void tr_ffn_backward(const struct tr_backend *be, tr_real *dx, tr_real *dw1, tr_real *dw3, tr_real *dw2,
		     const tr_real *dy, const tr_real *x, const tr_real *h1, const tr_real *h3, const tr_real *g,
		     const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride, const int *rows, int El,
		     int D, int F, tr_real *scratch)
{
	size_t R = 0;
	for (int j = 0; j < El; j++)
		R += (size_t)rows[j];
	if (R == 0)
		return;
	size_t nf = R * F;
	tr_real *dg = scratch, *dh1 = scratch + nf, *dh3 = scratch + 2 * nf;
	be->zero(dg, sizeof(tr_real) * nf);
	be->expert_matmul_backward(dg, dw2, dy, g, w2, wstride, rows, El, F, D);
	be->swiglu_backward(dh1, dh3, dg, h1, h3, nf);
	be->expert_matmul_backward(dx, dw1, dh1, x, w1, wstride, rows, El, D, F);
	be->expert_matmul_backward(dx, dw3, dh3, x, w3, wstride, rows, El, D, F);
}

/* one linear layer of the graph-mode FFN: grouped over device counts, or plain over all R rows */
static void lin_fwd(const struct tr_backend *be, tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride,
		    const int *rows_dev, int El, int R, int C, int OC)
{
	if (rows_dev)
		be->expert_matmul_forward_dev(out, inp, w, wstride, rows_dev, El, R, C, OC);
	else
		be->matmul_forward(out, inp, w, R, C, OC);
}

static void lin_bwd(const struct tr_backend *be, tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
		    const tr_real *w, size_t wstride, const int *rows_dev, int El, int R, int C, int OC)
{
	if (rows_dev)
		be->expert_matmul_backward_dev(dinp, dw, dout, inp, w, wstride, rows_dev, El, R, C, OC);
	else
		be->matmul_backward(dinp, dw, dout, inp, w, R, C, OC);
}

void tr_ffn_forward_dev(const struct tr_backend *be, tr_real *y, tr_real *h1, tr_real *h3, tr_real *g,
			const tr_real *x, const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride,
			const int *rows_dev, int El, int R, int D, int F)
{
	if (R == 0)
		return;
	lin_fwd(be, h1, x, w1, wstride, rows_dev, El, R, D, F);
	lin_fwd(be, h3, x, w3, wstride, rows_dev, El, R, D, F);
	be->swiglu_forward(g, h1, h3, (size_t)R * F);
	lin_fwd(be, y, g, w2, wstride, rows_dev, El, R, F, D);
}

void tr_ffn_backward_dev(const struct tr_backend *be, tr_real *dx, tr_real *dw1, tr_real *dw3, tr_real *dw2,
			 const tr_real *dy, const tr_real *x, const tr_real *h1, const tr_real *h3, const tr_real *g,
			 const tr_real *w1, const tr_real *w3, const tr_real *w2, size_t wstride, const int *rows_dev,
			 int El, int R, int D, int F, tr_real *scratch)
{
	if (R == 0)
		return;
	size_t nf = (size_t)R * F;
	tr_real *dg = scratch, *dh1 = scratch + nf, *dh3 = scratch + 2 * nf;
	be->zero(dg, sizeof(tr_real) * nf);
	lin_bwd(be, dg, dw2, dy, g, w2, wstride, rows_dev, El, R, F, D);
	be->swiglu_backward(dh1, dh3, dg, h1, h3, nf);
	lin_bwd(be, dx, dw1, dh1, x, w1, wstride, rows_dev, El, R, D, F);
	lin_bwd(be, dx, dw3, dh3, x, w3, wstride, rows_dev, El, R, D, F);
}
