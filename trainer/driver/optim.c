/* optim.c - warmup + cosine schedule and the clipping factor (see optim.h; the AdamW update is an op). */
#include "optim.h"

#include <math.h>

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

float tr_clip_scale(double norm, double max_norm)
{
	if (max_norm <= 0 || !(norm > max_norm))
		return 1.0f;
	return (float)(max_norm / norm);
}
