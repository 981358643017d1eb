/* route_pick.h - the routing rule for one token, DeepSeek-V3's: sigmoid scores; the bias (aux-loss-free
 * balancing) added for selection only; with groups, each group scored by the sum of its two best biased
 * scores and only the best topk_groups groups allowed; then the top k allowed experts (ties: lower id);
 * gates = route_scale x score / sum of the chosen scores; and its gradient.  One definition, compiled into
 * the CPU reference (trainer/cpu/op_router.c) and the CUDA kernels (trainer/cuda/router.cu, one thread per
 * token), so both pick the same experts in the same order and back-propagate them alike.
 */
#ifndef TR_ROUTE_PICK_H
#define TR_ROUTE_PICK_H

#include <math.h>
#include "host_device.h"
#include "model.h"

/* Scratch the caller provides: sel[E], allowed[E]; with limit, top1/top2/gscore/gsize/keep[G].  s: the
 * token's E scores, written over logit (they may alias: each logit is read before its score is written);
 * ix/gates: its k experts and gates.  Model creation guarantees k experts are reachable. */
struct tr_route_scratch {
	tr_real *sel, *top1, *top2, *gscore;
	unsigned char *allowed, *gsize, *keep;
};

TR_HOST_DEVICE static inline void tr_route_pick(tr_real *s, int *ix, tr_real *gates, const tr_real *logit,
						 const tr_real *bias, const int *group_of, int G, int limit,
						 int topk_groups, int E, int k, float route_scale,
						 const struct tr_route_scratch *w)
{
	tr_real *sel = w->sel;
	unsigned char *allowed = w->allowed;
	for (int e = 0; e < E; e++) {
		s[e] = (tr_real)(1.0 / (1.0 + exp(-(double)logit[e])));
		sel[e] = s[e] + (bias ? bias[e] : 0);
		allowed[e] = 1;
	}
	if (limit) {
		tr_real *top1 = w->top1, *top2 = w->top2, *gscore = w->gscore;
		unsigned char *gsize = w->gsize, *keep = w->keep;
		for (int g = 0; g < G; g++)
			top1[g] = top2[g] = -INFINITY, gsize[g] = 0, keep[g] = 0;
		for (int e = 0; e < E; e++) {
			int g = group_of[e];
			gsize[g] = gsize[g] < 2 ? gsize[g] + 1 : 2;
			if (sel[e] > top1[g])
				top2[g] = top1[g], top1[g] = sel[e];
			else if (sel[e] > top2[g])
				top2[g] = sel[e];
		}
		for (int g = 0; g < G; g++)
			gscore[g] = gsize[g] >= 2 ? top1[g] + top2[g] : top1[g];
		for (int m = 0; m < topk_groups; m++) {
			int best = -1;
			for (int g = 0; g < G; g++)
				if (!keep[g] && gsize[g] && (best < 0 || gscore[g] > gscore[best]))
					best = g;
			if (best >= 0)
				keep[best] = 1;
		}
		for (int e = 0; e < E; e++)
			allowed[e] = keep[group_of[e]];
	}
	tr_real sum = 0;
	for (int i = 0; i < k; i++) {
		int best = -1;
		for (int e = 0; e < E; e++)
			if (allowed[e] && (best < 0 || sel[e] > sel[best]))
				best = e;
		ix[i] = best;
		allowed[best] = 0;
		sum += s[best];
	}
	for (int i = 0; i < k; i++)
		gates[i] = route_scale * s[ix[i]] / sum;
}

/* Its backward for the token: the gradient dg of its k gates to its E logits (dl, every one written).
 * g_i = rs s_i / S, S = sum_j s_j:  dL/ds_i = rs (dg_i - sum_j dg_j s_j / S) / S;  ds/dlogit = s (1 - s) */
TR_HOST_DEVICE static inline void tr_route_grad(tr_real *dl, const tr_real *dg, const tr_real *s, const int *ix, int E,
						 int k, float route_scale)
{
	tr_real S = 0, w = 0;
	for (int e = 0; e < E; e++)
		dl[e] = 0;
	for (int i = 0; i < k; i++) {
		S += s[ix[i]];
		w += dg[i] * s[ix[i]];
	}
	for (int i = 0; i < k; i++) {
		tr_real si = s[ix[i]];
		tr_real ds = route_scale * (dg[i] - w / S) / S;
		dl[ix[i]] = ds * si * (1 - si);
	}
}

#endif
