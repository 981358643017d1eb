/* plan_metrics.c - the traffic figures of a layout, as defined in doc/planner.md.
 *
 * Uniform routing: every rank of an EP group sends the same bytes to every other member.  Over all
 * ordered member pairs (a, b), a != b:
 *   nvlink_local_fraction = pairs in the same NVLink domain / all pairs
 *   rail_aligned_fraction = pairs in different domains where b's domain holds a group member on
 *                           a's rail (the token crosses the network rail to rail, then NVLink),
 *                           / pairs in different domains.
 * Each fraction is 1 when there is nothing to count.  Linear in the world size: per group, member
 * counts per domain and a rail mask per domain (rails >= 64 count as not aligned).
 */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

void mt_layout_summary(const struct mt_layout *l, struct mt_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->world = l->world;
	s->ep_groups = l->n_groups;
	s->nvlink_local_fraction = 1;
	s->rail_aligned_fraction = 1;
	int *cnt = calloc((size_t)l->n_domains, sizeof(int));
	uint64_t *mask = calloc((size_t)l->n_domains, sizeof(uint64_t));
	int *touched = malloc(sizeof(int) * (size_t)(l->ep > 0 ? l->ep : 1));
	if (!cnt || !mask || !touched) {
		free(cnt);
		free(mask);
		free(touched);
		return;
	}
	double pairs = 0, local = 0, cross = 0, aligned = 0, sum_domains = 0;
	for (int g = 0; g < l->n_groups; g++) {
		const int *m = l->members + (size_t)g * l->ep;
		int nt = 0;
		for (int e = 0; e < l->ep; e++) {
			int d = l->domain[m[e]], r = l->rail[m[e]];
			if (!cnt[d]++)
				touched[nt++] = d;
			if (r >= 0 && r < 64)
				mask[d] |= 1ull << r;
		}
		/* per rail: members in domains that have that rail */
		double by_rail[64] = {0};
		for (int k = 0; k < nt; k++) {
			int d = touched[k];
			for (uint64_t x = mask[d]; x; x &= x - 1)
				by_rail[__builtin_ctzll(x)] += cnt[d];
			local += (double)cnt[d] * (cnt[d] - 1);
		}
		for (int e = 0; e < l->ep; e++) {
			int d = l->domain[m[e]], r = l->rail[m[e]];
			cross += l->ep - cnt[d];
			if (r >= 0 && r < 64)
				aligned += by_rail[r] - ((mask[d] >> r) & 1 ? cnt[d] : 0);
		}
		pairs += (double)l->ep * (l->ep - 1);
		sum_domains += nt;
		if (nt == 1)
			s->ep_groups_local++;
		if (nt > s->max_domains_per_group)
			s->max_domains_per_group = nt;
		for (int k = 0; k < nt; k++) {
			cnt[touched[k]] = 0;
			mask[touched[k]] = 0;
		}
	}
	if (pairs > 0)
		s->nvlink_local_fraction = local / pairs;
	if (cross > 0)
		s->rail_aligned_fraction = aligned / cross;
	if (l->n_groups)
		s->mean_domains_per_group = sum_domains / l->n_groups;
	free(cnt);
	free(mask);
	free(touched);
}

int *mt_layout_megatron(struct mt_layout *l, int W, int E, int T, int n_domains, int **node, int **domain, int **rail)
{
	int *lay = malloc(sizeof(int) * (size_t)W * 5 + 1);
	if (!lay)
		return NULL;
	int *lg = lay, *lm = lay + 4 * (size_t)W, G = W / E;
	*node = lay + W;
	*domain = lay + 2 * (size_t)W;
	*rail = lay + 3 * (size_t)W;
	for (int r = 0; r < W; r++)
		lg[r] = (r / T) / E * T + r % T;
	for (int g = 0; g < G; g++)
		for (int e = 0; e < E; e++)
			lm[(size_t)g * E + e] = ((g / T) * E + e) * T + g % T;
	*l = (struct mt_layout){W, E, G, n_domains, lg, *node, *domain, *rail, lm};
	return lay;
}
