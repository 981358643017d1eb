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

#include <math.h>
#include <stddef.h>

#include "../model/host_device.h"

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
/* The update of one parameter at 1-based step t, g already times the clipping factor:
 *   m = b1 m + a1 g;  v = b2 v + a2 g^2;  p = p decay - step m / (sqrt(v) rbc2 + eps)
 * with the bias corrections folded into step and rbc2 once per call, in double.  Every backend's AdamW
 * (ops.h tr_adamw_update, the CUDA one) takes its constants from here, so they update alike. */
struct tr_adamw_step {
	float b1, b2, a1, a2, step, rbc2, eps, decay;
};
static inline struct tr_adamw_step tr_adamw_fold(const struct tr_adamw *h, double lr, long t)
{
	double bc1 = 1.0 - pow(h->beta1, (double)t), bc2 = 1.0 - pow(h->beta2, (double)t);
	struct tr_adamw_step k = { h->beta1, h->beta2, 1.0f - h->beta1, 1.0f - h->beta2, (float)(lr / bc1),
				   (float)(1.0 / sqrt(bc2)), h->eps, (float)(1.0 - lr * h->wd) };
	return k;
}
/* Inline for the host and the GPU (host_device.h): the CUDA backend runs the very rules below. */
/* One element's moments updated in place, and the step term the caller subtracts from p * decay:
 * p = p * k.decay - tr_adamw_moments(...), written by each backend in its parameter type (the CPU
 * reference also runs in double, for the gradient check), so the update stays one rule. */
TR_HOST_DEVICE static inline float tr_adamw_moments(const struct tr_adamw_step *k, float g, float *m, float *v)
{
	float mi = k->b1 * *m + k->a1 * g;
	float vi = k->b2 * *v + k->a2 * g * g;
	*m = mi;
	*v = vi;
	return k->step * mi / (sqrtf(vi) * k->rbc2 + k->eps);
}
/* The update's loop and the sum of squares for clipping are ops of the backend (ops.h, backend.h). */
/* Clip factor for a global norm: min(1, max_norm / norm); 1 when max_norm <= 0 (clipping off);
 * --cuda-graph computes it on the device. */
TR_HOST_DEVICE static inline float tr_clip_scale(double norm, double max_norm)
{
	if (max_norm <= 0 || !(norm > max_norm))
		return 1.0f;
	return (float)(max_norm / norm);
}

#endif
