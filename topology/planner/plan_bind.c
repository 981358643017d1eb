/* plan_bind.c - turns the packed unit order into ranks and binds each rank to GPU, NICs and CPUs.
 *
 * Local rank i on a node gets the GPU of rail i (PCI order where rails are unknown), so EP peers on
 * different nodes talk rail to rail.  CPU sets are the cores local to the rank's GPU (its NUMA node
 * on CPU-only nodes), within the step's allowed CPUs, cut into disjoint even slices among the ranks
 * that share them.  Consecutive nodes with the same binding facts, allowed CPUs and task count share
 * one computation.
 */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

/* GPU indices in binding order: GPUs the trainer can drive (NVIDIA) before others, then by rail,
 * GPUs without a rail after those with one, then PCI order. */
static int *gpu_order(const struct mt_node *m)
{
	int *o = malloc(sizeof(int) * (size_t)(m->n_gpus ? m->n_gpus : 1));
	if (!o)
		return NULL;
	for (int g = 0; g < m->n_gpus; g++)
		o[g] = g;
	for (int a = 1; a < m->n_gpus; a++) { /* insertion sort: at most a few dozen GPUs */
		int x = o[a], b = a - 1;
		long kx = (m->gpus[x].rail >= 0 ? m->gpus[x].rail : 1L << 20) + (m->gpus[x].supported ? 0 : 1L << 21);
		while (b >= 0) {
			int y = o[b];
			long ky = (m->gpus[y].rail >= 0 ? m->gpus[y].rail : 1L << 20) + (m->gpus[y].supported ? 0 : 1L << 21);
			if (ky < kx || (ky == kx && y < x))
				break;
			o[b + 1] = y;
			b--;
		}
		o[b + 1] = x;
	}
	return o;
}

static int list_max(const char *s)
{
	int mx = -1, v = -1;
	for (; s && *s; s++) {
		if (*s >= '0' && *s <= '9') {
			v = (v < 0 ? 0 : v * 10) + (*s - '0');
			if (v > 1 << 20)
				return 1 << 20;
		} else {
			if (v > mx)
				mx = v;
			v = -1;
		}
	}
	return v > mx ? v : mx;
}

/* Slice j of m of the CPUs in mask (size maxcpu): each contiguous run is cut evenly, so SMT
 * siblings enumerated as a second run (0-55,112-167) stay with their cores. */
static char *slice(const unsigned char *mask, int maxcpu, int j, int m)
{
	unsigned char *out = calloc((size_t)maxcpu + 1, 1);
	size_t len = (size_t)maxcpu * 8 + 16;
	char *buf = malloc(len);
	if (!out || !buf) {
		free(out);
		free(buf);
		return NULL;
	}
	int got = 0;
	for (int c = 0; c < maxcpu;) {
		if (!mask[c]) {
			c++;
			continue;
		}
		int e = c;
		while (e < maxcpu && mask[e])
			e++;
		long L = e - c, lo = c + L * j / m, hi = c + L * (j + 1) / m;
		for (long x = lo; x < hi; x++, got++)
			out[x] = 1;
		c = e;
	}
	if (!got) /* fewer CPUs than ranks: share the whole set rather than leave a rank unbound */
		memcpy(out, mask, (size_t)maxcpu);
	mt_cpulist_format(out, maxcpu, buf, len);
	free(out);
	return buf;
}

