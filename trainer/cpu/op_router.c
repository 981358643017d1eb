/* op_router.c - DeepSeek-V3 router on the CPU: the rule of route_pick.h for every token, and its backward. */
#include <math.h>
#include "ops.h"
#include "route_pick.h"

void tr_router_forward(tr_real *scores, int *idx, tr_real *gates, const tr_real *logits, const tr_real *bias,
		       const int *group_of, int G, int topk_groups, int N, int E, int k, float route_scale)
{
	int limit = topk_groups > 0 && topk_groups < G, Gs = limit ? G : 1;
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		tr_real sel[E], top1[Gs], top2[Gs], gscore[Gs];
		unsigned char allowed[E], gsize[Gs], keep[Gs];
		struct tr_route_scratch w = { sel, top1, top2, gscore, allowed, gsize, keep };
		tr_route_pick(scores + (size_t)n * E, idx + (size_t)n * k, gates + (size_t)n * k, logits + (size_t)n * E,
			      bias, group_of, G, limit, topk_groups, E, k, route_scale, &w);
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
