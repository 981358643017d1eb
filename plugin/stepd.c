/* stepd.c - the slurmstepd side: one plan per node per step (user_init), applied per task (task_init).
 *
 * user_init gathers the step's facts, loads a node model for every node of the step (the cached hwloc XML
 * named by topology=, else this node's live hwloc), restricts each to the GPUs Slurm gave the step, and
 * calls the planner: every node computes the same plan from the same inputs, without talking to the
 * others.  task_init runs in each task's process, after Slurm's own binding, and applies its rank.
 *
 * Failure policy: with strict=no a failure leaves Slurm's binding untouched and warns once per step; with
 * strict=yes every task of the step fails with the reason.  Nothing here returns an error from user_init
 * (that would fail the launch or drain the node), and nothing is written outside the task's environment.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"

/* Slurm's special step ids (slurm.h): the batch script, the extern step, salloc's interactive step. */
#define STEP_BATCH 0xfffffffbu
#define STEP_EXTERN 0xfffffffcu
#define STEP_INTERACTIVE 0xfffffffau

static struct {
	bool active;          /* a plan is applied to every task */
	bool failed;          /* planning failed: warn (and under strict=yes fail the tasks) */
	bool node_only;       /* the failure is this node's own; otherwise every node hit it, node 0 reports */
	char err[MT_ERRLEN];
	struct mt_spec spec;
	struct mtp_facts facts;
	int n_models;
	struct mt_node **models;      /* models[i]: node i restricted to the step's GPUs (may repeat) */
	struct mt_node *own_full;     /* this node, all GPUs (NIC list for NCCL) */
	struct mt_domains *domains;
	struct mt_plan *plan;
	char *nccl_ib_hca;
	int node_rank;
	int node_id;          /* known even when the facts could not be gathered: who reports */
} st;

static void fail(bool node_only, const char *fmt, const char *detail)
{
	st.failed = true;
	st.node_only = node_only;
	snprintf(st.err, sizeof st.err, fmt, detail);
}

/* The path of node NAME's cached topology: topology= with %n replaced. */
static int topo_path(const char *pattern, const char *name, char *buf, size_t len)
{
	size_t o = 0;

	for (const char *p = pattern; *p; p++) {
		const char *ins = NULL;
		char one[2] = {*p, 0};
		if (p[0] == '%' && p[1] == 'n') {
			ins = name;
			p++;
		} else
			ins = one;
		size_t l = strlen(ins);
		if (o + l >= len)
			return -1;
		memcpy(buf + o, ins, l);
		o += l;
	}
	buf[o] = '\0';
	return 0;
}

/* Reads a file named in plugstack.conf once it passed the checks of mtp_open_trusted: a node model into
 * *node, else a domain map into *map.  1 when the file does not exist (err says so).  The library opens
 * the resolved name (not /proc/self/fd: with privileges dropped, /proc/self may not be ours to read). */
static int load_trusted(const char *path, struct mt_node **node, struct mt_domains **map, char *err,
			size_t errlen)
{
	char *real = NULL;
	int fd = mtp_open_trusted(path, &real, err, errlen), rc;

	if (fd < 0)
		return fd == MTP_ENOFILE ? 1 : -1;
	rc = node ? mt_node_load_file(real, node, err, errlen) : mt_domains_load(real, map, err, errlen);
	close(fd);
	if (rc)
		mtp_name_back(err, errlen, real, path);
	else if (node)
		snprintf((*node)->source, sizeof (*node)->source, "%s", path);
	free(real);
	return rc ? -1 : 0;
}

static int load_model(const struct mtp_config *c, const char *name, bool own, struct mt_node **out, char *err,
		      size_t errlen)
{
	char path[4096];
	int rc;

	*out = NULL;
	if (c->topology) {
		if (topo_path(c->topology, name, path, sizeof path)) {
			snprintf(err, errlen, "topology path for %s is too long", name);
			return -1;
		}
		rc = load_trusted(path, out, NULL, err, errlen);
		if (rc <= 0)
			return rc;
		if (!own)
			return 1;      /* not cached here: the caller assumes this node's model */
	}
	return mt_node_load_live(c->nvml == MTP_NVML_OFF ? MT_LOAD_NO_NVML : 0, out, err, errlen) ? -1 : 0;
}

