/* simulate.c - a fabric model of MoE all-to-all (dispatch + combine) for a layout.
 *
 * Model (doc/planner.md states it in full): every rank holds `tokens` tokens, each sent to top-k
 * experts of its EP group.  Dispatch is hierarchical, as DeepEP does it: a token crosses the
 * network once per remote NVLink domain it needs, on the sender's rail, to the group member of that
 * domain on the same rail, and fans out over NVLink from there.  When that domain has no member on
 * the sender's rail the bytes cross the spine and go `oversub` times slower.  NICs are full duplex,
 * so a rank's network load is the larger of what it sends and what it receives: the few members of
 * a small domain chunk receive from every sender on their rail (incast), which is what makes a group
 * split 60 + 4 over two racks as slow as one spread over 16.  Per rank, time =
 * max(network bytes / NIC bandwidth, NVLink bytes / NVLink bandwidth); an EP group waits for its
 * slowest rank and the training step for the slowest group (also reported: the mean over groups,
 * i.e. the fabric load); combine mirrors dispatch.
 * Spine: all EP groups run their all-to-all at once (a synchronous MoE layer), so the bytes leaving and
 * entering an NVLink domain, summed over every group, share that domain's uplink capacity, its GPUs'
 * NIC bandwidth / oversub (fair share, rail-optimised fat tree).  A group that crosses domains takes
 * at least the spine time of every domain it touches.  With oversub 1 that only binds when traffic is uneven.
 * No latency, no other congestion.
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

/* Rail slot of a rank: rails 0..63 as they are, anything else (none, or beyond 64) one shared slot
 * that never counts as aligned. */
#define NSLOT 65
static int rail_slot(int r)
{
	return r >= 0 && r < 64 ? r : 64;
}

double mt_sim_hit(double c, double E, double x)
{
	return c >= E ? 1 : 1 - pow(1 - c / E, x);
}

double mt_sim_recv(double h, double rail_senders, double rail_own, double unaligned, double members, double oversub)
{
	return (rail_own > 0 ? h * rail_senders / rail_own : 0) + h * unaligned / members * oversub;
}

/* Group-limited routing: a token reaches M of the group's domains on average, and a domain's chance
 * grows with its share of the experts as under uniform routing, only with fewer draws: the x <= k
 * for which the expected number of domains, sum_j 1 - (1 - c_j/E)^x, is M (bisection; x = k when
 * uniform routing already reaches no more than M). */
double mt_sim_draws(const int *cnt, int nt, double E, double k, int M)
{
	double lo = 0, hi = k;
	for (int it = 0; it < 60; it++) {
		double x = (lo + hi) / 2, s = 0;
		for (int j = 0; j < nt; j++)
			s += mt_sim_hit(cnt[j], E, x);
		if (s > M)
			hi = x;
		else
			lo = x;
	}
	return lo;
}

