/* plan_objective.c - the plan when the site gives its fabric (struct mt_fabric): the layout whose
 * slowest EP group is fastest under simulate's model, then the one keeping the most NVLink-local groups,
 * then the lowest mean group time.
 *
 * A synchronous MoE layer waits for its slowest group, and with an oversubscribed spine the most
 * local groups can cost that group dearly: a partial rack whose every GPU is a leftover member sends
 * all its tokens over its few uplinks.  Candidates, each priced by mt_sim_layout (the code simulate
 * runs) with rail = local slot, as the binding gives it (local rank i on the GPU of rail i) and as
 * every node knows it without any node's model:
 *  - the most-local packing (plan_pack.c, as without a fabric);
 *  - chains from the three domains with the largest tails (plan_pack.c): the tail is paired with a
 *    large chunk of a domain that gives up one local group, whose rest goes on to the next, until a
 *    domain's own tail closes the chain (what Slurm's layout does along racks, for a few racks only);
 *  - Slurm's default layout itself (rank = procid, consecutive EP blocks), when its TP groups stay on
 *    one node: so the plan's slowest group is never slower than the default's under the model.
 * Ties on the slowest group keep the most local groups: a local group is traded only to make the
 * slowest group faster.
 */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

#define NCHAIN 3

struct unit {
	int dom, pos, slot;
};

static int by_dom_pos(const void *a, const void *b)
{
	const struct unit *x = a, *y = b;
	if (x->dom != y->dom)
		return (x->dom > y->dom) - (x->dom < y->dom);
	return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Slurm's layout as a unit sequence: the slot of every T-th procid, when each TP unit is T consecutive
 * slots of one node starting at a multiple of T; NULL (rc 0) when not.  Inside each EP block the units are
 * then ordered by domain (stable), so each domain's EP ranks are contiguous as every plan keeps them (its
 * routing group); the groups' members, hence the model's price, are Slurm's. */
static int *default_seq(const struct mt_job *job, const int *node_domain, const int *first, const int *slot_of,
			int W, int T, int E, int *rc)
{
	int *seq = malloc(sizeof(int) * (size_t)(W / T + 1));
	struct unit *u = malloc(sizeof(*u) * (size_t)(W / T + 1));
	if (!seq || !u) {
		free(seq);
		free(u);
		*rc = MT_ENOMEM;
		return NULL;
	}
	for (int r = 0, node = 0; r < W; r += T) {
		int s = slot_of[r];
		int lo = 0, hi = job->n_nodes - 1;
		while (lo < hi) { /* the node holding slot s */
			int mid = (lo + hi + 1) / 2;
			if (first[mid] <= s)
				lo = mid;
			else
				hi = mid - 1;
		}
		node = lo;
		bool ok = (s - first[node]) % T == 0;
		for (int t = 1; ok && t < T; t++)
			ok = slot_of[r + t] == s + t;
		if (!ok) {
			free(seq);
			free(u);
			return NULL;
		}
		u[r / T] = (struct unit){node_domain[node], r / T, s};
	}
	for (int b = 0; b < W / T; b += E)
		qsort(u + b, (size_t)E, sizeof(*u), by_dom_pos);
	for (int k = 0; k < W / T; k++)
		seq[k] = u[k].slot;
	free(u);
	return seq;
}

/* The model's price of a unit sequence (units of T slots in rank order, Megatron groups). */
static int price(const int *node_domain, int nd, const int *first, const int *snode, const int *seq, int W, int T,
		 int E, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err, size_t errlen)
{
	struct mt_layout L;
	int *node, *dom, *rail;
	int *lay = mt_layout_megatron(&L, W, E, T, nd, &node, &dom, &rail);
	if (!lay)
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory pricing layouts");
	for (int u = 0; u < W / T; u++)
		for (int t = 0; t < T; t++) {
			int r = u * T + t, slot = seq[u] + t, n = snode[slot];
			node[r] = n;
			dom[r] = node_domain[n];
			rail[r] = slot - first[n]; /* local rank i is bound to the GPU of rail i */
		}
	int rc = mt_sim_layout(&L, sp, res, err, errlen);
	free(lay);
	return rc;
}

/* a better than b: slowest group, then local groups, then the mean (relative ties at 1e-9) */
static bool better(const struct mt_sim_result *a, const struct mt_sim_result *b)
{
	double eps = 1e-9;
	if (a->total_us < b->total_us * (1 - eps))
		return true;
	if (a->total_us > b->total_us * (1 + eps))
		return false;
	if (a->summary.ep_groups_local != b->summary.ep_groups_local)
		return a->summary.ep_groups_local > b->summary.ep_groups_local;
	return a->mean_group_us < b->mean_group_us * (1 - eps);
}

int *mt_plan_objective(const struct mt_job *job, const int *node_domain, int nd, const int *dunits, const int *first,
		       const int *slot_of, int T, int E, int *seq, int *rc, char *err, size_t errlen)
{
	int W = first[job->n_nodes - 1] + job->tasks[job->n_nodes - 1];
	struct mt_sim_params sp;
	struct mt_sim_result best, r;
	mt_fabric_params(&job->fabric, job->spec.route_groups, &sp);
	int *snode = malloc(sizeof(int) * (size_t)W), *top = malloc(sizeof(int) * NCHAIN);
	if (!snode || !top) {
		free(snode);
		free(top);
		free(seq);
		*rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory pricing layouts");
		return NULL;
	}
	for (int i = 0; i < job->n_nodes; i++)
		for (int t = 0; t < job->tasks[i]; t++)
			snode[first[i] + t] = i;
	if ((*rc = price(node_domain, nd, first, snode, seq, W, T, E, &sp, &best, err, errlen)))
		goto fail;
	/* the domains with the largest tails (ties: lower index), the chains' starts */
	int ntop = 0;
	for (int d = 0; d < nd; d++) {
		int t = dunits[d] % E, k;
		if (!t)
			continue;
		if (ntop == NCHAIN) {
			if (dunits[top[NCHAIN - 1]] % E >= t)
				continue;
			k = NCHAIN - 1;
		} else
			k = ntop++;
		for (; k > 0 && dunits[top[k - 1]] % E < t; k--)
			top[k] = top[k - 1];
		top[k] = d;
	}
	for (int c = -1; c < ntop; c++) {
		int *cand = c < 0 ? default_seq(job, node_domain, first, slot_of, W, T, E, rc)
				  : mt_plan_pack(job, node_domain, nd, dunits, first, T, E, top[c], rc, err, errlen);
		if (!cand) {
			if (*rc)
				goto fail;
			continue; /* no such layout for this job */
		}
		if ((*rc = price(node_domain, nd, first, snode, cand, W, T, E, &sp, &r, err, errlen))) {
			free(cand);
			goto fail;
		}
		if (better(&r, &best)) {
			best = r;
			free(seq);
			seq = cand;
		} else
			free(cand);
	}
	free(snode);
	free(top);
	return seq;
fail:
	if (*rc == MT_ENOMEM)
		mt_seterr(err, errlen, MT_ENOMEM, "out of memory pricing layouts");
	free(snode);
	free(top);
	free(seq);
	return NULL;
}
