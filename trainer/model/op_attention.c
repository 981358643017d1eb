/* op_attention.c - causal multi-head self-attention (softmax(q k^T / sqrt(hd)) v), one (sequence, head)
 * per OpenMP iteration so every sum has a fixed order. */
#include <math.h>
#include <stdlib.h>
#include "ops.h"

void tr_attention_forward(tr_real *out, tr_real *att, const tr_real *qkv, int B, int T, int C, int NH)
{
	int hd = C / NH;
	tr_real scale = (tr_real)(1.0 / sqrt((double)hd));
#pragma omp parallel for collapse(2)
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++) {
			for (int t = 0; t < T; t++) {
				const tr_real *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * hd;
				tr_real *a = att + (((size_t)b * NH + h) * T + t) * T;
				tr_real mx = -INFINITY;
				for (int t2 = 0; t2 <= t; t2++) {
					const tr_real *k = qkv + ((size_t)b * T + t2) * 3 * C + C + (size_t)h * hd;
					tr_real s = 0;
					for (int i = 0; i < hd; i++)
						s += q[i] * k[i];
					s *= scale;
					a[t2] = s;
					if (s > mx)
						mx = s;
				}
				tr_real sum = 0;
				for (int t2 = 0; t2 <= t; t2++) {
					a[t2] = (tr_real)exp((double)(a[t2] - mx));
					sum += a[t2];
				}
				tr_real inv = 1 / sum;
				for (int t2 = 0; t2 <= t; t2++)
					a[t2] *= inv;
				for (int t2 = t + 1; t2 < T; t2++)
					a[t2] = 0;
				tr_real *o = out + ((size_t)b * T + t) * C + (size_t)h * hd;
				for (int i = 0; i < hd; i++)
					o[i] = 0;
				for (int t2 = 0; t2 <= t; t2++) {
					const tr_real *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + (size_t)h * hd;
					for (int i = 0; i < hd; i++)
						o[i] += a[t2] * v[i];
				}
			}
		}
}

/* Accumulates into dqkv.  Per query row t: dA = dO V^T, dS = A (dA - <A, dA>), dQ = dS K scale,
 * dK += dS^T Q scale, dV += A^T dO. */
void tr_attention_backward(tr_real *dqkv, const tr_real *dout, const tr_real *qkv, const tr_real *att,
			   int B, int T, int C, int NH)
{
	int hd = C / NH;
	tr_real scale = (tr_real)(1.0 / sqrt((double)hd));
#pragma omp parallel
	{
		tr_real *da = malloc(sizeof(tr_real) * (size_t)T);
#pragma omp for collapse(2)
		for (int b = 0; b < B; b++)
			for (int h = 0; h < NH; h++) {
				for (int t = 0; t < T; t++) {
					const tr_real *a = att + (((size_t)b * NH + h) * T + t) * T;
					const tr_real *dO = dout + ((size_t)b * T + t) * C + (size_t)h * hd;
					const tr_real *q = qkv + ((size_t)b * T + t) * 3 * C + (size_t)h * hd;
					tr_real *dq = dqkv + ((size_t)b * T + t) * 3 * C + (size_t)h * hd;
					tr_real dot = 0;
					for (int t2 = 0; t2 <= t; t2++) {
						const tr_real *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + (size_t)h * hd;
						tr_real *dv = dqkv + ((size_t)b * T + t2) * 3 * C + 2 * C + (size_t)h * hd;
						tr_real s = 0;
						for (int i = 0; i < hd; i++) {
							s += dO[i] * v[i];
							dv[i] += a[t2] * dO[i];
						}
						da[t2] = s;
						dot += a[t2] * s;
					}
					for (int t2 = 0; t2 <= t; t2++) {
						tr_real ds = a[t2] * (da[t2] - dot) * scale;
						const tr_real *k = qkv + ((size_t)b * T + t2) * 3 * C + C + (size_t)h * hd;
						tr_real *dk = dqkv + ((size_t)b * T + t2) * 3 * C + C + (size_t)h * hd;
						for (int i = 0; i < hd; i++) {
							dq[i] += ds * k[i];
							dk[i] += ds * q[i];
						}
					}
				}
			}
		free(da);
	}
}
