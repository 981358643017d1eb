/* optim.c - the warmup + cosine schedule (see optim.h; the clipping factor is inline there, the AdamW
 * update is an op). */
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
