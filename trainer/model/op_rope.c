/* op_rope.c - rotary position embedding on the query and key heads (pairs of adjacent values). */
#include <math.h>
#include "ops.h"

void tr_rope_table(tr_real *cs, int T, int hd, float theta)
{
	for (int t = 0; t < T; t++)
		for (int i = 0; i < hd / 2; i++) {
			double f = pow((double)theta, -2.0 * i / hd), a = t * f;
			cs[((size_t)t * (hd / 2) + i) * 2] = (tr_real)cos(a);
			cs[((size_t)t * (hd / 2) + i) * 2 + 1] = (tr_real)sin(a);
		}
}

/* sign = +1 rotates forward; -1 applies the transpose (inverse rotation) for the backward */
static void rope_apply(tr_real *x, const tr_real *cs, int B, int T, int stride, int nh, int hd, tr_real sign)
{
#pragma omp parallel for
	for (int r = 0; r < B * T; r++) {
		const tr_real *c = cs + (size_t)(r % T) * hd;
		for (int h = 0; h < nh; h++) {
			tr_real *v = x + (size_t)r * stride + (size_t)h * hd;
			for (int i = 0; i < hd / 2; i++) {
				tr_real co = c[2 * i], si = sign * c[2 * i + 1];
				tr_real a = v[2 * i], b = v[2 * i + 1];
				v[2 * i] = a * co - b * si;
				v[2 * i + 1] = a * si + b * co;
			}
		}
	}
}

void tr_rope_forward(tr_real *x, const tr_real *cs, int B, int T, int stride, int nh, int hd)
{
	rope_apply(x, cs, B, T, stride, nh, hd, 1);
}

void tr_rope_backward(tr_real *dx, const tr_real *cs, int B, int T, int stride, int nh, int hd)
{
	rope_apply(dx, cs, B, T, stride, nh, hd, -1);
}