/* Node model of a node restricted to the step's GPUs, by the node's GRES index (= PCI bus order). */
static int restrict_model(const struct mt_node *full, const char *name, struct mt_node **out, char *err,
			  size_t errlen)
{
	const char *pci[64];
	int n = st.facts.n_gpus;

	if (n > 64) {
		snprintf(err, errlen, "more than 64 GPUs in one step on %s", name);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		int g = st.facts.gpu_index[i];
		if (g >= full->n_gpus) {
			snprintf(err, errlen, "Slurm gave GPU %d on %s but its topology (%s) has %d GPUs: gres.conf and "
				 "the topology disagree", g, name, full->source, full->n_gpus);
			return -1;
		}
		pci[i] = full->gpus[g].pci;
	}
	return mt_node_subset(full, pci, n, out, err, errlen) ? -1 : 0;
}

static int load_models(const struct mtp_config *c, char *err, size_t errlen)
{
	const struct mtp_facts *f = &st.facts;
	int me = f->node_id, rc;

	st.models = calloc(f->n_nodes, sizeof *st.models);
	if (!st.models) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	st.n_models = f->n_nodes;
	if (load_model(c, f->nodes[me], true, &st.own_full, err, errlen)) {
		st.node_only = true;
		return -1;
	}
	if (restrict_model(st.own_full, f->nodes[me], &st.models[me], err, errlen)) {
		st.node_only = true;   /* this node's GRES and topology disagree: the others may be fine */
		return -1;
	}
	for (int i = 0; i < f->n_nodes; i++) {
		struct mt_node *full = NULL;
		if (i == me)
			continue;
		/* With a domain map, the other nodes' models only feed checks those nodes make themselves: this
		 * node's ranks depend on them through names, task counts and domains alone, so skip the parse.
		 * Without one, their NVML fabric cliques may define the domains, so read their cached files. */
		rc = c->topology && !st.domains ? load_model(c, f->nodes[i], false, &full, err, errlen) : 1;
		if (rc < 0)
			return -1;
		if (rc > 0)
			continue;      /* filled with this node's model below */
		rc = restrict_model(full, f->nodes[i], &st.models[i], err, errlen);
		mt_node_free(full);
		if (rc)
			return -1;
	}
	return 0;
}

/* The domain map: domains=PATH; else Slurm's own topology.conf, when domains=slurm names it or, without
 * domains=, when Slurm runs topology/block (its blocks are the NVLink domains).  A map read from Slurm's
 * file must place this node where Slurm does (SLURM_TOPOLOGY_ADDR): a copy that differs from the one
 * slurmctld loaded would give this node another plan than the others. */
static int load_domains(const struct mtp_config *c, char *err, size_t errlen)
{
	const struct mtp_facts *f = &st.facts;
	const char *me = f->nodes[f->node_id], *mine;
	char path[4096], dom[256];
	int rc;

	if (c->domains)
		return load_trusted(c->domains, NULL, &st.domains, err, errlen) ? -1 : 0;
	if (!c->domains_slurm && strncmp(f->topo_pattern, "block.", 6))
		return 0;   /* NVML fabric cliques, else one domain per node */
	if (mtp_slurm_topology_conf(path, sizeof path, err, errlen))
		return -1;
	rc = load_trusted(path, NULL, &st.domains, err, errlen);
	if (rc > 0 && !c->domains_slurm) {
		mtp_info("step %u.%u: %s; planning without a domain map (name one with domains=)", f->job_id,
			 f->step_id, err);
		return 0;   /* e.g. configless Slurm: no file beside slurm.conf on the node */
	}
	if (rc)
		return -1;
	if ((rc = mtp_topology_addr_domain(f->topo_addr, f->topo_pattern, me, dom, sizeof dom)) > 0)
		return 0;   /* domains=slurm without a topology plugin in Slurm: nothing to compare with */
	st.node_only = true;
	if (rc < 0) {
		snprintf(err, errlen, "SLURM_TOPOLOGY_ADDR='%.100s' (pattern '%.40s') does not end in this node's "
			 "name %s", f->topo_addr, f->topo_pattern, me);
		return -1;
	}
	mine = mt_domains_lookup(st.domains, me);
	if (!mine || strcmp(mine, dom)) {
		snprintf(err, errlen, "Slurm places %.60s in %.60s (SLURM_TOPOLOGY_ADDR) but %.150s here says %.60s: "
			 "this node's copy is not the topology slurmctld runs with (scontrol reconfigure after "
			 "editing it)", me, dom, path, mine ? mine : "nothing");
		return -1;
	}
	st.node_only = false;
	return 0;
}