/* The CPU list each local rank of a node gets. */
static int node_cpusets(const struct mt_node *m, const char *allowed, int tasks, const int *order, enum mt_cpu mode,
			char **sets)
{
	if (mode == MT_CPU_NONE) {
		for (int t = 0; t < tasks; t++)
			if (!(sets[t] = calloc(1, 1)))
				return MT_ENOMEM;
		return 0;
	}
	int maxcpu = list_max(m->cpuset);
	for (int i = 0; i < m->n_numa; i++)
		if (list_max(m->numa_cpusets[i]) > maxcpu)
			maxcpu = list_max(m->numa_cpusets[i]);
	for (int g = 0; g < m->n_gpus; g++)
		if (list_max(m->gpus[g].cpuset) > maxcpu)
			maxcpu = list_max(m->gpus[g].cpuset);
	if (allowed && list_max(allowed) > maxcpu)
		maxcpu = list_max(allowed);
	maxcpu++;
	if (maxcpu <= 0)
		maxcpu = 1;
	int rc = MT_ENOMEM;
	unsigned char *allow = malloc((size_t)maxcpu), *pool = malloc((size_t)maxcpu);
	const char **src = calloc((size_t)tasks, sizeof(char *));
	if (!allow || !pool || !src)
		goto out;
	if (!allowed || !*allowed || mt_cpulist_parse(allowed, allow, maxcpu) < 0)
		memset(allow, 1, (size_t)maxcpu);
	/* the CPUs each rank is local to */
	for (int t = 0; t < tasks; t++) {
		const char *s = NULL;
		if (m->n_gpus > 0) {
			const struct mt_gpu *g = &m->gpus[order[t]];
			s = g->cpuset;
			for (int i = 0; (!s || !*s) && i < m->n_numa; i++)
				if (m->numa_os[i] == g->numa)
					s = m->numa_cpusets[i];
		} else if (m->n_numa > 0)
			s = m->numa_cpusets[(long)t * m->n_numa / tasks];
		src[t] = s && *s ? s : (m->cpuset ? m->cpuset : "");
	}
	for (int t = 0; t < tasks; t++) {
		int j = 0, cnt = 0;
		for (int u = 0; u < tasks; u++)
			if (!strcmp(src[u], src[t])) {
				if (u < t)
					j++;
				cnt++;
			}
		int n = mt_cpulist_parse(src[t], pool, maxcpu);
		int k = 0;
		for (int c = 0; n > 0 && c < maxcpu; c++)
			k += (pool[c] &= allow[c]);
		if (n < 0 || !k) { /* nothing local is allowed: slice the allowed set instead */
			memcpy(pool, allow, (size_t)maxcpu);
			j = t;
			cnt = tasks;
		}
		if (!(sets[t] = slice(pool, maxcpu, j, cnt)))
			goto out;
	}
	rc = 0;
out:
	free(allow);
	free(pool);
	free(src);
	return rc;
}

static void nic_list(const struct mt_node *m, const struct mt_gpu *g, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (int k = 0; k < g->n_nics; k++) {
		int i = g->nics[k];
		if (i < 0 || i >= m->n_nics || !m->nics[i].rdma)
			continue;
		size_t n = strlen(m->nics[i].name);
		if (o + n + 2 > len)
			break; /* whole names only */
		if (o)
			buf[o++] = ',';
		memcpy(buf + o, m->nics[i].name, n + 1);
		o += n;
	}
}

/* Per-node binding shared by consecutive nodes with the same model, allowed CPUs and task count. */
struct bind_cache {
	const struct mt_node *model;
	const char *allowed;
	int tasks;
	int *order;
	char **sets;
};

