/* op_router.c - DeepSeek-V3 router: sigmoid scores, bias-for-selection, group-limited top-k, gates
 * from the unbiased scores normalised over the chosen k, times route_scale. */
#include <math.h>
#include "ops.h"

/* best of sel[] among allowed[] (ties: lower index); -1 when none left */
static int argmax_allowed(const tr_real *sel, const unsigned char *allowed, int E)
{
	int best = -1;
	for (int e = 0; e < E; e++)
		if (allowed[e] && (best < 0 || sel[e] > sel[best]))
			best = e;
	return best;
}

void tr_router_forward(tr_real *scores, int *idx, tr_real *gates, const tr_real *logits, const tr_real *bias,
		       const int *group_of, int G, int topk_groups, int N, int E, int k, float route_scale)
{
	int limit = topk_groups > 0 && topk_groups < G;
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		tr_real *s = scores + (size_t)n * E;
		tr_real sel[E];
		unsigned char allowed[E];
		for (int e = 0; e < E; e++) {
			s[e] = (tr_real)(1.0 / (1.0 + exp(-(double)logits[(size_t)n * E + e])));
			sel[e] = s[e] + (bias ? bias[e] : 0);
			allowed[e] = 1;
		}
		if (limit) {
			/* group score: sum of the group's two best biased scores (one when it has one expert) */
			tr_real top1[G], top2[G], gscore[G];
			unsigned char gsize[G], keep[G];
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
		int *ix = idx + (size_t)n * k;
		tr_real sum = 0;
		for (int i = 0; i < k; i++) {
			int e = argmax_allowed(sel, allowed, E);
			ix[i] = e;  /* model creation guarantees k experts are reachable */
			allowed[e] = 0;
			sum += s[e];
		}
		for (int i = 0; i < k; i++)
			gates[(size_t)n * k + i] = route_scale * s[ix[i]] / sum;
	}
}

/* g_i = rs s_i / S, S = sum_j s_j:  dL/ds_i = rs (dg_i - sum_j dg_j s_j / S) / S;  ds/dlogit = s (1 - s) */
void tr_router_backward(tr_real *dlogits, const tr_real *dgates, const tr_real *scores, const int *idx,
			int N, int E, int k, float route_scale)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		const tr_real *s = scores + (size_t)n * E, *dg = dgates + (size_t)n * k;
		const int *ix = idx + (size_t)n * k;
		tr_real *dl = dlogits + (size_t)n * E;
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
}