int mt_sim_layout(const struct mt_layout *l, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err,
		  size_t errlen)
{
	memset(res, 0, sizeof(*res));
	if (!(sp->tokens > 0 && sp->hidden > 0 && sp->topk >= 1 && sp->bytes > 0 && sp->nvlink_gbs > 0 &&
	      sp->nic_gbs > 0 && sp->oversub >= 1))
		return mt_seterr(err, errlen, MT_EINVAL,
				   "simulation parameters must be positive (top-k >= 1, oversubscription >= 1)");
	mt_layout_summary(l, &res->summary);
	int E_ = l->ep;
	int *tix = malloc(sizeof(int) * (size_t)l->n_domains); /* domain -> index among the group's domains */
	int *touched = malloc(sizeof(int) * (size_t)E_);
	int *cnt = calloc((size_t)E_, sizeof(int));              /* members per touched domain */
	int *nr = calloc((size_t)E_ * NSLOT, sizeof(int));      /* members per touched domain and rail slot */
	int *unal = malloc(sizeof(int) * (size_t)E_);            /* senders outside d with no rail peer in d */
	double *hit = malloc(sizeof(double) * (size_t)E_ * 2), *cpt = hit ? hit + E_ : NULL;
	/* per domain: cross-domain bytes out and in (in tokens, all groups), GPUs; per group: its slowest
	 * rank's time */
	double *dout = calloc((size_t)l->n_domains * 2 + (size_t)l->n_groups * 2, sizeof(double));
	int *dn = calloc((size_t)l->n_domains, sizeof(int));
	int rc = 0;
	if (!tix || !touched || !cnt || !nr || !unal || !hit || !dout || !dn) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto out;
	}
	double *din = dout + l->n_domains, *gt = din + l->n_domains, *gnt = gt + l->n_groups;
	for (int d = 0; d < l->n_domains; d++)
		tix[d] = -1;
	double E = E_, k = sp->topk, tok_bytes = sp->tokens * sp->hidden * sp->bytes, worst = 0, sum = 0,
	       rworst = 0;
	for (int g = 0; g < l->n_groups; g++) {
		const int *m = l->members + (size_t)g * E_;
		int nt = 0, G[NSLOT] = {0}; /* G: the group's members per rail slot */
		for (int e = 0; e < E_; e++) {
			int d = l->domain[m[e]], s = rail_slot(l->rail[m[e]]);
			if (tix[d] < 0) {
				tix[d] = nt;
				touched[nt++] = d;
			}
			cnt[tix[d]]++;
			nr[(size_t)tix[d] * NSLOT + s]++;
			G[s]++;
		}
		int M = sp->route_groups;
		double x = k; /* uniform routing: k independent expert draws */
		if (M > 0 && M < nt)
			x = mt_sim_draws(cnt, nt, E, k, M);
		double H = 0; /* remote-or-not domains a token reaches, summed */
		for (int j = 0; j < nt; j++) {
			double c = cnt[j];
			/* hit: probability a token needs domain j; cpt: copies for j when it does (experts
			 * stay balanced, so j gets k c/E copies per token on average either way) */
			hit[j] = mt_sim_hit(c, E, x);
			cpt[j] = k * c / E / hit[j];
			H += hit[j];
			unal[j] = 0;
			for (int s = 0; s < NSLOT; s++)
				if (G[s] && (s == 64 || !nr[(size_t)j * NSLOT + s]))
					unal[j] += G[s] - nr[(size_t)j * NSLOT + s];
		}
		/* spine: each of j's members sends one copy per other domain it needs; each sender outside
		 * j sends j one copy when it needs j (bytes, not the rail penalty) */
		for (int j = 0; j < nt; j++) {
			dout[touched[j]] += cnt[j] * (H - hit[j]);
			din[touched[j]] += (E - cnt[j]) * hit[j];
			dn[touched[j]] += cnt[j];
		}
		double gworst = 0;
		for (int e = 0; e < E_; e++) {
			int i = tix[l->domain[m[e]]], s = rail_slot(l->rail[m[e]]);
			int own = nr[(size_t)i * NSLOT + s];
			double ci = cnt[i], send = 0, recv, fwd;
			/* send: one crossing per remote domain needed, on this rank's rail if the domain has a
			 * member there, else over the spine */
			for (int j = 0; j < nt; j++)
				if (j != i)
					send += hit[j] * (s < 64 && nr[(size_t)j * NSLOT + s] ? 1 : sp->oversub);
			/* receive: the senders outside i on this rail share i's members on this rail; senders
			 * whose rail i lacks share all of i's members (over the spine) */
			double rtok = mt_sim_recv(hit[i], s < 64 ? G[s] - own : 0, s < 64 ? own : 0, unal[i], ci, 1);
			recv = mt_sim_recv(hit[i], s < 64 ? G[s] - own : 0, s < 64 ? own : 0, unal[i], ci, sp->oversub);
			/* NVLink: this rank's own copies for its domain, plus the copies it forwards for the
			 * tokens it received (those not for itself) */
			fwd = rtok * cpt[i] * (ci - 1) / ci;
			double nvl = hit[i] * cpt[i] * (ci - 1) / ci + fwd;
			double net = send > recv ? send : recv;
			double t_net = net * tok_bytes / (sp->nic_gbs * 1e9), t_nvl = nvl * tok_bytes / (sp->nvlink_gbs * 1e9);
			double t = t_net > t_nvl ? t_net : t_nvl;
			if (t > gworst)
				gworst = t;
			if (t > rworst) {
				rworst = t;
				res->net_bytes_max = net * tok_bytes;
				res->nvl_bytes_max = nvl * tok_bytes;
			}
		}
		gt[g] = gworst;
		gnt[g] = nt;
		for (int j = 0; j < nt; j++) {
			memset(nr + (size_t)j * NSLOT, 0, sizeof(int) * NSLOT);
			cnt[j] = 0;
			tix[touched[j]] = -1;
		}
	}
	/* spine time per domain (seconds, one direction; combine is the mirror, so max(out, in) covers
	 * both), kept in dout */
	double spine_bw = sp->nic_gbs * 1e9 / sp->oversub;
	for (int d = 0; d < l->n_domains; d++) {
		double b = dout[d] > din[d] ? dout[d] : din[d];
		dout[d] = dn[d] ? b * tok_bytes / (dn[d] * spine_bw) : 0;
		if (dout[d] > res->spine_us_max / 1e6)
			res->spine_us_max = dout[d] * 1e6;
	}
	for (int g = 0; g < l->n_groups; g++) {
		const int *m = l->members + (size_t)g * E_;
		double t = gt[g];
		for (int e = 0; gnt[g] > 1 && e < E_; e++) { /* an NVLink-local group never uses the spine */
			double st = dout[l->domain[m[e]]];
			if (st > t)
				t = st;
		}
		if (t > gt[g] * (1 + 1e-9))
			res->spine_bound_groups++;
		sum += t;
		if (t > worst)
			worst = t;
	}
	if (l->n_groups)
		res->mean_group_us = 2 * sum / l->n_groups * 1e6;
	res->dispatch_us = worst * 1e6;
	res->combine_us = worst * 1e6;
	res->total_us = 2 * worst * 1e6;
out:
	free(dout);
	free(dn);
	free(tix);
	free(touched);
	free(cnt);
	free(nr);
	free(unal);
	free(hit);
	return rc;
}

int mt_sim_plan(const struct mt_plan *p, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err,
		size_t errlen)
{
	struct mt_layout L;
	int *ln, *ld, *lr, T = p->spec.tp > 0 ? p->spec.tp : 1;
	int *lay = mt_layout_megatron(&L, p->world, p->spec.ep, T, p->n_domains, &ln, &ld, &lr);
	if (!lay)
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	for (int r = 0; r < p->world; r++) {
		const struct mt_rank *R = &p->ranks[p->by_rank[r]];
		ln[r] = R->node;
		ld[r] = R->domain;
		lr[r] = R->rail;
	}
	int rc = mt_sim_layout(&L, sp, res, err, errlen);
	free(lay);
	return rc;
}

int mt_sim_default(const struct mt_job *job, const struct mt_plan *p, const struct mt_sim_params *sp,
		   struct mt_sim_result *res, char *err, size_t errlen)
{
	struct mt_layout L;
	int *ln, *ld, *lr, T = p->spec.tp > 0 ? p->spec.tp : 1;
	int *lay = mt_layout_megatron(&L, p->world, p->spec.ep, T, p->n_domains, &ln, &ld, &lr);
	if (!lay)
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
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
	int rc = mt_sim_layout(&L, sp, res, err, errlen);
	free(lay);
	return rc;
}
