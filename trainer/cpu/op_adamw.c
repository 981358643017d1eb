/* op_adamw.c - AdamW over a flat parameter segment on the CPU (the rule and its constants: optim.h).
 * Element-wise, so the result does not depend on the thread count. */
#include "ops.h"
#include "optim.h"

void tr_adamw_update(const struct tr_adamw *h, double lr, long t, float gscale, tr_real *p, const tr_real *g,
		     float *m, float *v, size_t n)
{
	const struct tr_adamw_step k = tr_adamw_fold(h, lr, t);
#pragma omp parallel for schedule(static) if (n > 32768)
	for (size_t i = 0; i < n; i++)
		p[i] = p[i] * k.decay - tr_adamw_moments(&k, (float)(g[i] * gscale), &m[i], &v[i]);
}
