/* optim.c - AdamW, warmup + cosine schedule, global-norm clipping (see optim.h). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>

double tr_sched_lr(const struct tr_sched *sc, long s)
{
	if (s < sc->warmup)
		return sc->lr * (double)(s + 1) / (double)sc->warmup;
	long span = sc->total - sc->warmup;
	if (span <= 1)
		return sc->lr;
	double f = (double)(s - sc->warmup) / (double)(span - 1);
	if (f > 1)
		f = 1;
	return sc->min_lr + (sc->lr - sc->min_lr) * 0.5 * (1.0 + cos(M_PI * f));
}

void tr_adamw_update(const struct tr_adamw *h, double lr, long t, float gscale, float *p, const float *g,
		     float *m, float *v, size_t n)
{
	/* bias corrections folded into the step size and epsilon, computed once in double */
	double bc1 = 1.0 - pow(h->beta1, (double)t), bc2 = 1.0 - pow(h->beta2, (double)t);
	const float b1 = h->beta1, b2 = h->beta2, a1 = 1.0f - b1, a2 = 1.0f - b2;
	const float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2)), eps = h->eps;
	const float decay = (float)(1.0 - lr * h->wd);
#pragma omp parallel for schedule(static) if (n > 32768)
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] * gscale;
		float mi = b1 * m[i] + a1 * gi;
		float vi = b2 * v[i] + a2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		p[i] = p[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
	}
}

#define SUMSQ_BLOCK 8192

double tr_sumsq(const float *g, size_t n)
{
	size_t nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
	double stackpart[64], *part = nb <= 64 ? stackpart : malloc(nb * sizeof(double));
	if (!part) { /* no memory for partials: a serial sum is just as deterministic */
		double s = 0;
		for (size_t i = 0; i < n; i++)
			s += (double)g[i] * g[i];
		return s;
	}
#pragma omp parallel for schedule(static) if (nb > 4)
	for (size_t b = 0; b < nb; b++) {
		size_t lo = b * SUMSQ_BLOCK, hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
		double s = 0;
		for (size_t i = lo; i < hi; i++)
			s += (double)g[i] * g[i];
		part[b] = s;
	}
	double s = 0;
	for (size_t b = 0; b < nb; b++)
		s += part[b];
	if (part != stackpart)
		free(part);
	return s;
}

float tr_clip_scale(double norm, double max_norm)
{
	if (max_norm <= 0 || !(norm > max_norm))
		return 1.0f;
	return (float)(max_norm / norm);
}
