/* op_router.c - DeepSeek-V3 router on the CPU: the rule of route_pick.h and its gradient for every token. */
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

void tr_router_backward(tr_real *dlogits, const tr_real *dgates, const tr_real *scores, const int *idx,
			int N, int E, int k, float route_scale)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++)
		tr_route_grad(dlogits + (size_t)n * E, dgates + (size_t)n * k, scores + (size_t)n * E, idx + (size_t)n * k, E,
			      k, route_scale);
}