static int build_plan(char *err, size_t errlen)
{
	const struct mtp_facts *f = &st.facts;
	size_t n = f->n_nodes > 0 ? (size_t)f->n_nodes : 1;
	const struct mt_node **models = calloc(n, sizeof *models);
	const char **allowed = calloc(n, sizeof *allowed);
	struct mt_job job = {0};
	int rc = -1;

	if (!models || !allowed) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < f->n_nodes; i++)
		models[i] = st.models[i] ? st.models[i] : st.models[f->node_id];
	/* Only this node's CPUs are known here; the planner shares each node's CPUs independently. */
	allowed[f->node_id] = f->allowed_cpus;
	job.n_nodes = f->n_nodes;
	job.nodes = (const char *const *)f->nodes;
	job.tasks = f->tasks;
	job.procids = (const int *const *)f->procids;
	job.models = models;
	job.domains = st.domains;
	job.allowed_cpus = allowed;
	job.spec = st.spec;
	rc = mt_plan_build(&job, &st.plan, err, errlen);
out:
	free(models);
	free(allowed);
	return rc;
}

/* NCCL_IB_HCA: the same on every rank of the node, all rail NICs in rail order (never per rank). */
static char *nccl_hca_list(const struct mt_node *n)
{
	size_t len = 2, o = 1;
	char *s;
	int rails = 0;

	for (int i = 0; i < n->n_nics; i++)
		len += strlen(n->nics[i].name) + 1;
	if (!(s = malloc(len)))
		return NULL;
	s[0] = '=';   /* exact names: "mlx5_1" must not also select mlx5_10..19 */
	for (int r = 0; r < n->n_nics; r++)
		for (int i = 0; i < n->n_nics; i++) {
			const struct mt_nic *nic = &n->nics[i];
			if (!nic->rdma || nic->rail != r)
				continue;
			o += (size_t)sprintf(s + o, "%s%s", rails++ ? "," : "", nic->name);
		}
	if (!rails) {
		free(s);
		return NULL;
	}
	return s;
}

/* This node's place in the new order: nodes sorted by the lowest new rank they hold. */
static int node_rank_of(const struct mt_plan *p, int node)
{
	int *low = malloc(p->n_nodes * sizeof *low), r = 0;

	if (!low)
		return node;
	for (int i = 0; i < p->n_nodes; i++)
		low[i] = p->world;
	for (int k = 0; k < p->world; k++)
		if (p->ranks[k].rank < low[p->ranks[k].node])
			low[p->ranks[k].node] = p->ranks[k].rank;
	for (int i = 0; i < p->n_nodes; i++)
		if (low[i] < low[node] || (low[i] == low[node] && i < node))
			r++;
	free(low);
	return r;
}

