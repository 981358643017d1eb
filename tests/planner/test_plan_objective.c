/* test_plan_objective.c - the planner's objective when the site gives its fabric (mt_job.fabric, plugstack
 * fabric=oversub:N): over generated allocations (racks in Slurm's order, interleaved names, partial racks,
 * partial nodes, cyclic task ids, tp 1 and 2) at spine oversubscription 1, 2 and 4, with both layouts priced
 * by the same `simulate`:
 *   1. the plan's slowest EP group is never slower than Slurm's default layout's;
 *   2. it keeps the most NVLink-local groups (those of the plan made without the fabric) whenever that
 *      costs nothing: fewer local groups only with a strictly faster slowest group;
 *   3. the ranks do not depend on the node models (the plugin plans from job-wide facts only);
 *   4. ranks are a permutation, a domain's ranks are contiguous in each EP group (its routing group), local
 *      ranks follow rank order and local rank i sits on rail i.
 * And the fabric grammar (plugstack.conf fabric=): valid forms and one-line errors.
 */
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "tap.h"

static unsigned long long rng;
static unsigned rnd(unsigned n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rng >> 33) % n);
}

#define MAXN 320

static void grammar(void)
{
	char err[MT_ERRLEN];
	struct mt_fabric f;
	TAP_INT(mt_fabric_parse("oversub:4", &f, err, sizeof(err)), 0, "fabric oversub:4 parses");
	tap_ok(f.oversub == 4 && f.nic_gbs == 0 && f.nvlink_gbs == 0, "oversub:4 leaves the bandwidths unset");
	TAP_INT(mt_fabric_parse("nvlink:900,oversub:2.5,nic:100", &f, err, sizeof(err)), 0, "keys in any order");
	tap_ok(f.oversub == 2.5 && f.nic_gbs == 100 && f.nvlink_gbs == 900, "oversub 2.5, NIC 100, NVLink 900");
	const char *bad[] = {"", "oversub", "oversub:0.5", "oversub:4,oversub:2", "nic:50", "oversub:4,", "oversub:x",
			     "oversub:4,speed:3", "oversub:4,nic:0", "oversub:4,,nic:5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		f = (struct mt_fabric){7, 7, 7};
		int rc = mt_fabric_parse(bad[i], &f, err, sizeof(err));
		tap_ok(rc != 0 && err[0] && !strchr(err, '\n') && f.oversub == 7,
		       "fabric '%s' refused, nothing applied: %s", bad[i], err);
	}
}

/* ranks a permutation, each domain's ranks contiguous in an EP group, local ranks in rank order on each
 * node, local rank i on rail i */
static int valid(const struct mt_job *job, const struct mt_plan *p)
{
	char *seen = calloc((size_t)(p->world > 0 ? p->world : 1), 1);
	int ok = 1;
	for (int q = 0; q < p->world; q++) {
		const struct mt_rank *R = &p->ranks[q];
		if (R->rank < 0 || R->rank >= p->world || seen[R->rank]++ || p->by_rank[R->rank] != q)
			ok = 0;
	}
	free(seen);
	for (int g = 0; g < p->n_groups; g++) /* each domain's ranks contiguous in its group: routing groups */
		for (int k = 0; k < p->groups[g].n_domains; k++) {
			int d, lo, hi;
			if (mt_plan_routing_group(p, g, k, &d, &lo, &hi))
				ok = 0;
		}
	for (int i = 0, first = 0; i < job->n_nodes; i++) {
		int prev = -1;
		for (int t = 0; t < job->tasks[i]; t++) {
			int q = job->procids ? job->procids[i][t] : first + t;
			const struct mt_rank *R = &p->ranks[q];
			if (R->node != i || R->local_rank != t || R->rank <= prev || R->rail != t)
				ok = 0;
			prev = R->rank;
		}
		first += job->tasks[i];
	}
	return ok;
}

