/* test_plan_fixtures.c - plans on every real captured topology in tests/fixtures (hwloc and NCCL XML,
 * loaded by the node model).  For each fixture, two nodes of that machine, one task per GPU and then
 * half as many: the plan builds, each rank's GPU/PCI id/NICs come from the model, local rank i is on
 * the GPU of rail i (or, where GPUs share rails, ranks follow rail order; NVIDIA GPUs before GPUs the
 * model marks unsupported), each CPU set lies inside
 * the CPUs local to the rank's GPU, and CPU sets on a node do not overlap (unless the GPU has fewer
 * CPUs than ranks, as in the trimmed DGX-2 capture, where they share). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "tap.h"

#define MAXCPU 4096

static int check(const char *name, const struct mt_node *m, int tasks)
{
	char err[MT_ERRLEN];
	const char *nodes[2] = {"fx1", "fx2"};
	int tk[2] = {tasks, tasks};
	const struct mt_node *models[2] = {m, m};
	struct mt_job job = {.n_nodes = 2, .nodes = nodes, .tasks = tk, .models = models};
	mt_spec_default(&job.spec);
	job.spec.mode = MT_MODE_SPEC;
	job.spec.ep = tasks;
	struct mt_plan *p;
	if (mt_plan_build(&job, &p, err, sizeof(err))) {
		printf("# %s: %s\n", name, err);
		return 0;
	}
	int ok = p->summary.ep_groups_local == 2;
	bool perm = true; /* rails 0..n-1, each once */
	for (int g = 0; g < m->n_gpus; g++) {
		int c = 0;
		for (int h = 0; h < m->n_gpus; h++)
			c += m->gpus[h].rail == g;
		perm &= c == 1;
	}
	int supported = 0; /* NVIDIA GPUs are bound before the others (32em64t mixes vendors) */
	for (int g = 0; g < m->n_gpus; g++)
		supported += m->gpus[g].supported;
	unsigned char *mask = malloc(MAXCPU), *local = malloc(MAXCPU), *used = calloc(MAXCPU, 1);
	int prev_rail = -1;
	for (int t = 0; t < tasks; t++) {
		const struct mt_rank *R = &p->ranks[t]; /* node fx1, block distribution */
		const struct mt_gpu *G = &m->gpus[R->gpu];
		if (R->gpu < 0 || strcmp(R->gpu_pci, G->pci) || R->rail != G->rail || R->local_rank != t) {
			printf("# %s: rank %d GPU fields do not match the model\n", name, t);
			ok = 0;
		}
		if (t < supported && !G->supported) {
			printf("# %s: local rank %d on an unsupported GPU while a supported one is free\n", name, t);
			ok = 0;
		}
		int key = (R->rail >= 0 ? R->rail : 1 << 20) + (G->supported ? 0 : 1 << 21); /* no rail: last */
		if (perm ? R->rail != t : key < prev_rail) {
			printf("# %s: local rank %d on rail %d\n", name, t, R->rail);
			ok = 0;
		}
		prev_rail = key;
		for (const char *s = R->nics; *s;) { /* each NIC named is one of the model's */
			size_t n = strcspn(s, ",");
			bool found = false;
			for (int k = 0; k < m->n_nics; k++)
				found |= strlen(m->nics[k].name) == n && !strncmp(m->nics[k].name, s, n);
			if (!found) {
				printf("# %s: NIC list '%s' names an unknown NIC\n", name, R->nics);
				ok = 0;
			}
			s += n + (s[n] == ',');
		}
		int n = mt_cpulist_parse(R->cpuset, mask, MAXCPU);
		int nl = mt_cpulist_parse(G->cpuset, local, MAXCPU);
		if (n <= 0) {
			printf("# %s: rank %d has no CPUs\n", name, t);
			ok = 0;
		}
		int share = 0; /* ranks on this GPU's CPUs */
		for (int u = 0; u < tasks; u++)
			share += !strcmp(m->gpus[p->ranks[u].gpu].cpuset, G->cpuset);
		for (int c = 0; c < MAXCPU && n > 0; c++) {
			if (mask[c] && nl > 0 && !local[c]) {
				printf("# %s: rank %d cpu %d is not local to its GPU (%s)\n", name, t, c, G->cpuset);
				ok = 0;
				break;
			}
			if (mask[c] && used[c]++ && nl >= share) {
				printf("# %s: cpu %d given to two ranks\n", name, c);
				ok = 0;
				break;
			}
		}
	}
	free(mask);
	free(local);
	free(used);
	mt_plan_free(p);
	return ok;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void)
{
	const char *dirs[] = {SRCDIR "/fixtures/hwloc", SRCDIR "/fixtures/nccl"};
	int files = 0;
	for (int d = 0; d < 2; d++) {
		DIR *dir = opendir(dirs[d]);
		if (!dir)
			continue;
		struct dirent *e;
		char *names[64];
		int n = 0;
		while ((e = readdir(dir)) && n < 64)
			if (strstr(e->d_name, ".xml"))
				names[n++] = strdup(e->d_name);
		closedir(dir);
		qsort(names, (size_t)n, sizeof(char *), cmp);
		for (int i = 0; i < n; i++) {
			char path[1024], err[MT_ERRLEN];
			struct mt_node *m;
			snprintf(path, sizeof(path), "%s/%s", dirs[d], names[i]);
			files++;
			if (mt_node_load_file(path, &m, err, sizeof(err))) {
				tap_ok(0, "%s loads (%s)", names[i], err);
				free(names[i]);
				continue;
			}
			if (m->n_gpus == 0) { /* plan it as a CPU-only node: one task per NUMA node */
				const char *nodes[1] = {"fx1"};
				int tk[1] = {m->n_numa > 0 ? m->n_numa : 1};
				const struct mt_node *models[1] = {m};
				struct mt_job job = {.n_nodes = 1, .nodes = nodes, .tasks = tk, .models = models};
				struct mt_plan *p = NULL;
				mt_spec_default(&job.spec);
				int rc = mt_plan_build(&job, &p, err, sizeof(err));
				tap_ok(!rc && p->ranks[0].gpu == -1 && p->ranks[0].cpuset[0], "%s: CPU-only plan (%s)",
				       names[i], err);
				mt_plan_free(p);
			} else {
				tap_ok(check(names[i], m, m->n_gpus), "%s: %d tasks per node on %d GPUs", names[i],
				       m->n_gpus, m->n_gpus);
				if (m->n_gpus >= 2)
					tap_ok(check(names[i], m, m->n_gpus / 2), "%s: %d tasks per node", names[i],
					       m->n_gpus / 2);
			}
			mt_node_free(m);
			free(names[i]);
		}
	}
	tap_ok(files >= 14, "found the %d captured topologies", files);
	return tap_done();
}
