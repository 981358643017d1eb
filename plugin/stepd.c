/* stepd.c - the slurmstepd side: one plan per node per step (user_init), applied per task (task_init).
 *
 * user_init first plans the ranks from job-wide facts only (node list, tasks per node, task ids, the
 * domain map, the spec): every node computes the same ranks without talking to the others, and no node's
 * hardware stands in for another's.  Then it binds this node's own ranks from this node's model (the
 * cached hwloc XML named by topology=, else the live machine), restricted to the GPUs Slurm gave the step.
 * task_init runs in each task's process, after Slurm's own binding, and applies the task's contract.
 *
 * Failure policy.  A job-wide failure (spec, layout, domain map, plan) is met identically by every node:
 * node 0 reports it once; with strict=no the tasks keep Slurm's binding and, under export=torch, still get
 * RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT from Slurm's layout.  A failure only this node sees
 * (its GPUs, its cache, its binding) costs only this node's binding: its tasks keep the plan's ranks and
 * it warns once, naming itself.  With strict=yes the tasks meeting either fail.  Nothing here returns an
 * error from user_init (that would fail the launch or drain the node), and nothing is written outside
 * the task's environment.
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
	bool planned;         /* the job-wide plan holds: every task gets its rank */
	bool failed;          /* the job-wide plan failed: warn (strict=yes: fail the tasks) */
	bool facts_ok;        /* the job-wide facts were read: Slurm's layout is known (torch fallback) */
	bool node_only;       /* the job-wide failure is this node's own (its copy of Slurm's topology): it
				 reports, and gives no fallback ranks that could collide with the others' */
	bool local_failed;    /* this node's binding failed: its tasks get ranks only */
	char err[MT_ERRLEN];  /* the job-wide failure */
	char local_err[MT_ERRLEN];
	struct mt_spec spec;
	struct mtp_facts facts;
	struct mt_node *own_full;     /* this node, all GPUs (GRES index -> PCI bus id) */
	struct mt_node *own;          /* restricted to the step's GPUs */
	struct mt_domains *domains;
	struct mt_plan *plan;
	const char **gpu_pci;         /* PCI bus id of each of the step's GPUs here */
	int node_id;          /* known even when the facts could not be gathered: who reports */
} st;