static int same_ranks(const struct mt_plan *a, const struct mt_plan *b)
{
	if (a->world != b->world)
		return 0;
	for (int q = 0; q < a->world; q++)
		if (a->ranks[q].rank != b->ranks[q].rank || a->ranks[q].ep_group != b->ranks[q].ep_group)
			return 0;
	return 1;
}

static void objective(void)
{
	char err[MT_ERRLEN];
	struct mt_node *gb, *dgx;
	mt_preset_node("gb300-nvl72-tray", &gb, err, sizeof(err));
	mt_preset_node("dgx-h100", &dgx, err, sizeof(err));
	int runs = 0, priced = 0, traded = 0, blind_slower = 0, faster_than_blind = 0, ok1 = 1, ok2 = 1, ok3 = 1, ok4 = 1, by_kind[4] = {0};
	static char names[MAXN][24];
	static const char *name_ptr[MAXN];
	static int tasks[MAXN], dom[MAXN], ids[MAXN];
	static const struct mt_node *models[MAXN];
	for (int seed = 0; seed < 240; seed++) {
		rng = (unsigned long long)seed * 2654435761ull + 99;
		int kind = seed % 4; /* 0 rack order, 1 interleaved names, 2 partial nodes, 3 cyclic task ids */
		const struct mt_node *m = seed % 3 ? gb : dgx;
		int cap = m->n_gpus, per = m == gb ? 18 : 4, n_dom = 2 + (int)rnd(m == gb ? 10 : 12), n = 0;
		for (int d = 0; d < n_dom; d++) {
			/* most racks nearly full, the last anything (what is left of a large job) */
			int avail = d == n_dom - 1 ? 1 + (int)rnd((unsigned)per) : per - (int)rnd(per > 4 ? 4 : 2);
			for (int k = 0; k < avail && n < MAXN; k++, n++) {
				dom[n] = d;
				tasks[n] = kind == 2 && rnd(3) == 0 ? (rnd(2) ? cap / 2 : 1 + (int)rnd((unsigned)cap)) : cap;
				ids[n] = n;
			}
		}
		if (kind == 1) /* names that interleave the racks: shuffle which node gets which name */
			for (int i = n - 1; i > 0; i--) {
				int j = (int)rnd((unsigned)i + 1), t = ids[i];
				ids[i] = ids[j];
				ids[j] = t;
			}
		struct mt_domains *dm = mt_domains_new();
		int jt[MAXN], W = 0, even = 1;
		for (int r = 0; r < n; r++) { /* job (name) order r holds generator node ids[r] */
			int i = ids[r];
			snprintf(names[r], sizeof(names[r]), "r%02dn%03d", kind == 1 ? 0 : dom[i], r);
			name_ptr[r] = names[r];
			jt[r] = tasks[i];
			models[r] = m;
			char dn[16];
			snprintf(dn, sizeof(dn), "rack%02d", dom[i]);
			mt_domains_add(dm, names[r], dn, err, sizeof(err));
			W += jt[r];
			even &= jt[r] % 2 == 0;
		}
		int T = kind != 3 && even && rnd(4) == 0 ? 2 : 1, D = W / T, divs[256], nd = 0;
		for (int e = 2; e <= D && e <= 144 && nd < 256; e++)
			if (D % e == 0)
				divs[nd++] = e;
		if (!nd) {
			mt_domains_free(dm);
			continue;
		}
		int E = divs[rnd((unsigned)nd)];
		int **procids = kind == 3 ? mt_dist_procids(MT_DIST_CYCLIC, jt, n) : NULL;
		struct mt_job job = {.n_nodes = n, .nodes = name_ptr, .tasks = jt, .models = models, .domains = dm,
				     .procids = (const int *const *)procids};
		char spec[48];
		snprintf(spec, sizeof(spec), "ep=%d,tp=%d", E, T);
		mt_spec_parse(spec, &job.spec, err, sizeof(err));
		struct mt_plan *blind = NULL;
		if (mt_plan_build(&job, &blind, err, sizeof(err))) {
			printf("# seed %d: %s\n", seed, err);
			ok4 = 0;
			mt_procids_free(procids, n);
			mt_domains_free(dm);
			continue;
		}
		runs++;
		by_kind[kind]++;
		for (int o = 1; o <= 4; o *= 2) {
			struct mt_plan *p = NULL, *q = NULL;
			job.fabric = (struct mt_fabric){o, 0, 0};
			struct mt_job nomodels = job;
			nomodels.models = NULL;
			if (mt_plan_build(&job, &p, err, sizeof(err)) || mt_plan_build(&nomodels, &q, err, sizeof(err))) {
				printf("# seed %d oversub %d: %s\n", seed, o, err);
				ok4 = 0;
				mt_plan_free(p);
				break;
			}
			struct mt_sim_params sp;
			struct mt_sim_result rp, rd, rb;
			mt_sim_default_params(&sp); /* NIC 50, NVLink 450: what fabric oversub:N plans with */
			sp.oversub = o;
			if (mt_sim_plan(p, &sp, &rp, err, sizeof(err)) || mt_sim_default(&job, p, &sp, &rd, err, sizeof(err)) ||
			    mt_sim_plan(blind, &sp, &rb, err, sizeof(err))) {
				printf("# seed %d: %s\n", seed, err);
				ok4 = 0;
			}
			priced++;
			int lp = rp.summary.ep_groups_local, lb = rb.summary.ep_groups_local;
			if (rp.total_us > rd.total_us * (1 + 1e-9)) {
				printf("# seed %d kind %d: %d racks, world %d, ep %d, tp %d, oversub %d: plan's slowest group "
				       "%.1f us, default's %.1f us\n", seed, kind, n_dom, W, E, T, o, rp.total_us, rd.total_us);
				ok1 = 0;
			}
			if (lp > lb || (lp < lb && !(rp.total_us < rb.total_us * (1 - 1e-9)))) {
				printf("# seed %d kind %d oversub %d: %d local groups (%.1f us) where the most-local plan has "
				       "%d (%.1f us)\n", seed, kind, o, lp, rp.total_us, lb, rb.total_us);
				ok2 = 0;
			}
			traded += lp < lb;
			blind_slower += rb.total_us > rd.total_us * (1 + 1e-9);
			faster_than_blind += rp.total_us < rb.total_us * (1 - 1e-9);
			if (!same_ranks(p, q)) {
				printf("# seed %d oversub %d: ranks depend on the node models\n", seed, o);
				ok3 = 0;
			}
			if (!valid(&job, p)) {
				printf("# seed %d oversub %d: invalid plan\n", seed, o);
				ok4 = 0;
			}
			mt_plan_free(p);
			mt_plan_free(q);
		}
		mt_plan_free(blind);
		mt_procids_free(procids, n);
		mt_domains_free(dm);
	}
	printf("# %d allocations (rack order %d, interleaved %d, partial nodes %d, cyclic %d), %d plans priced; "
	       "the most-local plan slower than the default in %d; %d traded local groups, %d faster than the most-local "
	       "plan\n",
	       runs, by_kind[0], by_kind[1], by_kind[2], by_kind[3], priced, blind_slower, traded, faster_than_blind);
	tap_ok(ok1 && runs >= 200 && blind_slower >= 10, "fabric known, oversub 1/2/4: the plan's slowest EP group is never slower than the "
	       "default layout's (%d plans)", priced);
	tap_ok(ok2, "the most local groups are kept unless giving one up makes the slowest group faster");
	tap_ok(traded >= 10 && faster_than_blind >= traded,
	       "some allocations do trade local groups for a faster slowest group (%d), none for nothing", traded);
	tap_ok(ok3, "the ranks are the same without node models (the plugin's job-wide planning)");
	tap_ok(ok4, "every plan is valid: ranks a permutation, routing groups contiguous, local ranks in rank order, "
	       "local rank i on rail i");
	mt_node_free(gb);
	mt_node_free(dgx);
}

int main(void)
{
	grammar();
	objective();
	return tap_done();
}
