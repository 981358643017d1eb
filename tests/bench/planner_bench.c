/* planner_bench.c - planner speed at scale and simulated all-to-all of the plan vs Slurm's default.
 *
 * Speed: GB300 NVL72 racks with some trays unavailable (16-18 of 18 per rack, fixed pseudo-random
 * pattern), 8,192 and 131,072 GPUs, ep=64.  Baselines measured in the same run: expanding the
 * step's hostlist, and building Slurm's default layout (rank = procid, consecutive EP groups).
 * Best of several runs on one core.  Traffic: `simulate`'s model on the same allocations, with
 * Slurm's order following the racks and with node names that interleave racks, at spine
 * oversubscription 1, 2 and 4 (the shared rack uplinks are what oversubscription limits), the plan
 * made with that fabric known (plugstack fabric=) and, beside it, the plan made without.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mt_plan.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static unsigned long long rng = 12345;
static unsigned rnd(unsigned n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((rng >> 33) % n);
}

struct alloc {
	char *hostlist;           /* Slurm's compressed form, one bracket group per rack */
	struct mt_domains *domains;
	int racks, trays;
};

/* Racks r0001.. with 16-18 available trays each until `trays` trays; `interleave` names nodes so
 * that name order (Slurm's order) cycles through racks instead of following them. */
static void make_alloc(struct alloc *a, int trays, int interleave)
{
	size_t cap = (size_t)trays * 24 + 64, o = 0;
	char err[MT_ERRLEN];
	a->hostlist = malloc(cap);
	a->domains = mt_domains_new();
	a->racks = 0;
	a->trays = 0;
	rng = 12345;
	int left = trays;
	while (left > 0) {
		int r = ++a->racks, avail = 16 + (int)rnd(3);
		if (avail > left)
			avail = left;
		char rack[16], one[64];
		snprintf(rack, sizeof(rack), "rack%04d", r);
		/* which trays are out: skip (18 - avail) trays at a pseudo-random position */
		int skip_at = 1 + (int)rnd(18), out = 18 - avail, got = 0;
		for (int t = 1; t <= 18 && got < avail; t++) {
			if (out && t >= skip_at && t < skip_at + out)
				continue;
			if (interleave)
				snprintf(one, sizeof(one), "gb-n%02d-r%04d", t, r); /* names sort by tray first */
			else
				snprintf(one, sizeof(one), "gb-r%04d-n%02d", r, t);
			mt_domains_add(a->domains, one, rack, err, sizeof(err));
			got++;
		}
		if (got < avail) /* skipped range ran past 18: take the first trays instead */
			for (int t = 1; t <= 18 && got < avail; t++) {
				if (interleave)
					snprintf(one, sizeof(one), "gb-n%02d-r%04d", t, r);
				else
					snprintf(one, sizeof(one), "gb-r%04d-n%02d", r, t);
				if (mt_domains_lookup(a->domains, one))
					continue;
				mt_domains_add(a->domains, one, rack, err, sizeof(err));
				got++;
			}
		left -= avail;
		a->trays += avail;
	}
	/* the hostlist in Slurm's (sorted name) order: build the names, sort, print them one by one with
	 * per-prefix bracket compression of runs */
	int n = a->trays;
	char (*names)[24] = malloc((size_t)n * 24);
	int k = 0;
	for (int r = 1; r <= a->racks; r++)
		for (int t = 1; t <= 18; t++) {
			char one[24];
			if (interleave)
				snprintf(one, sizeof(one), "gb-n%02d-r%04d", t, r);
			else
				snprintf(one, sizeof(one), "gb-r%04d-n%02d", r, t);
			if (mt_domains_lookup(a->domains, one))
				memcpy(names[k++], one, 24);
		}
	qsort(names, (size_t)n, 24, (int (*)(const void *, const void *))strcmp);
	/* compress: prefix = name minus last 4 (interleave) or 2 digits */
	int dig = interleave ? 4 : 2;
	for (int i = 0; i < n;) {
		size_t pl = strlen(names[i]) - (size_t)dig;
		int j = i;
		o += (size_t)snprintf(a->hostlist + o, cap - o, "%s%.*s[", o ? "," : "", (int)pl, names[i]);
		int first = 1;
		while (j < n && !strncmp(names[j], names[i], pl)) {
			int lo = atoi(names[j] + pl), hi = lo, e = j;
			while (e + 1 < n && !strncmp(names[e + 1], names[i], pl) && atoi(names[e + 1] + pl) == hi + 1) {
				hi++;
				e++;
			}
			if (lo == hi)
				o += (size_t)snprintf(a->hostlist + o, cap - o, "%s%0*d", first ? "" : ",", dig, lo);
			else
				o += (size_t)snprintf(a->hostlist + o, cap - o, "%s%0*d-%0*d", first ? "" : ",", dig, lo,
						      dig, hi);
			first = 0;
			j = e + 1;
		}
		o += (size_t)snprintf(a->hostlist + o, cap - o, "]");
		i = j;
	}
	free(names);
}