static void fail(const char *fmt, const char *detail)
{
	st.failed = true;
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

/* This node's model: its cached file when topology= names one that exists, else the live machine. */
static int load_own_model(const struct mtp_config *c, const char *name, struct mt_node **out, char *err,
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

/* Without a domain map, NVML fabric cliques may define the domains, but only as a job-wide fact: read
 * from every node's cached file the same way on every node (this node's live machine never counts, the
 * others could not see it).  Unless every node's file is there and has a clique, each node is its own
 * domain.  NULL when no map results (or no memory). */
static struct mt_domains *fabric_domains(const struct mtp_config *c)
{
	const struct mtp_facts *f = &st.facts;
	struct mt_domains *d = c->topology ? mt_domains_new() : NULL;
	char path[4096], err[MT_ERRLEN], dn[64];

	for (int i = 0; d && i < f->n_nodes; i++) {
		struct mt_node *m = NULL;
		bool ok = !topo_path(c->topology, f->nodes[i], path, sizeof path) &&
			  !load_trusted(path, &m, NULL, err, sizeof err) && m->n_gpus > 0 && m->gpus[0].has_fabric;
		if (ok)
			snprintf(dn, sizeof dn, "%s/%u", m->gpus[0].fabric_uuid, m->gpus[0].clique);
		mt_node_free(m);
		if (!ok || mt_domains_add(d, f->nodes[i], dn, err, sizeof err)) {
			mt_domains_free(d);
			d = NULL;
		}
	}
	return d;
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

/* The ranks, from the job-wide facts alone: no node model at all (the fabric is plugstack.conf's, the
 * same line on every node). */
static int plan_ranks(const struct mtp_config *c, char *err, size_t errlen)
{
	const struct mtp_facts *f = &st.facts;
	struct mt_job job = {0};

	job.n_nodes = f->n_nodes;
	job.nodes = (const char *const *)f->nodes;
	job.tasks = f->tasks;
	job.procids = (const int *const *)f->procids;
	job.domains = st.domains;
	job.spec = st.spec;
	job.fabric = c->fabric;
	return mt_plan_build(&job, &st.plan, err, errlen);
}

/* The CPUs this node's ranks are bound within: the CPUs of the step's allocated cores, among those
 * slurmstepd may use.  Without ConstrainCores slurmstepd may use the whole machine, shared with other jobs'
 * steps; with it the two agree.  slurmstepd's own CPUs alone when Slurm names no cores or they cannot be
 * mapped (a warning for the admin: the binding is then not the allocation's). */
static int allowed_cpus(struct mtp_facts *f, const struct mt_node *model, char *err, size_t errlen)
{
	char why[MT_ERRLEN], *cores = NULL, *within = NULL;
	int outside = 0, rc = 0;

	if (!f->alloc_cores)
		return 0;   /* Slurm did not say: slurmstepd's CPUs */
	if (mt_node_core_cpus(model, f->alloc_cores, &cores, why, sizeof why)) {
		mtp_info("step %u.%u: warning: cannot use the step's allocated cores '%.60s': %s; binding within "
			 "slurmstepd's CPUs %.100s", f->job_id, f->step_id, f->alloc_cores, why, f->allowed_cpus);
		return 0;
	}
	if (mtp_cpus_within(cores, f->allowed_cpus, &within, &outside)) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	} else if (!within[0]) {
		mtp_info("step %u.%u: warning: the step's cores %.60s (CPUs %.100s) are all outside slurmstepd's CPUs "
			 "%.100s; binding within the latter", f->job_id, f->step_id, f->alloc_cores, cores, f->allowed_cpus);
	} else {
		if (outside)
			mtp_info("step %u.%u: warning: %d CPUs of the step's cores %.60s (CPUs %.100s) are outside "
				 "slurmstepd's CPUs %.100s; binding within %.100s", f->job_id, f->step_id, outside,
				 f->alloc_cores, cores, f->allowed_cpus, within);
		free(f->allowed_cpus);
		f->allowed_cpus = within;
		within = NULL;
	}
	free(cores);
	free(within);
	return rc;
}

/* This node's binding: its GPUs and CPUs, its model, restricted to the step's GPUs, bound to its ranks. */
static int bind_here(spank_t sp, const struct mtp_config *c, char *err, size_t errlen)
{
	struct mtp_facts *f = &st.facts;
	const char *me = f->nodes[f->node_id];

	if (mtp_facts_local(sp, f, err, errlen))
		return -1;
	if (load_own_model(c, me, &st.own_full, err, errlen) || restrict_model(st.own_full, me, &st.own, err, errlen))
		return -1;
	if (!(st.gpu_pci = calloc(f->n_gpus > 0 ? (size_t)f->n_gpus : 1, sizeof *st.gpu_pci))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int j = 0; j < f->n_gpus; j++)
		st.gpu_pci[j] = st.own_full->gpus[f->gpu_index[j]].pci;
	if (allowed_cpus(f, st.own_full, err, errlen))
		return -1;
	return mt_plan_bind_node(st.plan, f->node_id, st.own, f->allowed_cpus, err, errlen) ? -1 : 0;
}

int mtp_stepd_user_init(spank_t sp, const struct mtp_config *c)
{
	char err[MT_ERRLEN] = "", *env = NULL;
	const char *origin, *text;
	uint32_t step = 0, nid = 0;
	spank_err_t erc;

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
		fail("%s is too long", MTP_ENV_SPEC);
		goto out;
	}
	if (erc != ESPANK_SUCCESS)
		env[0] = '\0';
	text = mtp_spec_text(c, env, &origin);
	if (strlen(text) > MTP_SPEC_MAX) {
		fail("%s is too long", origin);
		goto out;
	}
	if (mt_spec_parse(text, &st.spec, err, sizeof err)) {
		snprintf(st.err, sizeof st.err, "%.60s=%.100s: %.340s", origin, text, err);
		st.failed = true;
		goto out;
	}
	if (st.spec.mode == MT_MODE_OFF || st.spec.mode == MT_MODE_HELP)
		goto out;
	if (c->error[0]) {
		fail("%s", c->error);
		goto out;
	}
	/* job-wide: what every node reads the same way */
	if (mtp_facts_gather(sp, &st.facts, err, sizeof err))
		goto failed;
	st.facts_ok = true;
	if (load_domains(c, err, sizeof err))
		goto failed;
	if (!st.domains)
		st.domains = fabric_domains(c);
	if (plan_ranks(c, err, sizeof err))
		goto failed;
	st.planned = true;
	/* this node only */
	if (bind_here(sp, c, err, sizeof err)) {
		st.local_failed = true;
		snprintf(st.local_err, sizeof st.local_err, "%s", err);
	}
	/* the version tells the admin reading slurmd's log which plugin build planned the step */
	char note[96] = ""; /* one %s in the line: its format is what tests/packaging/version.sh finds in the .so */
	if (c->fabric.oversub >= 1)
		snprintf(note, sizeof note, " for spine oversubscription %g", c->fabric.oversub);
	if (st.local_failed)
		snprintf(note + strlen(note), sizeof note - strlen(note), ", this node unbound");
	mtp_info("step %u.%u: planned %d ranks on %d nodes%s (moetopo " PACKAGE_VERSION ")", st.facts.job_id,
		 st.facts.step_id, st.plan->world, st.plan->n_nodes, note);
	goto out;
failed:
	fail("%s", err);
out:
	if (st.failed)
		mtp_info("step %u.%u: %s", st.facts.job_id, st.facts.step_id, st.err);
	free(env);
	return 0;
}

/* One report per step and kind: node 0 speaks for the job-wide failures every node meets, each node for
 * its own.  LOCAL_TASK 0 is the node's first task (or the task that met a failure of its own). */
static void report(const struct mtp_config *c, int local_task, bool local, const char *what, bool torch)
{
	const char *me = st.facts.nodes ? st.facts.nodes[st.facts.node_id] : "?";

	if (local_task != 0 || (!local && !st.node_only && st.node_id != 0))
		return;
	if (c->strict)
		mtp_error("%s%s%s%s (strict=yes: the step fails)", local ? "node " : "", local ? me : "",
			  local ? ": " : "", what);
	else if (local)
		mtp_user("warning: node %s: %s; its tasks keep the plan's ranks with Slurm's GPU and CPU binding", me,
			 what);
	else
		mtp_user("warning: %s; Slurm's own binding is left unchanged%s", what,
			 torch ? " (export=torch: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT follow "
				 "Slurm's task layout)" : "");
}

/* Slurm's own layout of local task TASK, for the contract without a plan. */
static void slurm_task(int task, struct mt_task *t)
{
	const struct mtp_facts *f = &st.facts;

	t->procid = (int)f->local_ids[task];
	t->slurm.world = f->world;
	t->slurm.local_rank = task;
	t->slurm.local_size = f->n_local;
	t->slurm.node_rank = f->node_id;
	t->slurm.node_name = f->nodes[f->node_id];
	t->master_addr = f->nodes[0];   /* task 0 is on the step's first node under block and cyclic */
}

int mtp_stepd_task_init(spank_t sp, const struct mtp_config *c)
{
	const struct mtp_facts *f = &st.facts;
	char err[MT_ERRLEN], cvd[MTP_GPU_LIST_MAX + 2] = "";
	struct mt_task t = {0};
	struct mt_env e;
	bool torch = st.spec.export_ == MT_EXPORT_TORCH, local = st.local_failed;
	const char *what = local ? st.local_err : st.err;
	int task = -1;

	if (!st.planned && !st.failed)
		return 0;
	if (spank_get_item(sp, S_TASK_ID, &task) != ESPANK_SUCCESS || task < 0 || task >= f->n_local) {
		if (st.planned || st.facts_ok)
			mtp_user("warning: node %s: Slurm gave no local task id; the task keeps Slurm's layout",
				 st.facts_ok ? f->nodes[f->node_id] : "?");
		return c->strict ? -1 : 0;
	}
	t.master_port = f->master_port;
	if (st.planned) {
		t.procid = (int)f->local_ids[task];
		t.n_gpus = f->n_gpus;
		t.gpu_tokens = (const char *const *)f->gpu_tokens;
		t.gpu_pci = st.gpu_pci;
		if (!local && f->gpu_list[0] &&
		    (spank_getenv(sp, "CUDA_VISIBLE_DEVICES", cvd, sizeof cvd) != ESPANK_SUCCESS ||
		     strcmp(cvd, f->gpu_list))) {
			/* GRES narrowed this task's GPUs: remapping would bind outside what Slurm gave it.  Every
			 * node meets this alike (GRES binds the whole step this way): node 0 reports */
			snprintf(st.err, sizeof st.err, "Slurm bound GPUs per task (CUDA_VISIBLE_DEVICES=%.60s of the "
				 "step's %.60s: --gpus-per-task or --gpu-bind); request --gpus-per-node=N (or "
				 "--gres=gpu:N) without --gpu-bind and let --" MTP_OPTION " bind", cvd, f->gpu_list);
			what = st.err;
			t.no_binding = true;
		}
		t.no_binding |= local;
		if (mt_contract_env(st.plan, &t, &e, err, sizeof err) == 0) {
			const struct mt_rank *r = &st.plan->ranks[t.procid];
			bool bind = st.plan->node_bound[r->node] && !t.no_binding && st.spec.cpu == MT_CPU_NUMA;
			if (mtp_apply(sp, &e, bind ? r->cpuset : NULL, err, sizeof err) == 0) {
				if (st.spec.verbose)
					mtp_user("rank %d/%d node %s gpu %s cuda %s nic %s cores %s ep-group %d ep-rank %d "
						 "domain %s", r->rank, st.plan->world, f->nodes[r->node],
						 mt_env_get(&e, "MOE_GPU_PCI") ? r->gpu_pci : "-",
						 mt_env_get(&e, "CUDA_VISIBLE_DEVICES") ? mt_env_get(&e, "CUDA_VISIBLE_DEVICES") : "-",
						 mt_env_get(&e, "MOE_NET_DEVICES") ? r->nics : "-",
						 bind && r->cpuset && r->cpuset[0] ? r->cpuset : "-", r->ep_group, r->ep_rank,
						 st.plan->domain_names[r->domain]);
				mt_env_free(&e);
				if (!t.no_binding)
					return 0;
				report(c, task, local, what, false);
				return c->strict ? -1 : 0;
			}
			mt_env_free(&e);
		}
		/* this task's own failure (its affinity refused): it reports, its environment is untouched */
		mtp_user("warning: node %s rank %d: %s; the task keeps Slurm's binding", f->nodes[f->node_id],
			 st.plan->ranks[t.procid].rank, err);
		return c->strict ? -1 : 0;
	}
	/* the job-wide plan failed: under export=torch, Slurm's layout in torch's variables */
	if (!c->strict && torch && st.facts_ok && !st.node_only) {
		slurm_task(task, &t);
		t.torch_only = true;
		if (mt_contract_env(NULL, &t, &e, err, sizeof err) == 0) {
			mtp_apply(sp, &e, NULL, err, sizeof err);
			mt_env_free(&e);
		}
	}
	report(c, task, false, what, torch && st.facts_ok && !st.node_only);
	return c->strict ? -1 : 0;
}

void mtp_stepd_exit(void)
{
	mt_node_free(st.own);
	mt_node_free(st.own_full);
	if (st.domains)
		mt_domains_free(st.domains);
	if (st.plan)
		mt_plan_free(st.plan);
	free(st.gpu_pci);
	mtp_facts_free(&st.facts);
	memset(&st, 0, sizeof st);
}
