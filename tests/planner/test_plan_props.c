/* test_plan_props.c - the planner's guarantees over many generated fragmented allocations.
 *
 * Each seed builds racks (NVLink domains) with a random number of available trays/nodes, names the
 * nodes so that Slurm's (name) order interleaves the racks, gives nodes random task counts, picks a
 * random valid ep, and checks on the plan:
 *   1. NVLink-local groups == sum over domains of floor(tasks_in_domain / ep), computed here from the
 *      generator's own rack sizes (the optimum for tp=pp=1); leftover groups keep each domain's ranks
 *      contiguous (one routing group per domain);
 *   2. local rank i sits on the GPU of rail i; local ranks follow global rank order on each node;
 *   3. the same job described in another order (domain map written backwards, separate node model
 *      copies) gives the identical plan;
 *   4. every EP group's routing groups cover its experts exactly once;
 *   and: ranks are a permutation, CPU sets on a node are disjoint, the default layout never has more
 *   local groups than the plan.
 * A second generator keeps Slurm's order along the racks (where the default layout is strongest) and
 * checks the slowest-group guarantee: whenever Slurm's default layout also keeps the most local groups,
 * the plan's worst cross-domain share is never above the default's.
 * A third keeps Slurm's order along racks of whole nodes (EP groups of whole nodes, as DGX and NVL72
 * jobs use them) and checks the shared-spine guarantee: whenever the default also keeps the most local
 * groups, the plan's slowest EP group in `simulate` is never slower than the default's at spine
 * oversubscription 1, 2 and 4.
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

#define MAXN 400

struct gen {
	int n_nodes, n_dom;
	char names[MAXN][24];
	const char *name_ptr[MAXN];
	int dom_of[MAXN]; /* generator's domain of node i (job order) */
	int tasks[MAXN];
	const struct mt_node *models[MAXN];
	int dom_slots[64];
};

static void fail_note(int *ok, const char *what, int seed)
{
	if (*ok)
		printf("# seed %d: %s\n", seed, what);
	*ok = 0;
}

static int check_plan(const struct gen *g, const struct mt_job *job, const struct mt_plan *p, int seed)
{
	int ok = 1, ep = p->spec.ep;
	/* 1. optimum number of local groups, from the generator's rack sizes */
	int opt = 0;
	for (int d = 0; d < g->n_dom; d++)
		opt += g->dom_slots[d] / ep;
	if (p->summary.ep_groups_local != opt) {
		printf("# seed %d: local groups %d, optimum %d (ep %d)\n", seed, p->summary.ep_groups_local, opt, ep);
		ok = 0;
	}
	int local = 0;
	for (int k = 0; k < p->n_groups; k++) {
		const struct mt_ep_group *G = &p->groups[k];
		local += G->n_domains == 1;
		if (G->size != ep)
			fail_note(&ok, "group size", seed);
		int next = 0;
		for (int j = 0; j < G->n_domains; j++) {
			int d, lo, hi;
			if (mt_plan_routing_group(p, k, j, &d, &lo, &hi)) {
				fail_note(&ok, "a domain's ranks are not contiguous in an EP group", seed);
				break;
			}
			/* 4. experts: routing groups tile [0, experts) in EP-rank order */
			if (p->experts_per_rank && lo != next)
				fail_note(&ok, "routing groups do not tile the experts", seed);
			next = hi;
		}
		if (p->experts_per_rank && next != p->spec.experts)
			fail_note(&ok, "routing groups miss experts", seed);
		for (int e = 0; e < G->size; e++) {
			const struct mt_rank *R = &p->ranks[p->by_rank[G->members[e]]];
			if (R->ep_group != k || R->ep_rank != e)
				fail_note(&ok, "group membership", seed);
			if (p->experts_per_rank && mt_plan_expert_owner(p, e * p->experts_per_rank) != e)
				fail_note(&ok, "expert owner", seed);
		}
	}
	if (local != p->summary.ep_groups_local)
		fail_note(&ok, "summary disagrees with groups", seed);
	/* permutation */
	char *seen = calloc((size_t)p->world, 1);
	for (int q = 0; q < p->world; q++) {
		const struct mt_rank *R = &p->ranks[q];
		if (R->procid != q || R->rank < 0 || R->rank >= p->world || seen[R->rank]++ || p->by_rank[R->rank] != q)
			fail_note(&ok, "ranks are not a permutation", seed);
		if (strcmp(p->domain_names[R->domain], p->domain_names[p->node_domain[R->node]]))
			fail_note(&ok, "rank domain", seed);
	}
	free(seen);
	/* 2. per node: local ranks in rank order, rail i for local rank i, disjoint CPU sets */
	for (int i = 0, first = 0; i < job->n_nodes; i++) {
		const struct mt_node *m = job->models[i];
		int t = job->tasks[i], prev = -1;
		unsigned char *used = calloc(4096, 1), *mask = malloc(4096);
		for (int l = 0; l < t; l++) {
			const struct mt_rank *R = &p->ranks[first + l];
			if (R->local_rank != l || R->node != i)
				fail_note(&ok, "local rank is not the local task index", seed);
			if (R->rank <= prev)
				fail_note(&ok, "local ranks out of global order", seed);
			prev = R->rank;
			if (m->n_gpus) {
				if (R->gpu < 0 || m->gpus[R->gpu].rail != l || R->rail != l)
					fail_note(&ok, "local rank i is not on the GPU of rail i", seed);
			} else if (R->gpu != -1 || R->gpu_pci[0] || R->rail != -1)
				fail_note(&ok, "CPU-only rank has GPU fields", seed);
			int n = mt_cpulist_parse(R->cpuset, mask, 4096);
			if (n <= 0)
				fail_note(&ok, "empty cpuset", seed);
			for (int c = 0; c < 4096 && n > 0; c++)
				if (mask[c] && used[c]++)
					fail_note(&ok, "overlapping cpusets on a node", seed);
		}
		free(used);
		free(mask);
		first += t;
	}
	return ok;
}