int mtp_stepd_user_init(spank_t sp, const struct mtp_config *c)
{
	char err[MT_ERRLEN] = "", *env = NULL;
	const char *origin, *text;
	uint32_t step = 0, nid = 0;
	spank_err_t erc;
	int rc = -1;

	memset(&st, 0, sizeof st);
	if (spank_get_item(sp, S_JOB_NODEID, &nid) == ESPANK_SUCCESS)
		st.node_id = (int)nid;
	if (spank_get_item(sp, S_JOB_STEPID, &step) == ESPANK_SUCCESS &&
	    (step == STEP_BATCH || step == STEP_EXTERN || step == STEP_INTERACTIVE))
		return 0;   /* the batch script and the job's own steps are not ranks: only srun steps are planned */
	if (!(env = calloc(1, MTP_SPEC_MAX + 2)))
		return 0;
	erc = spank_getenv(sp, MTP_ENV_SPEC, env, MTP_SPEC_MAX + 2);
	if (erc == ESPANK_NOSPACE) {
		fail(false, "%s is too long", MTP_ENV_SPEC);
		goto out;
	}
	if (erc != ESPANK_SUCCESS)
		env[0] = '\0';
	text = mtp_spec_text(c, env, &origin);
	if (strlen(text) > MTP_SPEC_MAX) {
		fail(false, "%s is too long", origin);
		goto out;
	}
	if (mt_spec_parse(text, &st.spec, err, sizeof err)) {
		snprintf(st.err, sizeof st.err, "%.60s=%.100s: %.340s", origin, text, err);
		st.failed = true;
		goto out;
	}
	if (st.spec.mode == MT_MODE_OFF || st.spec.mode == MT_MODE_HELP)
		goto done;
	if (c->error[0]) {
		fail(false, "%s", c->error);
		goto out;
	}
	if (mtp_facts_gather(sp, &st.facts, err, sizeof err)) {
		/* what Slurm set in this node's environment (GPUs above all) may be wrong here only: this node
		 * reports, or nobody would */
		st.node_only = true;
		goto failed;
	}
	if (load_domains(c, err, sizeof err) || load_models(c, err, sizeof err))
		goto failed;
	if (build_plan(err, sizeof err))
		goto failed;
	st.nccl_ib_hca = nccl_hca_list(st.own_full);
	st.node_rank = node_rank_of(st.plan, st.facts.node_id);
	st.active = true;
	mtp_info("step %u.%u: planned %d ranks on %d nodes", st.facts.job_id, st.facts.step_id, st.plan->world,
		 st.plan->n_nodes);
done:
	rc = 0;
	goto out;
failed:
	fail(st.node_only, "%s", err);
out:
	if (rc && st.failed)
		mtp_info("step %u.%u: %s", st.facts.job_id, st.facts.step_id, st.err);
	free(env);
	return 0;
}

/* One report per step: node 0 speaks for failures every node shares, each node for its own. */
static void report(const struct mtp_config *c, int local_task)
{
	if (local_task != 0 || (!st.node_only && st.node_id != 0))
		return;
	if (c->strict)
		mtp_error("%s (strict=yes: the step fails)", st.err);
	else
		mtp_user("warning: %s; Slurm's own binding is left unchanged", st.err);
}

int mtp_stepd_task_init(spank_t sp, const struct mtp_config *c)
{
	char err[MT_ERRLEN], cvd[1024] = "";
	struct mtp_node_ctx n;
	int task = 0;

	if (!st.active && !st.failed)
		return 0;
	if (spank_get_item(sp, S_TASK_ID, &task) != ESPANK_SUCCESS || task < 0 || task >= st.facts.n_local) {
		if (!st.failed)
			fail(true, "%s", "Slurm gave no local task id");
		st.active = false;
	}
	if (st.active && (spank_getenv(sp, "CUDA_VISIBLE_DEVICES", cvd, sizeof cvd) != ESPANK_SUCCESS ||
			  strcmp(cvd, st.facts.gpu_list)) && st.facts.gpu_list[0]) {
		/* GRES narrowed this task's GPUs: remapping would bind outside what Slurm gave it */
		snprintf(err, sizeof err, "Slurm bound GPUs per task (CUDA_VISIBLE_DEVICES=%.60s of the step's %.60s: "
			 "--gpus-per-task or --gpu-bind); request --gpus-per-node=N (or --gres=gpu:N) without "
			 "--gpu-bind and let --" MTP_OPTION " bind", cvd, st.facts.gpu_list);
		fail(false, "%s", err);   /* GRES binds the whole step this way: node 0 reports */
		st.active = false;
	}
	if (st.active) {
		n.facts = &st.facts;
		n.plan = st.plan;
		n.model = st.models[st.facts.node_id];
		n.own_full = st.own_full;
		n.nccl_ib_hca = st.nccl_ib_hca;
		n.master_addr = st.facts.nodes[st.plan->ranks[st.plan->by_rank[0]].node];
		n.node_rank = st.node_rank;
		if (mtp_apply_rank(sp, &n, (int)st.facts.local_ids[task], err, sizeof err) == 0)
			return 0;
		fail(true, "%s", err);
		task = 0;   /* an apply failure is reported by the task that met it */
	}
	report(c, task);
	return c->strict ? -1 : 0;
}

void mtp_stepd_exit(void)
{
	for (int i = 0; i < st.n_models; i++)
		mt_node_free(st.models[i]);
	free(st.models);
	mt_node_free(st.own_full);
	if (st.domains)
		mt_domains_free(st.domains);
	if (st.plan)
		mt_plan_free(st.plan);
	free(st.nccl_ib_hca);
	mtp_facts_free(&st.facts);
	memset(&st, 0, sizeof st);
}
