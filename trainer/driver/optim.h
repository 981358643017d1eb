/* optim.h - the optimizer op: AdamW (decoupled weight decay), the learning-rate schedule (linear
 * warmup then cosine decay to a floor), and global-norm gradient clipping.
 *
 * AdamW has no backward: its "forward" is the update of parameters and moments from gradients.
 * Everything here is deterministic and independent of the OpenMP thread count: the update is
 * element-wise, and sums of squares are taken over fixed blocks combined in order, so a resumed run
 * and runs with different OMP_NUM_THREADS produce the same bits.
 *
 * Clipping across ranks: the caller sums tr_sumsq over what each rank uniquely owns (replicated
 * gradients once, already identical on every rank after the all-reduce; expert gradients summed over
 * the EP group with tr_allreduce_f64), so every rank sees the same global norm and clips identically.
 */
#ifndef TR_OPTIM_H
#define TR_OPTIM_H

#include <stddef.h>

struct tr_sched {
	double lr;       /* peak learning rate */
	double min_lr;   /* floor reached at the last step */
	long warmup;     /* steps of linear warmup from lr/warmup to lr */
	long total;      /* total steps of the run (the cosine ends here) */
};
/* Learning rate for 0-based step s: (s+1)/warmup*lr while s < warmup, then
 * min_lr + (lr-min_lr) * (1 + cos(pi * (s-warmup)/(total-warmup))) / 2. */
double tr_sched_lr(const struct tr_sched *sc, long s);

struct tr_adamw {
	float beta1, beta2, eps;
	float wd;        /* decoupled weight decay (applied as p -= lr*wd*p), 0 for norms and biases */
};
/* One AdamW update of n parameters at 1-based optimizer step t.  g is scaled by gscale first (the
 * clipping factor; 1 = none).  m and v are the first and second moments (start at zero). */
void tr_adamw_update(const struct tr_adamw *h, double lr, long t, float gscale, float *p, const float *g,
		     float *m, float *v, size_t n);

/* Sum of squares in double, deterministic for any thread count. */
double tr_sumsq(const float *g, size_t n);
/* Clip factor for a global norm: min(1, max_norm / norm); 1 when max_norm <= 0 (clipping off). */
float tr_clip_scale(double norm, double max_norm);

#endif