static int same_plan(const struct mt_plan *a, const struct mt_plan *b)
{
	if (a->world != b->world || a->n_groups != b->n_groups)
		return 0;
	for (int q = 0; q < a->world; q++) {
		const struct mt_rank *x = &a->ranks[q], *y = &b->ranks[q];
		if (x->rank != y->rank || x->gpu != y->gpu || x->ep_group != y->ep_group || x->ep_rank != y->ep_rank ||
		    x->dp_rank != y->dp_rank || strcmp(x->cpuset, y->cpuset) || strcmp(x->nics, y->nics) ||
		    strcmp(a->domain_names[x->domain], b->domain_names[y->domain]))
			return 0;
	}
	return !memcmp(&a->summary, &b->summary, sizeof(a->summary));
}

/* Smallest chunk (members of one EP group in one domain) over all groups: a member's cross-domain
 * share is (ep - chunk)/ep, so the worst share is (ep - smallest chunk)/ep.  dom_of_rank: domain of
 * each global rank; groups given as members. */
static int smallest_chunk(int ng, int ep, const int *members, const int *dom_of_rank, int *cnt)
{
	int best = ep;
	for (int g = 0; g < ng; g++) {
		const int *m = members + (size_t)g * ep;
		for (int e = 0; e < ep; e++)
			cnt[dom_of_rank[m[e]]]++;
		for (int e = 0; e < ep; e++) {
			int d = dom_of_rank[m[e]];
			if (cnt[d] && cnt[d] < best)
				best = cnt[d];
		}
		for (int e = 0; e < ep; e++)
			cnt[dom_of_rank[m[e]]] = 0;
	}
	return best;
}

/* Racks in Slurm's order (names r<rack>n<tray>), random sizes, partial nodes, tp 1 or 2, random ep.
 * The default layout (rank = procid, EP group = consecutive ranks in Megatron order) is computed here
 * from the generator's own racks, independently of the library. */
