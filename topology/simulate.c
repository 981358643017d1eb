/* simulate.c - a fabric model of MoE all-to-all (dispatch + combine) for a layout.
 *
 * Model (doc/planner.md states it in full): every rank holds `tokens` tokens, each sent to top-k
 * experts of its EP group.  Dispatch is hierarchical, as DeepEP does it: a token crosses the
 * network once per remote NVLink domain it needs, on the sender's rail, to the group member of that
 * domain on the same rail, and fans out over NVLink from there.  When that domain has no member on
 * the sender's rail the bytes cross the spine and go `oversub` times slower.  Per rank, time =
 * max(network bytes / NIC bandwidth, NVLink bytes / NVLink bandwidth); an EP group waits for its
 * slowest rank and the training step for the slowest group (also reported: the mean over groups,
 * i.e. the fabric load); combine mirrors dispatch.  No latency, no congestion beyond the spine factor.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

void mt_sim_default_params(struct mt_sim_params *sp)
{
	sp->tokens = 4096;
	sp->hidden = 7168;
	sp->topk = 8;
	sp->bytes = 2;
	sp->nvlink_gbs = 450;
	sp->nic_gbs = 50;
	sp->oversub = 1;
	sp->route_groups = 0;
}

static int sim_layout(const struct mt_layout *l, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err,
		      size_t errlen)
{
	memset(res, 0, sizeof(*res));
	if (!(sp->tokens > 0 && sp->hidden > 0 && sp->topk >= 1 && sp->bytes > 0 && sp->nvlink_gbs > 0 &&
	      sp->nic_gbs > 0 && sp->oversub >= 1))
		return mt_plan_err(err, errlen, MT_EINVAL,
				   "simulation parameters must be positive (top-k >= 1, oversubscription >= 1)");
	mt_layout_summary(l, &res->summary);
	int *cnt = calloc((size_t)l->n_domains, sizeof(int));
	uint64_t *mask = calloc((size_t)l->n_domains, sizeof(uint64_t));
	int *touched = malloc(sizeof(int) * (size_t)l->ep);
	if (!cnt || !mask || !touched) {
		free(cnt);
		free(mask);
		free(touched);
		return mt_plan_err(err, errlen, MT_ENOMEM, "out of memory");
	}
	double E = l->ep, k = sp->topk, tok_bytes = sp->tokens * sp->hidden * sp->bytes, worst = 0, sum = 0;
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
		int M = sp->route_groups;
		double gworst = 0;
		bool limited = M > 0 && M < nt;
		for (int e = 0; e < l->ep; e++) {
			int d0 = l->domain[m[e]], r = l->rail[m[e]];
			double net = 0, nvl;
			nvl = limited ? k / nt * (cnt[d0] - 1) / cnt[d0] : k * (cnt[d0] - 1) / E;
			for (int j = 0; j < nt; j++) {
				int d = touched[j];
				if (d == d0)
					continue;
				double hit = limited ? (double)M / nt : 1 - pow(1 - cnt[d] / E, k);
				double copies = limited ? k / nt : k * cnt[d] / E;
				bool aligned = r >= 0 && r < 64 && ((mask[d] >> r) & 1);
				net += hit * (aligned ? 1 : sp->oversub);
				nvl += copies * (1 - 1.0 / cnt[d]);
			}
			double t_net = net * tok_bytes / (sp->nic_gbs * 1e9), t_nvl = nvl * tok_bytes / (sp->nvlink_gbs * 1e9);
			double t = t_net > t_nvl ? t_net : t_nvl;
			if (t > gworst)
				gworst = t;
			if (t > worst) {
				worst = t;
				res->net_bytes_max = net * tok_bytes;
				res->nvl_bytes_max = nvl * tok_bytes;
			}
		}
		sum += gworst;
		for (int j = 0; j < nt; j++) {
			cnt[touched[j]] = 0;
			mask[touched[j]] = 0;
		}
	}
	if (l->n_groups)
		res->mean_group_us = 2 * sum / l->n_groups * 1e6;
	free(cnt);
	free(mask);
	free(touched);
	res->dispatch_us = worst * 1e6;
	res->combine_us = worst * 1e6;
	res->total_us = 2 * worst * 1e6;
	return 0;
}

int mt_sim_plan(const struct mt_plan *p, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err,
		size_t errlen)
{
	int W = p->world, E = p->spec.ep;
	int *lay = malloc(sizeof(int) * (size_t)W * 5);
	if (!lay)
		return mt_plan_err(err, errlen, MT_ENOMEM, "out of memory");
	int *lg = lay, *ln = lay + W, *ld = lay + 2 * W, *lr = lay + 3 * W, *lm = lay + 4 * W;
	for (int r = 0; r < W; r++) {
		const struct mt_rank *R = &p->ranks[p->by_rank[r]];
		lg[r] = R->ep_group;
		ln[r] = R->node;
		ld[r] = R->domain;
		lr[r] = R->rail;
	}
	for (int g = 0; g < p->n_groups; g++)
		memcpy(lm + (size_t)g * E, p->groups[g].members, sizeof(int) * (size_t)E);
	struct mt_layout L = {W, E, p->n_groups, p->n_domains, lg, ln, ld, lr, lm};
	int rc = sim_layout(&L, sp, res, err, errlen);
	free(lay);
	return rc;
}

int mt_sim_default(const struct mt_job *job, const struct mt_plan *p, const struct mt_sim_params *sp,
		   struct mt_sim_result *res, char *err, size_t errlen)
{
	int W = p->world, E = p->spec.ep, T = p->spec.tp > 0 ? p->spec.tp : 1;
	int *lay = malloc(sizeof(int) * (size_t)W * 5);
	if (!lay)
		return mt_plan_err(err, errlen, MT_ENOMEM, "out of memory");
	int *lg = lay, *ln = lay + W, *ld = lay + 2 * W, *lr = lay + 3 * W, *lm = lay + 4 * W;
	for (int i = 0, acc = 0; i < job->n_nodes; i++) {
		const struct mt_node *m = job->models[i];
		for (int t = 0; t < job->tasks[i]; t++) {
			int pid = job->procids ? job->procids[i][t] : acc + t;
			ln[pid] = i;
			ld[pid] = p->node_domain[i];
			lr[pid] = t < m->n_gpus ? m->gpus[t].rail : -1; /* Slurm: local task t on the t-th GPU */
		}
		acc += job->tasks[i];
	}
	for (int r = 0; r < W; r++)
		lg[r] = (r / T) / E * T + r % T;
	for (int g = 0; g < p->n_groups; g++)
		for (int e = 0; e < E; e++)
			lm[(size_t)g * E + e] = ((g / T) * E + e) * T + g % T;
	struct mt_layout L = {W, E, p->n_groups, p->n_domains, lg, ln, ld, lr, lm};
	int rc = sim_layout(&L, sp, res, err, errlen);
	free(lay);
	return rc;
}
