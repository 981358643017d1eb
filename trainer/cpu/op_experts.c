/* op_experts.c - the MoE layer's bookkeeping and grouped products on the CPU: the stable counting sort
 * of (token, slot) pairs by expert, and the routed experts' linear layers over their contiguous row
 * blocks (each expert through the same tr_matmul as any linear layer, so an expert computes the same
 * bits whichever rows it gets). */
#include "ops.h"

void tr_route_plan(int *send_cnt_host, int *pos, int *src_tok, const int *idx, int Nk, int k, int E)
{
	for (int e = 0; e < E; e++)
		send_cnt_host[e] = 0;
	for (int i = 0; i < Nk; i++)
		send_cnt_host[idx[i]]++;
	int off[E];
	for (int e = 0, o = 0; e < E; e++)
		off[e] = o, o += send_cnt_host[e];
	for (int i = 0; i < Nk; i++) {
		int p = off[idx[i]]++;
		pos[i] = p;
		src_tok[p] = i / k;
	}
}

void tr_expert_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride,
			      const int *rows_host, int El, int C, int OC)
{
	for (int j = 0, r0 = 0; j < El; r0 += rows_host[j], j++)
		tr_matmul_forward(out + (size_t)r0 * OC, inp + (size_t)r0 * C, w + (size_t)j * wstride, rows_host[j], C, OC);
}

void tr_expert_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
			       const tr_real *w, size_t wstride, const int *rows_host, int El, int C, int OC)
{
	for (int j = 0, r0 = 0; j < El; r0 += rows_host[j], j++)
		tr_matmul_backward(dinp ? dinp + (size_t)r0 * C : NULL, dw + (size_t)j * wstride, dout + (size_t)r0 * OC,
				   inp + (size_t)r0 * C, w + (size_t)j * wstride, rows_host[j], C, OC);
}