static void cache_drop(struct bind_cache *c)
{
	if (c->sets)
		for (int t = 0; t < c->tasks; t++)
			free(c->sets[t]);
	free(c->sets);
	free(c->order);
	memset(c, 0, sizeof(*c));
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* Two models bind alike when GPU rails, NUMA and CPU lists agree: callers such as the plugin pass
 * one restricted copy per node, so equal content must hit the cache, not only equal pointers. */
static bool same_binding_facts(const struct mt_node *a, const struct mt_node *b)
{
	if (a == b)
		return true;
	if (!a || !b || a->n_gpus != b->n_gpus || a->n_numa != b->n_numa || !same_str(a->cpuset, b->cpuset))
		return false;
	for (int g = 0; g < a->n_gpus; g++)
		if (a->gpus[g].rail != b->gpus[g].rail || a->gpus[g].numa != b->gpus[g].numa ||
		    !same_str(a->gpus[g].cpuset, b->gpus[g].cpuset))
			return false;
	for (int i = 0; i < a->n_numa; i++)
		if (a->numa_os[i] != b->numa_os[i] || !same_str(a->numa_cpusets[i], b->numa_cpusets[i]))
			return false;
	return true;
}

static int cache_get(struct bind_cache *c, const struct mt_node *m, const char *allowed, int tasks, enum mt_cpu mode)
{
	if (c->order && c->tasks == tasks && same_binding_facts(c->model, m) &&
	    (c->allowed == allowed || (c->allowed && allowed && !strcmp(c->allowed, allowed))))
		return 0;
	cache_drop(c);
	c->model = m;
	c->allowed = allowed;
	c->tasks = tasks;
	c->order = gpu_order(m);
	c->sets = calloc((size_t)tasks, sizeof(char *));
	if (!c->order || !c->sets)
		return MT_ENOMEM;
	return node_cpusets(m, allowed, tasks, c->order, mode, c->sets);
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

int mt_plan_check_gpus(const char *node, int tasks, const struct mt_node *m, char *err, size_t errlen)
{
	if (m->n_gpus > 0 && tasks > m->n_gpus)
		return mt_seterr(err, errlen, MT_EIMPOSSIBLE,
				 "node '%s' runs %d tasks but has %d GPUs (valid: 1 to %d tasks per node, one GPU each)",
				 node, tasks, m->n_gpus, m->n_gpus);
	return 0;
}

/* NCCL_IB_HCA of a node: "=" (exact names: "mlx5_1" must not also select mlx5_10..19), then every RDMA
 * NIC with a rail, in rail order; NULL when there is none (or no memory). */
static char *nccl_hca(const struct mt_node *m)
{
	size_t len = 2, o = 1;
	int rails = 0;
	char *s;

	for (int i = 0; i < m->n_nics; i++)
		len += strlen(m->nics[i].name) + 1;
	if (!(s = malloc(len)))
		return NULL;
	s[0] = '=';
	for (int r = 0; r < m->n_nics; r++)
		for (int i = 0; i < m->n_nics; i++)
			if (m->nics[i].rdma && m->nics[i].rail == r)
				o += (size_t)sprintf(s + o, "%s%s", rails++ ? "," : "", m->nics[i].name);
	if (!rails) {
		free(s);
		return NULL;
	}
	return s;
}

/* Binds the ranks of node i: procs[t] is the procid on local slot t. */
static int bind_node(struct mt_plan *p, int i, const struct mt_node *m, const char *allowed, const int *procs,
		     struct bind_cache *cache, char *err, size_t errlen)
{
	int tasks = p->node_tasks[i], rc;
	char nics[sizeof(p->ranks[0].nics)];

	if ((rc = mt_plan_check_gpus(p->node_names[i], tasks, m, err, errlen)))
		return rc;
	if ((rc = cache_get(cache, m, allowed, tasks, p->spec.cpu)))
		return mt_seterr(err, errlen, rc, "cannot compute CPU sets for node '%s'", p->node_names[i]);
	for (int t = 0; t < tasks; t++) {
		struct mt_rank *R = &p->ranks[procs[t]];
		R->gpu = -1;
		R->rail = -1;
		R->numa = -1;
		if (m->n_gpus > 0) {
			const struct mt_gpu *g = &m->gpus[cache->order[t]];
			R->gpu = g->index;
			memcpy(R->gpu_pci, g->pci, sizeof(R->gpu_pci));
			R->rail = g->rail;
			R->numa = g->numa;
			nic_list(m, g, nics, sizeof(nics));
			memcpy(R->nics, nics, sizeof(nics));
		} else if (m->n_numa > 0)
			R->numa = m->numa_os[(long)t * m->n_numa / tasks];
		free(R->cpuset);
		if (!(R->cpuset = strdup(cache->sets[t])))
			return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	}
	free(p->node_nccl_hca[i]);
	p->node_nccl_hca[i] = nccl_hca(m);
	p->node_bound[i] = true;
	return 0;
}

/* An unbound rank: no GPU, NIC or CPU set, until its node binds it. */
static void unbound(struct mt_rank *R)
{
	R->gpu = R->rail = R->numa = -1;
	R->gpu_pci[0] = R->nics[0] = '\0';
	free(R->cpuset);
	R->cpuset = NULL;
}

int mt_plan_bind_node(struct mt_plan *p, int node, const struct mt_node *model, const char *allowed_cpus,
		      char *err, size_t errlen)
{
	struct bind_cache cache = {0};
	int *procs, rc;

	if (!p || node < 0 || node >= p->n_nodes || !model)
		return mt_seterr(err, errlen, MT_EINVAL, "no such node to bind");
	if (!(procs = malloc(sizeof(int) * (size_t)p->node_tasks[node])))
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	for (int q = 0; q < p->world; q++)
		if (p->ranks[q].node == node)
			procs[p->ranks[q].local_rank] = q;
	rc = bind_node(p, node, model, allowed_cpus, procs, &cache, err, errlen);
	if (rc) { /* nothing half-bound */
		for (int t = 0; t < p->node_tasks[node]; t++)
			unbound(&p->ranks[procs[t]]);
		free(p->node_nccl_hca[node]);
		p->node_nccl_hca[node] = NULL;
		p->node_bound[node] = false;
	}
	cache_drop(&cache);
	free(procs);
	return rc;
}

int mt_plan_fill(const struct mt_job *job, struct mt_plan *p, const int *seq, const int *first, const int *slot_of,
		 int T, int E, int D, char *err, size_t errlen)
{
	int W = p->world, U = W / T, rc = MT_ENOMEM;
	int *snode = malloc(sizeof(int) * (size_t)W), *proc_at = malloc(sizeof(int) * (size_t)W);
	int *lay = NULL;
	struct bind_cache cache = {0};
	p->ranks = calloc((size_t)W, sizeof(*p->ranks));
	p->by_rank = malloc(sizeof(int) * (size_t)W);
	if (!snode || !proc_at || !p->ranks || !p->by_rank)
		goto out;
	for (int i = 0; i < job->n_nodes; i++)
		for (int t = 0; t < job->tasks[i]; t++)
			snode[first[i] + t] = i;
	for (int q = 0; q < W; q++)
		proc_at[slot_of[q]] = q;

	int nbs = D / E; /* EP blocks per pipeline stage */
	for (int u = 0; u < U; u++) {
		int b = u / E, e = u % E;
		for (int tp = 0; tp < T; tp++) {
			int r = u * T + tp, slot = seq[u] + tp, node = snode[slot], pid = proc_at[slot];
			struct mt_rank *R = &p->ranks[pid];
			R->procid = pid;
			R->rank = r;
			R->node = node;
			R->local_rank = slot - first[node];
			R->ep_group = b * T + tp;
			R->ep_rank = e;
			R->tp_rank = tp;
			R->pp_rank = b / nbs;
			R->dp_rank = (b % nbs) * E + e;
			R->domain = p->node_domain[node];
			p->by_rank[r] = pid;
		}
	}
	/* bindings, node by node, where the node's model is known */
	for (int i = 0; i < job->n_nodes; i++) {
		const struct mt_node *m = job->models ? job->models[i] : NULL;
		if (!m) {
			for (int t = 0; t < job->tasks[i]; t++)
				unbound(&p->ranks[proc_at[first[i] + t]]);
			continue;
		}
		if ((rc = bind_node(p, i, m, job->allowed_cpus ? job->allowed_cpus[i] : NULL, &proc_at[first[i]],
				    &cache, err, errlen)))
			goto out;
	}
	rc = MT_ENOMEM;
	/* EP groups: block b holds the T groups b*T..b*T+T-1, members strided by T */
	p->n_groups = W / E;
	p->groups = calloc((size_t)p->n_groups, sizeof(*p->groups));
	struct mt_layout L;
	int *ln, *ld, *lr;
	lay = mt_layout_megatron(&L, W, E, T, p->n_domains, &ln, &ld, &lr);
	if (!p->groups || !lay)
		goto out;
	for (int g = 0; g < p->n_groups; g++) {
		struct mt_ep_group *G = &p->groups[g];
		G->size = E;
		G->members = malloc(sizeof(int) * (size_t)E);
		G->domains = malloc(sizeof(int) * (size_t)E);
		if (!G->members || !G->domains)
			goto out;
		for (int e = 0; e < E; e++) {
			int r = L.members[(size_t)g * E + e];
			G->members[e] = r;
			G->domains[e] = p->ranks[p->by_rank[r]].domain;
		}
		qsort(G->domains, (size_t)E, sizeof(int), int_cmp);
		int nd = 0;
		for (int e = 0; e < E; e++)
			if (!nd || G->domains[nd - 1] != G->domains[e])
				G->domains[nd++] = G->domains[e];
		G->n_domains = nd;
	}
	for (int r = 0; r < W; r++) {
		const struct mt_rank *R = &p->ranks[p->by_rank[r]];
		ln[r] = R->node;
		ld[r] = R->domain;
		lr[r] = R->rail;
	}
	mt_layout_summary(&L, &p->summary);
	rc = 0;
out:
	if (rc == MT_ENOMEM && err && errlen && !err[0])
		mt_seterr(err, errlen, rc, "out of memory building the plan");
	cache_drop(&cache);
	free(snode);
	free(proc_at);
	free(lay);
	return rc;
}
