/* plan.c - mt_plan_build: which rank each Slurm task becomes, and what it is bound to.
 *
 * Ranks follow Megatron's order (tp fastest, then ep, then the rest of dp, pp slowest), so an EP
 * "block" of ep*tp consecutive ranks holds tp EP groups.  Blocks are packed per NVLink domain:
 * every domain first yields floor(units/ep) whole blocks (the most NVLink-local groups possible),
 * then the leftovers of all domains are combined into blocks whose smallest per-domain chunk is as
 * large as possible, then rail-aligned, then spanning few domains (plan_pack.c).  Inside a node,
 * ranks take slots in order, and local rank i gets the GPU of rail i.
 * Pure function of its inputs: every node computes the same plan without talking to the others.
 */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

static int gcd(int a, int b)
{
	while (b) {
		int t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* "1, 2, 4, 8, ..." - the divisors of n, for error messages listing valid choices. */
static void divisors(int n, char *buf, size_t len)
{
	size_t o = 0;
	int shown = 0;
	buf[0] = '\0';
	for (int d = 1; d <= n && o + 16 < len; d++)
		if (n % d == 0) {
			if (shown == 24) {
				snprintf(buf + o, len - o, ", ...");
				return;
			}
			o += (size_t)snprintf(buf + o, len - o, "%s%d", shown ? ", " : "", d);
			shown++;
		}
}

void mt_plan_free(struct mt_plan *p)
{
	if (!p)
		return;
	if (p->ranks)
		for (int i = 0; i < p->world; i++)
			free(p->ranks[i].cpuset);
	free(p->ranks);
	free(p->by_rank);
	if (p->groups) {
		for (int g = 0; g < p->n_groups; g++) {
			free(p->groups[g].members);
			free(p->groups[g].domains);
		}
	}
	free(p->groups);
	if (p->domain_names)
		for (int d = 0; d < p->n_domains; d++)
			free(p->domain_names[d]);
	free(p->domain_names);
	free(p->node_domain);
	free(p->node_tasks);
	free(p->node_rank);
	free(p->node_bound);
	if (p->node_nccl_hca)
		for (int i = 0; i < p->n_nodes; i++)
			free(p->node_nccl_hca[i]);
	free(p->node_nccl_hca);
	if (p->node_names)
		for (int i = 0; i < p->n_nodes; i++)
			free(p->node_names[i]);
	free(p->node_names);
	free(p);
}

int mt_plan_expert_owner(const struct mt_plan *p, int expert)
{
	if (!p || p->experts_per_rank <= 0 || expert < 0 || expert >= p->spec.experts)
		return -1;
	return expert / p->experts_per_rank;
}

/* Domain name of node i: the map, else the NVML fabric clique when every node's model is known and has
 * one, else the node. */
static int resolve_domains(const struct mt_job *job, struct mt_plan *p, char *err, size_t errlen)
{
	bool fabric = !job->domains && job->models;
	for (int i = 0; fabric && i < job->n_nodes; i++)
		fabric = job->models[i] && job->models[i]->n_gpus > 0 && job->models[i]->gpus[0].has_fabric;
	struct mt_strmap map;
	char **names = calloc((size_t)job->n_nodes, sizeof(char *));
	p->node_domain = malloc(sizeof(int) * (size_t)job->n_nodes);
	if (!names || !p->node_domain || mt_strmap_init(&map, (size_t)job->n_nodes)) {
		free(names);
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory resolving NVLink domains");
	}
	int rc = 0, nd = 0;
	for (int i = 0; i < job->n_nodes; i++) {
		char buf[96];
		const char *dn;
		if (job->domains) {
			dn = mt_domains_lookup(job->domains, job->nodes[i]);
			if (!dn) {
				rc = mt_seterr(err, errlen, MT_EINVAL,
						 "node '%s' is not in the NVLink domain map (add it to the map, or "
						 "plan without one: each node is then its own domain)",
						 job->nodes[i]);
				break;
			}
		} else if (fabric) {
			const struct mt_gpu *g = &job->models[i]->gpus[0];
			snprintf(buf, sizeof(buf), "%s/%u", g->fabric_uuid, g->clique);
			dn = buf;
		} else
			dn = job->nodes[i];
		int d = mt_strmap_get(&map, dn);
		if (d < 0) {
			size_t n = strlen(dn) + 1;
			if (!(names[nd] = malloc(n))) {
				rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
				break;
			}
			memcpy(names[nd], dn, n);
			d = mt_strmap_put(&map, names[nd], nd);
			if (d < 0) {
				free(names[nd]);
				rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
				break;
			}
			nd++;
		}
		p->node_domain[i] = d;
	}
	mt_strmap_free(&map);
	p->domain_names = names;
	p->n_domains = nd;
	return rc;
}

static int check_job(const struct mt_job *job, int *world, char *err, size_t errlen)
{
	if (job->spec.mode == MT_MODE_OFF || job->spec.mode == MT_MODE_HELP)
		return mt_seterr(err, errlen, MT_EINVAL, "spec '%s' asks for no plan (valid: auto or key=value,...)",
				   job->spec.mode == MT_MODE_OFF ? "off" : "help");
	if (job->n_nodes < 1 || !job->nodes || !job->tasks)
		return mt_seterr(err, errlen, MT_EINVAL, "job has no nodes");
	const struct mt_fabric *f = &job->fabric;
	if ((f->oversub != 0 && !(f->oversub >= 1)) || !(f->nic_gbs >= 0) || !(f->nvlink_gbs >= 0))
		return mt_seterr(err, errlen, MT_EINVAL,
				   "fabric oversub %g, nic %g GB/s, nvlink %g GB/s (valid: oversub 0 = unknown or >= 1; "
				   "bandwidths 0 = default or > 0)",
				   f->oversub, f->nic_gbs, f->nvlink_gbs);
	struct mt_strmap seen;
	if (mt_strmap_init(&seen, (size_t)job->n_nodes))
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	long long w = 0;
	int rc = 0;
	for (int i = 0; i < job->n_nodes && !rc; i++) {
		if (!job->nodes[i])
			rc = mt_seterr(err, errlen, MT_EINVAL, "node %d has no name", i);
		else if (mt_strmap_put(&seen, job->nodes[i], i) != i)
			rc = mt_seterr(err, errlen, MT_EINVAL, "node '%s' is listed twice in the job", job->nodes[i]);
		else if (job->tasks[i] < 1)
			rc = mt_seterr(err, errlen, MT_EINVAL, "node '%s' runs %d tasks (valid: 1 or more)",
					 job->nodes[i], job->tasks[i]);
		else if (job->models && job->models[i])
			rc = mt_plan_check_gpus(job->nodes[i], job->tasks[i], job->models[i], err, errlen);
		w += job->tasks[i];
		if (w > MT_MAX_TASKS)
			rc = mt_seterr(err, errlen, MT_EINVAL, "job has more than %d tasks", MT_MAX_TASKS);
	}
	mt_strmap_free(&seen);
	*world = (int)w;
	return rc;
}

/* Node ranks (nodes sorted by the lowest new rank they hold: torch's GROUP_RANK) and the master node. */
static void node_order(struct mt_plan *p)
{
	int *nr = p->node_rank;
	p->master_node = p->ranks[p->by_rank[0]].node;
	/* sorting the nodes by their lowest rank is walking the ranks in order, numbering each node when met */
	for (int i = 0; i < p->n_nodes; i++)
		nr[i] = -1;
	for (int r = 0, next = 0; r < p->world; r++) {
		int n = p->ranks[p->by_rank[r]].node;
		if (nr[n] < 0)
			nr[n] = next++;
	}
}

/* procid of local task t on node i; block distribution when the job gives none. */
static int *procid_table(const struct mt_job *job, int world, const int *first, char *err, size_t errlen, int *rc)
{
	int *slot_of = malloc(sizeof(int) * (size_t)world); /* procid -> global slot (first[i] + t) */
	if (!slot_of) {
		*rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		return NULL;
	}
	for (int p = 0; p < world; p++)
		slot_of[p] = -1;
	for (int i = 0; i < job->n_nodes; i++)
		for (int t = 0; t < job->tasks[i]; t++) {
			int p = job->procids ? job->procids[i][t] : first[i] + t;
			if (p < 0 || p >= world || slot_of[p] >= 0) {
				*rc = mt_seterr(err, errlen, MT_EINVAL,
						  "task ids are not a permutation of 0..%d (node '%s' task %d has %d)",
						  world - 1, job->nodes[i], t, p);
				free(slot_of);
				return NULL;
			}
			slot_of[p] = first[i] + t;
		}
	return slot_of;
}

int mt_plan_build(const struct mt_job *job, struct mt_plan **out, char *err, size_t errlen)
{
	int world = 0, rc;
	char list[256];
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!job)
		return mt_seterr(err, errlen, MT_EINVAL, "no job");
	if ((rc = check_job(job, &world, err, errlen)))
		return rc;

	const struct mt_spec *s = &job->spec;
	int T = s->tp > 0 ? s->tp : 1, P = s->pp > 0 ? s->pp : 1;
	for (int i = 0; i < job->n_nodes; i++)
		if (job->tasks[i] % T) {
			divisors(job->tasks[i], list, sizeof(list));
			return mt_seterr(err, errlen, MT_EIMPOSSIBLE,
					   "tp=%d does not divide the %d tasks on node '%s' (TP groups stay inside a "
					   "node; valid tp: %s)",
					   T, job->tasks[i], job->nodes[i], list);
		}
	/* in long long: callers other than the spec parser may set tp and pp up to INT_MAX each */
	if (world % ((long long)T * P)) {
		divisors(world / T, list, sizeof(list));
		return mt_seterr(err, errlen, MT_EIMPOSSIBLE,
				   "pp=%d does not divide world %d / tp %d (valid pp: %s)", P, world, T, list);
	}
	int D = world / (T * P); /* T * P divides world, so it fits an int */

	struct mt_plan *p = calloc(1, sizeof(*p));
	if (!p)
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	p->spec = *s;
	p->world = world;
	p->n_nodes = job->n_nodes;
	if (!(p->node_names = calloc((size_t)job->n_nodes, sizeof(char *)))) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = 0; i < job->n_nodes; i++) {
		size_t n = strlen(job->nodes[i]) + 1;
		if (!(p->node_names[i] = malloc(n))) {
			rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
			goto fail;
		}
		memcpy(p->node_names[i], job->nodes[i], n);
	}
	p->node_tasks = malloc(sizeof(int) * (size_t)job->n_nodes);
	p->node_rank = malloc(sizeof(int) * (size_t)job->n_nodes);
	p->node_bound = calloc((size_t)job->n_nodes, sizeof(bool));
	p->node_nccl_hca = calloc((size_t)job->n_nodes, sizeof(char *));
	if (!p->node_tasks || !p->node_rank || !p->node_bound || !p->node_nccl_hca) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto fail;
	}
	memcpy(p->node_tasks, job->tasks, sizeof(int) * (size_t)job->n_nodes);
	if ((rc = resolve_domains(job, p, err, errlen)))
		goto fail;

	/* units (TP groups) per domain */
	int *dunits = calloc((size_t)p->n_domains, sizeof(int));
	if (!dunits) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = 0; i < job->n_nodes; i++)
		dunits[p->node_domain[i]] += job->tasks[i] / T;
	int E = s->ep;
	if (E == 0) { /* auto: the largest size that keeps every group inside one domain */
		E = D;
		for (int d = 0; d < p->n_domains; d++)
			E = gcd(E, dunits[d]);
	} else if (D % E) {
		free(dunits);
		divisors(D, list, sizeof(list));
		rc = mt_seterr(err, errlen, MT_EIMPOSSIBLE,
				 "ep=%d does not divide the data-parallel size %d (world %d / (tp %d x pp %d)); valid "
				 "ep: %s",
				 E, D, world, T, P, list);
		goto fail;
	}
	p->spec.ep = E;
	if (s->experts) {
		if (s->experts % E) {
			free(dunits);
			rc = mt_seterr(err, errlen, MT_EINVAL,
					 "experts=%d is not divisible by ep=%d (valid: a multiple of %d, e.g. %d or %d)",
					 s->experts, E, E, s->experts > E ? s->experts / E * E : E,
					 (s->experts / E + 1) * E);
			goto fail;
		}
		p->experts_per_rank = s->experts / E;
	}

	int *first = malloc(sizeof(int) * (size_t)job->n_nodes);
	int *seq = NULL;
	int *slot_of = NULL;
	if (!first) {
		free(dunits);
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto fail;
	}
	for (int i = 0, acc = 0; i < job->n_nodes; i++) {
		first[i] = acc;
		acc += job->tasks[i];
	}
	slot_of = procid_table(job, world, first, err, errlen, &rc);
	if (!slot_of)
		goto fail_tmp;
	/* seq: global slot of the first task of each unit, in rank order */
	rc = 0;
	seq = mt_plan_pack(job, p->node_domain, p->n_domains, dunits, first, T, E, -1, &rc, err, errlen);
	if (seq && job->fabric.oversub >= 1)
		seq = mt_plan_objective(job, p->node_domain, p->n_domains, dunits, first, slot_of, T, E, seq, &rc, err,
					errlen);
	if (!seq)
		goto fail_tmp;
	rc = mt_plan_fill(job, p, seq, first, slot_of, T, E, D, err, errlen);
	if (!rc)
		node_order(p);
fail_tmp:
	free(dunits);
	free(first);
	free(seq);
	free(slot_of);
	if (rc)
		goto fail;
	*out = p;
	return 0;
fail:
	mt_plan_free(p);
	return rc;
}