static void worst_share_vs_default(void)
{
	char err[MT_ERRLEN];
	int all_ok = 1, runs = 0, comparable = 0, better = 0;
	struct mt_node *gb, *dgx;
	mt_preset_node("gb300-nvl72-tray", &gb, err, sizeof(err));
	mt_preset_node("dgx-h100", &dgx, err, sizeof(err));
	for (int seed = 0; seed < 400; seed++) {
		rng = (unsigned long long)seed * 104729 + 17;
		const struct mt_node *m = seed % 2 ? dgx : gb;
		int cap = m->n_gpus, n_dom = 2 + (int)rnd(9), n = 0, T = rnd(3) ? 1 : 2;
		static char names[MAXN][24];
		static const char *name_ptr[MAXN];
		static int tasks[MAXN], dom[MAXN];
		static const struct mt_node *models[MAXN];
		struct mt_domains *dm = mt_domains_new();
		int slots[16] = {0};
		for (int d = 0; d < n_dom; d++) {
			int avail = 1 + (int)rnd(m == gb ? 18 : 6);
			for (int k = 0; k < avail && n < MAXN; k++, n++) {
				snprintf(names[n], sizeof(names[n]), "r%02dn%02d", d, k);
				name_ptr[n] = names[n];
				tasks[n] = rnd(4) ? cap : cap / 2; /* some nodes only half allocated */
				dom[n] = d;
				models[n] = m;
				slots[d] += tasks[n];
				char dn[16];
				snprintf(dn, sizeof(dn), "rack%02d", d);
				mt_domains_add(dm, names[n], dn, err, sizeof(err));
			}
		}
		int W = 0;
		for (int i = 0; i < n; i++)
			W += tasks[i];
		int D = W / T, divs[256], nd = 0;
		for (int e = 2; e <= D && nd < 256; e++)
			if (D % e == 0 && e <= 144)
				divs[nd++] = e;
		if (!nd) {
			mt_domains_free(dm);
			continue;
		}
		int E = divs[rnd((unsigned)nd)];
		struct mt_job job = {.n_nodes = n, .nodes = name_ptr, .tasks = tasks, .models = models, .domains = dm};
		char spec[64];
		snprintf(spec, sizeof(spec), "ep=%d,tp=%d", E, T);
		mt_spec_parse(spec, &job.spec, err, sizeof(err));
		struct mt_plan *p;
		if (mt_plan_build(&job, &p, err, sizeof(err))) {
			printf("# seed %d: %s\n", seed, err);
			all_ok = 0;
			mt_domains_free(dm);
			continue;
		}
		runs++;
		int *dor = malloc(sizeof(int) * (size_t)W * 3), *mem = dor + W, *cnt = dor + 2 * W;
		memset(cnt, 0, sizeof(int) * (size_t)W);
		/* default: procid q (block distribution) is on node q's prefix position; its rank is q */
		for (int i = 0, q = 0; i < n; i++)
			for (int t = 0; t < tasks[i]; t++)
				dor[q++] = dom[i];
		int ng = W / E, opt = 0, def_local = 0;
		for (int d = 0; d < n_dom; d++)
			opt += slots[d] / T / E * T; /* tp EP groups per local block of ep units */
		for (int g = 0; g < ng; g++) {
			int one = 1;
			for (int e = 0; e < E; e++) {
				mem[(size_t)g * E + e] = ((g / T) * E + e) * T + g % T;
				one &= dor[mem[(size_t)g * E + e]] == dor[mem[(size_t)g * E]];
			}
			def_local += one;
		}
		int def_min = smallest_chunk(ng, E, mem, dor, cnt);
		/* the plan, from its own rank table */
		for (int q = 0; q < W; q++)
			dor[p->ranks[q].rank] = dom[p->ranks[q].node];
		for (int g = 0; g < p->n_groups; g++)
			memcpy(mem + (size_t)g * E, p->groups[g].members, sizeof(int) * (size_t)E);
		int plan_min = smallest_chunk(p->n_groups, E, mem, dor, cnt);
		if (p->summary.ep_groups_local != opt) {
			printf("# seed %d: local groups %d, optimum %d\n", seed, p->summary.ep_groups_local, opt);
			all_ok = 0;
		}
		if (def_local == opt) {
			comparable++;
			better += plan_min > def_min;
			if (plan_min < def_min) {
				printf("# seed %d: %d racks, world %d, ep %d, tp %d: plan's smallest chunk %d, default's %d\n",
				       seed, n_dom, W, E, T, plan_min, def_min);
				all_ok = 0;
			}
		}
		free(dor);
		mt_plan_free(p);
		mt_domains_free(dm);
	}
	printf("# %d allocations, %d where the default keeps the most local groups, plan's worst share lower in %d\n",
	       runs, comparable, better);
	tap_ok(all_ok && comparable >= 100,
	       "most local groups always; worst cross-domain share never above the default's when it keeps them too "
	       "(%d of %d cases)", comparable, runs);
	mt_node_free(gb);
	mt_node_free(dgx);
}