struct job {
	char **names;
	int n;
	int *tasks;
	const struct mt_node **models;
	struct mt_job job;
};

static void job_from(struct job *j, const struct alloc *a, const struct mt_node *m, int ep)
{
	char err[MT_ERRLEN];
	if (mt_hostlist_expand(a->hostlist, &j->names, &j->n, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	j->tasks = malloc(sizeof(int) * (size_t)j->n);
	j->models = malloc(sizeof(*j->models) * (size_t)j->n);
	for (int i = 0; i < j->n; i++) {
		j->tasks[i] = m->n_gpus;
		j->models[i] = m;
	}
	memset(&j->job, 0, sizeof(j->job));
	j->job.n_nodes = j->n;
	j->job.nodes = (const char *const *)j->names;
	j->job.tasks = j->tasks;
	j->job.models = j->models;
	j->job.domains = a->domains;
	mt_spec_default(&j->job.spec);
	j->job.spec.mode = MT_MODE_SPEC;
	j->job.spec.ep = ep;
	j->job.spec.experts = 256;
}

static void job_free(struct job *j)
{
	mt_hostlist_free(j->names, j->n);
	free(j->tasks);
	free(j->models);
}

/* Slurm's default layout as a launcher would build it: rank = procid, GPU = local index, group = rank/ep. */
static double default_layout(const struct job *j, int ep)
{
	int W = 0;
	for (int i = 0; i < j->n; i++)
		W += j->tasks[i];
	int *rank = malloc(sizeof(int) * (size_t)W * 4), *gpu = rank + W, *grp = rank + 2 * W, *node = rank + 3 * W;
	double t0 = now();
	for (int i = 0, q = 0; i < j->n; i++)
		for (int t = 0; t < j->tasks[i]; t++, q++) {
			rank[q] = q;
			gpu[q] = t;
			grp[q] = q / ep;
			node[q] = i;
		}
	double t = now() - t0;
	volatile int sink = grp[W - 1] + gpu[W - 1] + node[W - 1];
	(void)sink;
	free(rank);
	return t;
}

static void speed(const struct mt_node *m, int gpus, double target_ms)
{
	struct alloc a;
	make_alloc(&a, gpus / m->n_gpus, 0);
	struct job j;
	job_from(&j, &a, m, 64);
	int reps = gpus > 20000 ? 3 : 10;
	double best_plan = 1e9, best_hl = 1e9, best_def = 1e9, best_fab = 1e9;
	char err[MT_ERRLEN];
	for (int r = 0; r < reps; r++) {
		char **names;
		int n;
		double t0 = now();
		mt_hostlist_expand(a.hostlist, &names, &n, err, sizeof(err));
		double t1 = now();
		mt_hostlist_free(names, n);
		if (t1 - t0 < best_hl)
			best_hl = t1 - t0;
		double d = default_layout(&j, 64);
		if (d < best_def)
			best_def = d;
		struct mt_plan *p;
		t0 = now();
		if (mt_plan_build(&j.job, &p, err, sizeof(err))) {
			fprintf(stderr, "bench: %s\n", err);
			exit(1);
		}
		t1 = now();
		if (r == 0)
			printf("  %d GPUs: %d trays in %d racks (16-18 of 18 trays), ep=64: %d/%d EP groups NVLink-local\n",
			       p->world, a.trays, a.racks, p->summary.ep_groups_local, p->summary.ep_groups);
		mt_plan_free(p);
		if (t1 - t0 < best_plan)
			best_plan = t1 - t0;
		/* the fabric known (plugstack fabric=oversub:4): candidate layouts priced by simulate's model */
		j.job.fabric = (struct mt_fabric){4, 100, 900};
		t0 = now();
		if (mt_plan_build(&j.job, &p, err, sizeof(err))) {
			fprintf(stderr, "bench: %s\n", err);
			exit(1);
		}
		t1 = now();
		j.job.fabric = (struct mt_fabric){0, 0, 0};
		mt_plan_free(p);
		if (t1 - t0 < best_fab)
			best_fab = t1 - t0;
	}
	printf("  %d GPUs: plan %.2f ms (target <= %.0f ms: %.2fx of target), hostlist expansion %.2f ms "
	       "(plan/expand %.1fx), default layout %.3f ms (plan/default %.0fx)\n",
	       gpus, best_plan * 1e3, target_ms, best_plan * 1e3 / target_ms, best_hl * 1e3, best_plan / best_hl,
	       best_def * 1e3, best_plan / best_def);
	printf("  %d GPUs, fabric known (oversub 4): plan %.2f ms (%.2fx of the plan without it; plan/expand %.1fx)\n",
	       gpus, best_fab * 1e3, best_fab / best_plan, best_fab / best_hl);
	job_free(&j);
	mt_domains_free(a.domains);
	free(a.hostlist);
}

/* The plugin passes one restricted copy of the node model per node: same facts, distinct pointers. */
static void speed_copies(int gpus)
{
	char err[MT_ERRLEN];
	struct mt_node *m;
	mt_preset_node("gb300-nvl72-tray", &m, err, sizeof(err));
	struct alloc a;
	make_alloc(&a, gpus / m->n_gpus, 0);
	struct job j;
	job_from(&j, &a, m, 64);
	struct mt_node **copies = malloc(sizeof(*copies) * (size_t)j.n);
	for (int i = 0; i < j.n; i++) {
		mt_preset_node("gb300-nvl72-tray", &copies[i], err, sizeof(err));
		j.models[i] = copies[i];
	}
	double best = 1e9, best_shared = 1e9;
	for (int r = 0; r < 5; r++) {
		struct mt_plan *p;
		double t0 = now();
		mt_plan_build(&j.job, &p, err, sizeof(err));
		double t1 = now();
		mt_plan_free(p);
		if (t1 - t0 < best)
			best = t1 - t0;
	}
	for (int i = 0; i < j.n; i++)
		j.models[i] = m;
	for (int r = 0; r < 5; r++) {
		struct mt_plan *p;
		double t0 = now();
		mt_plan_build(&j.job, &p, err, sizeof(err));
		double t1 = now();
		mt_plan_free(p);
		if (t1 - t0 < best_shared)
			best_shared = t1 - t0;
	}
	printf("  %d GPUs with one node-model copy per node (as the plugin passes them): plan %.2f ms, "
	       "%.2fx of one shared model\n",
	       gpus, best * 1e3, best / best_shared);
	for (int i = 0; i < j.n; i++)
		mt_node_free(copies[i]);
	free(copies);
	job_free(&j);
	mt_domains_free(a.domains);
	free(a.hostlist);
	mt_node_free(m);
}

static void traffic(const struct mt_node *m, int gpus, int ep, int interleave, double oversub, int rg)
{
	struct alloc a;
	make_alloc(&a, gpus / m->n_gpus, interleave);
	struct job j;
	job_from(&j, &a, m, ep);
	j.job.spec.route_groups = rg; /* the spec says how the trainer routes; the plan may use it */
	char err[MT_ERRLEN];
	struct mt_plan *p, *blind;
	if (mt_plan_build(&j.job, &blind, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	j.job.fabric = (struct mt_fabric){oversub, 100, 900}; /* the site says: plugstack fabric= */
	if (mt_plan_build(&j.job, &p, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	struct mt_sim_params sp;
	struct mt_sim_result x, y;
	mt_sim_default_params(&sp);
	sp.nvlink_gbs = 900;
	sp.nic_gbs = 100;
	sp.oversub = oversub;
	sp.route_groups = rg;
	struct mt_sim_result z;
	mt_sim_plan(p, &sp, &x, err, sizeof(err));
	mt_sim_default(&j.job, p, &sp, &y, err, sizeof(err));
	mt_sim_plan(blind, &sp, &z, err, sizeof(err));
	printf("  %d GB300, %s order, ep=%d, oversub %.0f, %s:\n"
	       "    plan    local %d/%d, widest group %2d racks, NVLink bytes %3.0f%%: slowest group %5.0f us, mean group %5.0f us"
	       ", spine-bound groups %3d\n"
	       "    default local %d/%d, widest group %2d racks, NVLink bytes %3.0f%%: slowest group %5.0f us, mean group %5.0f us"
	       ", spine-bound groups %3d\n"
	       "    default/plan: slowest group %.2fx, mean group %.2fx\n",
	       p->world, interleave ? "interleaved" : "rack", ep, oversub, rg ? "group-limited M=2" : "uniform",
	       x.summary.ep_groups_local, x.summary.ep_groups, x.summary.max_domains_per_group,
	       100 * x.summary.nvlink_local_fraction, x.total_us, x.mean_group_us, x.spine_bound_groups,
	       y.summary.ep_groups_local, y.summary.ep_groups, y.summary.max_domains_per_group,
	       100 * y.summary.nvlink_local_fraction, y.total_us, y.mean_group_us, y.spine_bound_groups,
	       y.total_us / x.total_us, y.mean_group_us / x.mean_group_us);
	printf("    plan without fabric= (most local groups): local %d/%d, slowest group %5.0f us, mean group %5.0f us; "
	       "default/that plan: slowest %.2fx, mean %.2fx\n",
	       z.summary.ep_groups_local, z.summary.ep_groups, z.total_us, z.mean_group_us, y.total_us / z.total_us,
	       y.mean_group_us / z.mean_group_us);
	mt_plan_free(p);
	mt_plan_free(blind);
	job_free(&j);
	mt_domains_free(a.domains);
	free(a.hostlist);
}

/* DGX H100 nodes (NVLink domain = node) where Slurm gave some nodes only 4 of 8 GPUs (shared nodes):
 * consecutive-rank EP groups then straddle nodes. */
static void traffic_dgx(int nodes, int ep, double oversub)
{
	char err[MT_ERRLEN];
	struct mt_node *m;
	if (mt_preset_node("dgx-h100", &m, err, sizeof(err)))
		exit(1);
	char hl[64];
	snprintf(hl, sizeof(hl), "dgx[%04d-%04d]", 1, nodes);
	struct job j;
	struct alloc a = {hl, NULL, 0, 0};
	job_from(&j, &a, m, ep);
	rng = 777;
	int half = 0;
	for (int i = 0; i < j.n; i++)
		if (rnd(4) == 0) {
			j.tasks[i] = 4;
			half++;
		}
	if (half % 2) /* keep the world a multiple of 8 */
		for (int i = 0; i < j.n; i++)
			if (j.tasks[i] == 8) {
				j.tasks[i] = 4;
				half++;
				break;
			}
	struct mt_plan *p;
	if (mt_plan_build(&j.job, &p, err, sizeof(err))) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	struct mt_sim_params sp;
	struct mt_sim_result x, y;
	mt_sim_default_params(&sp); /* H100: NVLink 450 GB/s, ConnectX-7 50 GB/s */
	sp.oversub = oversub;
	mt_sim_plan(p, &sp, &x, err, sizeof(err));
	mt_sim_default(&j.job, p, &sp, &y, err, sizeof(err));
	printf("  %d DGX H100 nodes (%d with 4 of 8 GPUs), %d GPUs, ep=%d, oversub %.0f, uniform:\n"
	       "    plan    local %d/%d, NVLink bytes %3.0f%%, rail-aligned %3.0f%%: slowest group %5.0f us, mean group %5.0f us\n"
	       "    default local %d/%d, NVLink bytes %3.0f%%, rail-aligned %3.0f%%: slowest group %5.0f us, mean group %5.0f us\n"
	       "    default/plan: slowest group %.2fx, mean group %.2fx\n",
	       j.n, half, p->world, ep, oversub, x.summary.ep_groups_local, x.summary.ep_groups,
	       100 * x.summary.nvlink_local_fraction, 100 * x.summary.rail_aligned_fraction, x.total_us, x.mean_group_us,
	       y.summary.ep_groups_local, y.summary.ep_groups, 100 * y.summary.nvlink_local_fraction,
	       100 * y.summary.rail_aligned_fraction, y.total_us, y.mean_group_us, y.total_us / x.total_us,
	       y.mean_group_us / x.mean_group_us);
	mt_plan_free(p);
	job_free(&j);
	mt_node_free(m);
}

int main(int argc, char **argv)
{
	char err[MT_ERRLEN];
	struct mt_node *gb;
	if (mt_preset_node("gb300-nvl72-tray", &gb, err, sizeof(err)))
		return 1;
	int quick = argc > 1 && !strcmp(argv[1], "--quick");
	printf("planner speed (one core, best of several runs):\n");
	speed(gb, 8192, 20);
	speed_copies(8192);
	if (!quick)
		speed(gb, 131072, 500);
	printf("simulated MoE all-to-all per layer (4096 tokens/GPU, hidden 7168, top-8, bf16, NVLink 900 GB/s, "
	       "NIC 100 GB/s):\n");
	for (int il = 0; il < 2; il++) /* rack order, then interleaved names; spine oversubscription 1, 2, 4 */
		for (int o = 1; o <= 4; o *= 2)
			traffic(gb, 8192, 64, il, o, 0);
	traffic(gb, 8192, 64, 0, 2, 2); /* group-limited routing, rack order and interleaved */
	traffic(gb, 8192, 64, 1, 2, 2);
	traffic(gb, 8192, 32, 1, 2, 0);
	printf("simulated MoE all-to-all per layer, DGX H100 (NVLink 450 GB/s, NIC 50 GB/s):\n");
	traffic_dgx(256, 8, 2);
	traffic_dgx(256, 16, 2);
	mt_node_free(gb);
	return 0;
}
