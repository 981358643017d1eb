/* backend_cpu.c - the CPU reference backend: host memory, and the ops of ops.h (op_*.c in this folder)
 * bound into struct tr_backend.  Nothing is queued, so sync() never fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "ops.h"

static int init(enum tr_dtype dtype, char *err, size_t errlen)
{
	if (dtype != TR_DTYPE_FP32) {
		snprintf(err, errlen, "--dtype bf16 needs --device cuda: the CPU reference computes in fp32 only");
		return -1;
	}
	return 0;
}

static const char *device_name(void)
{
	return "host CPU";
}

static double no_peak(void)
{
	return 0;
}

static void *alloc(size_t bytes)
{
	return calloc(1, bytes ? bytes : 1);
}

static void upload(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		memcpy(dst, src, bytes);
}

static void zero(void *p, size_t bytes)
{
	if (bytes)
		memset(p, 0, bytes);
}

static int sync(char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return 0;
}

/* graph-mode variants: backend memory is host memory here, so they are the ops above */
static void route_plan_dev(int *cnt, int *pos, int *src_tok, const int *idx, int Nk, int k, int E)
{
	tr_route_plan(cnt, pos, src_tok, idx, Nk, k, E);
}

static void expert_fwd_dev(tr_real *out, const tr_real *inp, const tr_real *w, size_t wstride, const int *rows, int El,
			   int R, int C, int OC)
{
	(void)R;
	tr_expert_matmul_forward(out, inp, w, wstride, rows, El, C, OC);
}

static void expert_bwd_dev(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp, const tr_real *w,
			   size_t wstride, const int *rows, int El, int R, int C, int OC)
{
	(void)R;
	tr_expert_matmul_backward(dinp, dw, dout, inp, w, wstride, rows, El, C, OC);
}

static void key_sum(tr_real *out, const tr_real *rows, const int *pos, int N, int k, int D)
{
	for (int t = 0; t < N; t++) {
		tr_real *o = out + (size_t)t * D;
		for (int c = 0, last = -1; c < k; c++) {
			int p = -1; /* the next row of token t: the smallest position above the last one */
			for (int s = 0; s < k; s++) {
				int q = pos[(size_t)t * k + s];
				if (q > last && (p < 0 || q < p))
					p = q;
			}
			const tr_real *r = rows + (size_t)p * D;
			for (int d = 0; d < D; d++)
				o[d] = c ? o[d] + r[d] : r[d];
			last = p;
		}
	}
}

static void sum_to(double *out, const tr_real *x, size_t n, int square)
{
	out[0] = square ? tr_sumsq(x, n) : tr_sum(x, n);
}

const struct tr_backend tr_backend_cpu = {
	"cpu", 0, init, device_name, no_peak,
	alloc, free, alloc, free, upload, upload, upload, zero, sync,
	tr_embedding_forward, tr_embedding_backward,
	tr_matmul_forward, tr_matmul_backward,
	tr_rmsnorm_forward, tr_rmsnorm_backward,
	tr_rope_forward, tr_rope_backward,
	tr_attention_forward, tr_attention_backward,
	tr_swiglu_forward, tr_swiglu_backward,
	tr_router_forward, tr_router_backward,
	tr_permute_forward, tr_permute_backward, tr_permute_scatter,
	tr_unpermute_forward, tr_unpermute_backward,
	tr_crossentropy_forward, tr_crossentropy_backward,
	tr_route_plan, tr_expert_matmul_forward, tr_expert_matmul_backward,
	tr_add, tr_scale, tr_sum, tr_sumsq, tr_adamw_update,
	route_plan_dev, expert_fwd_dev, expert_bwd_dev, key_sum, sum_to,
	NULL, NULL, NULL, NULL, NULL, NULL, /* no graph capture */
};