/* Racks in Slurm's order, whole nodes, a random last rack (often small: what is left of a large job),
 * ep a multiple of the node's GPUs, tp 1.  Both layouts priced by the same `simulate`; nothing
 * hard-coded: the default's slowest group is the bar. */
static void slowest_vs_default_spine(void)
{
	char err[MT_ERRLEN];
	int all_ok = 1, comparable = 0, faster = 0, runs = 0;
	struct mt_node *gb, *dgx;
	mt_preset_node("gb300-nvl72-tray", &gb, err, sizeof(err));
	mt_preset_node("dgx-h100", &dgx, err, sizeof(err));
	for (int seed = 0; seed < 300; seed++) {
		rng = (unsigned long long)seed * 130363 + 5;
		const struct mt_node *m = seed % 3 ? gb : dgx;
		int cap = m->n_gpus, per = m == gb ? 18 : 8, n_dom = 2 + (int)rnd(14), n = 0;
		static char names[MAXN][24];
		static const char *name_ptr[MAXN];
		static int tasks[MAXN];
		static const struct mt_node *models[MAXN];
		struct mt_domains *dm = mt_domains_new();
		for (int d = 0; d < n_dom; d++) {
			/* most racks nearly full, the last one anything */
			int avail = d == n_dom - 1 ? 1 + (int)rnd((unsigned)per) : per - (int)rnd(3);
			for (int k = 0; k < avail && n < MAXN; k++, n++) {
				snprintf(names[n], sizeof(names[n]), "r%02dn%02d", d, k);
				name_ptr[n] = names[n];
				tasks[n] = cap;
				models[n] = m;
				char dn[16];
				snprintf(dn, sizeof(dn), "rack%02d", d);
				mt_domains_add(dm, names[n], dn, err, sizeof(err));
			}
		}
		int W = n * cap, divs[64], nd = 0;
		for (int e = 2 * cap; e <= W && e <= 96 && nd < 64; e += cap)
			if (W % e == 0)
				divs[nd++] = e;
		if (!nd) {
			mt_domains_free(dm);
			continue;
		}
		int E = divs[rnd((unsigned)nd)];
		struct mt_job job = {.n_nodes = n, .nodes = name_ptr, .tasks = tasks, .models = models, .domains = dm};
		char spec[32];
		snprintf(spec, sizeof(spec), "ep=%d", E);
		mt_spec_parse(spec, &job.spec, err, sizeof(err));
		struct mt_plan *p;
		if (mt_plan_build(&job, &p, err, sizeof(err))) {
			printf("# spine seed %d: %s\n", seed, err);
			all_ok = 0;
			mt_domains_free(dm);
			continue;
		}
		runs++;
		for (int o = 1; o <= 4; o *= 2) {
			struct mt_sim_params sp;
			struct mt_sim_result rp, rd;
			mt_sim_default_params(&sp);
			sp.oversub = o;
			if (mt_sim_plan(p, &sp, &rp, err, sizeof(err)) || mt_sim_default(&job, p, &sp, &rd, err, sizeof(err))) {
				printf("# spine seed %d: %s\n", seed, err);
				all_ok = 0;
				break;
			}
			if (rd.summary.ep_groups_local != rp.summary.ep_groups_local)
				break; /* the default gave up local groups: no promise (doc/planner.md) */
			comparable += o == 1;
			faster += o == 4 && rp.total_us < rd.total_us * (1 - 1e-6);
			if (rp.total_us > rd.total_us * (1 + 1e-6)) {
				printf("# spine seed %d: %d racks, world %d, ep %d, oversub %d: plan's slowest group %.1f us, "
				       "default's %.1f us\n",
				       seed, n_dom, W, E, o, rp.total_us, rd.total_us);
				all_ok = 0;
			}
		}
		mt_plan_free(p);
		mt_domains_free(dm);
	}
	printf("# %d allocations, %d where the default keeps the most local groups; plan faster at oversub 4 in %d\n",
	       runs, comparable, faster);
	tap_ok(all_ok && comparable >= 60,
	       "shared spine, oversub 1/2/4: the plan's slowest EP group is never slower than the default's when it "
	       "keeps the most local groups too (%d cases)",
	       comparable);
	mt_node_free(gb);
	mt_node_free(dgx);
}

int main(void)
{
	char err[MT_ERRLEN];
	const char *presets[] = {"gb300-nvl72-tray", "dgx-h100", "cpu-2socket"};
	int all_ok = 1, runs = 0;
	for (int seed = 0; seed < 240; seed++) {
		rng = (unsigned long long)seed * 7919 + 1;
		int pi = seed % 3;
		struct mt_node *m1, *m2;
		mt_preset_node(presets[pi], &m1, err, sizeof(err));
		mt_preset_node(presets[pi], &m2, err, sizeof(err));
		int cap = m1->n_gpus ? m1->n_gpus : 8; /* CPU-only: up to 8 tasks on 2 NUMA nodes */
		static struct gen g;
		memset(&g, 0, sizeof(g));
		g.n_dom = 1 + (int)rnd(pi == 1 ? 24 : 8);
		int per_dom_max = pi == 1 ? 1 + (int)rnd(4) : 18; /* DGX: a few nodes per domain when mapped */
		/* racks with some trays unavailable; node ids shuffled so name order interleaves racks */
		int ids[MAXN], n = 0;
		for (int d = 0; d < g.n_dom; d++) {
			int avail = 1 + (int)rnd((unsigned)per_dom_max);
			for (int k = 0; k < avail && n < MAXN; k++) {
				g.dom_of[n] = d;
				g.tasks[n] = rnd(4) ? cap : 1 + (int)rnd((unsigned)cap);
				g.dom_slots[d] += g.tasks[n];
				ids[n] = n;
				n++;
			}
		}
		for (int i = n - 1; i > 0; i--) {
			int j = (int)rnd((unsigned)i + 1), t = ids[i];
			ids[i] = ids[j];
			ids[j] = t;
		}
		g.n_nodes = n;
		/* job order = name order; node named by its shuffled id */
		int order[MAXN];
		for (int i = 0; i < n; i++)
			order[ids[i]] = i; /* generator node i gets name ids[i] */
		int jt[MAXN], jd[MAXN];
		for (int r = 0; r < n; r++) {
			int i = order[r];
			snprintf(g.names[r], sizeof(g.names[r]), "node%04d", r);
			g.name_ptr[r] = g.names[r];
			jt[r] = g.tasks[i];
			jd[r] = g.dom_of[i];
			g.models[r] = m1;
		}
		struct mt_domains *dm = mt_domains_new(), *dm2 = mt_domains_new();
		for (int r = 0; r < n; r++) {
			char dn[16];
			snprintf(dn, sizeof(dn), "rack%02d", jd[r]);
			mt_domains_add(dm, g.names[r], dn, err, sizeof(err));
		}
		for (int r = n - 1; r >= 0; r--) { /* the same map, read in the other order */
			char dn[16];
			snprintf(dn, sizeof(dn), "rack%02d", jd[r]);
			mt_domains_add(dm2, g.names[r], dn, err, sizeof(err));
		}
		int W = 0;
		for (int r = 0; r < n; r++)
			W += jt[r];
		int divs[512], nd = 0;
		for (int e = 1; e <= W && nd < 512; e++)
			if (W % e == 0 && e <= 144)
				divs[nd++] = e;
		int ep = divs[rnd((unsigned)nd)];
		struct mt_job job = {0};
		job.n_nodes = n;
		job.nodes = g.name_ptr;
		job.tasks = jt;
		job.models = g.models;
		job.domains = dm;
		mt_spec_default(&job.spec);
		job.spec.mode = MT_MODE_SPEC;
		job.spec.ep = ep;
		job.spec.experts = ep * (1 + (int)rnd(4));
		/* the generator's rack sizes, in the map's naming */
		struct mt_plan *p = NULL, *p2 = NULL;
		int rc = mt_plan_build(&job, &p, err, sizeof(err));
		int ok = rc == 0;
		if (!ok)
			printf("# seed %d: %s\n", seed, err);
		if (ok) {
			ok = check_plan(&g, &job, p, seed);
			const struct mt_node *models2[MAXN];
			for (int r = 0; r < n; r++)
				models2[r] = m2;
			struct mt_job job2 = job;
			job2.models = models2;
			job2.domains = dm2;
			if (mt_plan_build(&job2, &p2, err, sizeof(err)) || !same_plan(p, p2))
				fail_note(&ok, "plan changes when the facts are read in another order", seed);
			struct mt_sim_params sp;
			struct mt_sim_result def;
			mt_sim_default_params(&sp);
			if (mt_sim_default(&job, p, &sp, &def, err, sizeof(err)) ||
			    def.summary.ep_groups_local > p->summary.ep_groups_local)
				fail_note(&ok, "the default layout has more local groups than the plan", seed);
		}
		if (!ok)
			printf("# seed %d: preset %s, %d nodes, %d domains, world %d, ep %d\n", seed, presets[pi], n, g.n_dom,
			       W, ep);
		all_ok &= ok;
		runs++;
		mt_plan_free(p);
		mt_plan_free(p2);
		mt_domains_free(dm);
		mt_domains_free(dm2);
		mt_node_free(m1);
		mt_node_free(m2);
	}
	tap_ok(all_ok, "guarantees hold on %d generated fragmented allocations", runs);

	/* even split: 6 racks of 5 trays (20 GPUs), ep=8 -> 2 local groups per rack and a leftover of 4 per
	 * rack; the leftovers pair up, 4 + 4, each group spanning exactly 2 racks. */
	struct mt_node *gb;
	mt_preset_node("gb300-nvl72-tray", &gb, err, sizeof(err));
	char **names;
	int n;
	mt_hostlist_expand("r[1-6]n[1-5]", &names, &n, err, sizeof(err));
	struct mt_domains *dm = mt_domains_new();
	for (int r = 1; r <= 6; r++) {
		char hl[32], dn[16];
		snprintf(hl, sizeof(hl), "r%dn[1-5]", r);
		snprintf(dn, sizeof(dn), "rack%d", r);
		mt_domains_add(dm, hl, dn, err, sizeof(err));
	}
	int tasks[30];
	const struct mt_node *models[30];
	for (int i = 0; i < n; i++) {
		tasks[i] = 4;
		models[i] = gb;
	}
	struct mt_job job = {.n_nodes = n, .nodes = (const char *const *)names, .tasks = tasks, .models = models,
			     .domains = dm};
	mt_spec_parse("ep=8", &job.spec, err, sizeof(err));
	struct mt_plan *p;
	TAP_INT(mt_plan_build(&job, &p, err, sizeof(err)), 0, "6 racks x 5 trays, ep=8");
	TAP_INT(p->summary.ep_groups_local, 12, "2 local groups per rack");
	int even = 1, left = 0;
	for (int k = 0; k < p->n_groups; k++) {
		if (p->groups[k].n_domains == 1)
			continue;
		left++;
		int d, lo, hi;
		even &= p->groups[k].n_domains == 2;
		for (int j = 0; j < p->groups[k].n_domains; j++)
			even &= !mt_plan_routing_group(p, k, j, &d, &lo, &hi) && hi - lo == 0; /* no experts: lo=hi=0 */
		/* count members per domain */
		int c0 = 0;
		for (int e = 0; e < 8; e++)
			c0 += p->ranks[p->by_rank[p->groups[k].members[e]]].domain == p->groups[k].domains[0];
		even &= c0 == 4;
	}
	TAP_INT(left, 3, "3 leftover groups");
	tap_ok(even, "each leftover group spans 2 racks, 4 + 4");
	tap_ok(p->summary.rail_aligned_fraction == 1.0, "leftover halves are whole trays: rail-aligned");
	mt_plan_free(p);
	mt_hostlist_free(names, n);
	mt_domains_free(dm);

	/* Narrow leftover groups: 4 racks of 6 trays (24 GPUs) and 8 racks of 5 trays (20 GPUs), ep=16.
	 * Each rack gives 1 local group; the tails are 8 GPUs (2 trays) x 4 and 4 GPUs (1 tray) x 8 = 4
	 * groups.  Pairing equal tails gives two 2-rack and two 4-rack groups; mixing one 8 with two 4s
	 * gives four 3-rack groups, still whole trays (rail-aligned): the slowest group spans 3 racks. */
	dm = mt_domains_new();
	char hl[512] = "";
	for (int r = 1; r <= 12; r++) {
		char one[32], dn[16];
		int trays = r <= 4 ? 6 : 5;
		snprintf(one, sizeof(one), "%sq%02dn[1-%d]", r > 1 ? "," : "", r, trays);
		strcat(hl, one);
		snprintf(one, sizeof(one), "q%02dn[1-%d]", r, trays);
		snprintf(dn, sizeof(dn), "rack%02d", r);
		mt_domains_add(dm, one, dn, err, sizeof(err));
	}
	mt_hostlist_expand(hl, &names, &n, err, sizeof(err));
	int t2[64];
	const struct mt_node *m2[64];
	for (int i = 0; i < n; i++) {
		t2[i] = 4;
		m2[i] = gb;
	}
	struct mt_job j2 = {.n_nodes = n, .nodes = (const char *const *)names, .tasks = t2, .models = m2, .domains = dm};
	mt_spec_parse("ep=16", &j2.spec, err, sizeof(err));
	TAP_INT(mt_plan_build(&j2, &p, err, sizeof(err)), 0, "racks of 6 and 5 trays, ep=16 (%s)", err);
	TAP_INT(p->summary.ep_groups_local, 12, "one local group per rack");
	TAP_INT(p->summary.max_domains_per_group, 3, "leftover groups mix one 2-tray and two 1-tray tails: 3 racks");
	tap_ok(p->summary.rail_aligned_fraction == 1.0, "still rail-aligned");
	mt_plan_free(p);
	mt_hostlist_free(names, n);
	mt_domains_free(dm);
	mt_node_free(gb);

	/* ...but not at the cost of rails: DGX H100, 2 full nodes and 4 nodes with 4 of 8 GPUs, ep=16.
	 * Mixing a full node with two half nodes would be narrower (3 nodes), but the full node's ranks on
	 * rails 4-7 would find no same-rail peer on the half nodes; pairing full with full and the four
	 * halves together keeps every cross-node pair rail to rail. */
	struct mt_node *dgx;
	mt_preset_node("dgx-h100", &dgx, err, sizeof(err));
	mt_hostlist_expand("h[1-6]", &names, &n, err, sizeof(err));
	int t3[6] = {8, 4, 8, 4, 4, 4};
	const struct mt_node *m3[6] = {dgx, dgx, dgx, dgx, dgx, dgx};
	struct mt_job j3 = {.n_nodes = n, .nodes = (const char *const *)names, .tasks = t3, .models = m3};
	mt_spec_parse("ep=16", &j3.spec, err, sizeof(err));
	TAP_INT(mt_plan_build(&j3, &p, err, sizeof(err)), 0, "2 full + 4 half DGX nodes, ep=16 (%s)", err);
	tap_ok(p->summary.rail_aligned_fraction == 1.0, "every cross-node EP pair is rail to rail (%.3f)",
	       p->summary.rail_aligned_fraction);
	TAP_INT(p->summary.max_domains_per_group, 4, "the half nodes form one 4-node group");
	mt_plan_free(p);
	mt_hostlist_free(names, n);
	mt_node_free(dgx);
	worst_share_vs_default();
	slowest_vs_default_spine();
	return tap_done();
}
