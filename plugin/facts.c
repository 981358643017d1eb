/* facts.c - what Slurm tells slurmstepd about the step: nodes, tasks, task ids, GPUs, CPUs, port.
 *
 * Two kinds: the job-wide facts every node of the step reads the same way (node list, tasks per node,
 * task ids, port: mtp_facts_gather), which alone decide the ranks, and this node's own (its GPUs and
 * CPUs: mtp_facts_local), which only decide this node's binding.
 * Everything comes from SPANK items and the variables Slurm itself sets in the step's environment
 * (including where its topology plugin places this node: SLURM_TOPOLOGY_ADDR, checked in stepd.c).
 * The job's environment is untrusted: node names are checked before they become file names, numbers are
 * range-checked, and anything that does not add up is an error rather than a guess.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define ENVLEN 8192

/* A variable of the step's environment into BUF: 0 when set, 1 when unset, -1 (err filled) when longer
 * than BUF holds: the job's environment is untrusted and a cut value must never pass for a whole one. */
static int step_env(spank_t sp, const char *name, char *buf, int len, char *err, size_t errlen)
{
	spank_err_t rc;

	buf[0] = '\0';
	rc = spank_getenv(sp, name, buf, len);
	if (rc == ESPANK_NOSPACE) {
		buf[0] = '\0';
		snprintf(err, errlen, "%s is longer than %d characters", name, len - 1);
		return -1;
	}
	return rc == ESPANK_SUCCESS ? 0 : 1;
}

/* step_env for a variable Slurm always sets in a step. */
static int slurm_env(spank_t sp, const char *name, char *buf, int len, char *err, size_t errlen)
{
	int rc = step_env(sp, name, buf, len, err, errlen);

	if (rc > 0)
		snprintf(err, errlen, "%s is not set in the step", name);
	return rc;
}

static int gather_layout(spank_t sp, struct mtp_facts *f, char *err, size_t errlen)
{
	char *buf = malloc(ENVLEN), dist[64];
	enum mt_dist d = MT_DIST_BLOCK;
	uint32_t u;
	int count = 0, rc = -1, sum = 0;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (slurm_env(sp, "SLURM_STEP_NODELIST", buf, ENVLEN, err, errlen))
		goto out;
	if (mt_hostlist_expand(buf, &f->nodes, &count, err, errlen))
		goto out;
	f->n_names = count;
	if (count != f->n_nodes) {
		snprintf(err, errlen, "SLURM_STEP_NODELIST names %d nodes, the step has %d", count, f->n_nodes);
		goto out;
	}
	for (int i = 0; i < count; i++)
		if (!mtp_node_name_ok(f->nodes[i])) {
			snprintf(err, errlen, "node name '%s' is not usable", f->nodes[i]);
			goto out;
		}
	if (slurm_env(sp, "SLURM_STEP_TASKS_PER_NODE", buf, ENVLEN, err, errlen))
		goto out;
	if (mt_tasks_per_node_parse(buf, f->n_nodes, &f->tasks, err, errlen))
		goto out;
	for (int i = 0; i < f->n_nodes; i++)
		sum += f->tasks[i];
	if (sum != f->world || f->tasks[f->node_id] != f->n_local) {
		snprintf(err, errlen, "SLURM_STEP_TASKS_PER_NODE does not match the step (%d tasks, %d here)", f->world,
			 f->n_local);
		goto out;
	}
	f->local_ids = calloc(f->n_local > 0 ? f->n_local : 1, sizeof *f->local_ids);
	if (!f->local_ids)
		goto out;
	for (int t = 0; t < f->n_local; t++)
		if (spank_get_item(sp, S_JOB_LOCAL_TO_GLOBAL_ID, (uint32_t)t, &u) != ESPANK_SUCCESS) {
			snprintf(err, errlen, "Slurm gave no global id for local task %d", t);
			goto out;
		} else
			f->local_ids[t] = u;
	/* The planner needs every node's task ids; Slurm tells us only ours, so derive them from the
	 * distribution and check that ours agree (any other distribution that happens to place tasks
	 * like block does is block). */
	if (step_env(sp, "SLURM_DISTRIBUTION", dist, sizeof dist, err, errlen) < 0)
		goto out;
	if (dist[0] && mt_dist_parse(dist, &d, err, errlen))
		d = MT_DIST_BLOCK;
	if (!(f->procids = mt_dist_procids(d, f->tasks, f->n_nodes))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int t = 0; t < f->n_local; t++)
		if ((uint32_t)f->procids[f->node_id][t] != f->local_ids[t])
			goto layout;
	rc = 0;
	goto out;
layout:
	snprintf(err, errlen, "task distribution '%s' is not supported (valid: -m block, -m cyclic)",
		 dist[0] ? dist : "?");
out:
	free(buf);
	return rc;
}

static int split_list(const char *s, char ***out)
{
	int n = 0, cap = 0;
	char **v = NULL, *copy = strdup(s), *save = NULL;

	if (!copy)
		return -1;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == cap) {
			char **nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof *v);
			if (!nv)
				goto fail;
			v = nv;
		}
		if (!(v[n++] = strdup(tok)))
			goto fail;
	}
	free(copy);
	*out = v;
	return n;
fail:
	while (n > 0)
		free(v[--n]);
	free(v);
	free(copy);
	return -1;
}

/* CUDA_VISIBLE_DEVICES as GRES set it (the token tasks must see) and SLURM_STEP_GPUS (the node's own
 * GRES index of each, which differs when ConstrainDevices renumbers the devices).  Both are read whole up
 * to the longest list accepted (MTP_GPU_LIST_MAX characters); the tokens are checked either way. */
static int gather_gpus(spank_t sp, struct mtp_facts *f, char *err, size_t errlen)
{
	char cvd[MTP_GPU_LIST_MAX + 1], abs[MTP_GPU_LIST_MAX + 1];
	char **idx = NULL;
	int n_idx = 0, rc;

	if ((rc = step_env(sp, "CUDA_VISIBLE_DEVICES", cvd, sizeof cvd, err, errlen)) < 0)
		return -1;
	if (rc > 0 || !cvd[0] || !strcmp(cvd, "NoDevFiles")) {
		f->gpu_list = strdup("");
		return f->gpu_list ? 0 : -1;   /* a step without GPUs: CPU-only ranks */
	}
	if (!(f->gpu_list = strdup(cvd)) || (f->n_gpus = split_list(cvd, &f->gpu_tokens)) < 0) {
		f->n_gpus = 0;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((rc = step_env(sp, "SLURM_STEP_GPUS", abs, sizeof abs, err, errlen)) < 0)
		return -1;
	rc = -1;
	if (abs[0] && (n_idx = split_list(abs, &idx)) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (n_idx && n_idx != f->n_gpus) {
		snprintf(err, errlen, "SLURM_STEP_GPUS=%.100s and CUDA_VISIBLE_DEVICES=%.100s disagree", abs, cvd);
		goto out;
	}
	if (f->n_gpus == 0) {
		snprintf(err, errlen, "CUDA_VISIBLE_DEVICES='%.40s' names no GPU", cvd);
		goto out;
	}
	f->gpu_index = calloc(f->n_gpus, sizeof *f->gpu_index);
	if (!f->gpu_index) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* the tokens tasks will see must name distinct devices even when SLURM_STEP_GPUS gives the index */
	if (mtp_gpu_tokens_check(f->gpu_tokens, f->n_gpus, err, errlen))
		goto out;
	rc = mtp_gpu_indices(n_idx ? idx : f->gpu_tokens, f->n_gpus, f->gpu_index, err, errlen);
out:
	for (int i = 0; i < n_idx; i++)
		free(idx[i]);
	free(idx);
	return rc;
}

/* The CPUs the step may use here: slurmstepd's own affinity, which is the step's cpuset under
 * task/cgroup (ConstrainCores=yes); tasks are bound later by task/affinity, so theirs would be too narrow.
 * And the cores Slurm allocated to the step here, which stepd.c maps to CPUs once it has the node's model:
 * without ConstrainCores the affinity is the whole machine, shared with other jobs. */
static int gather_cpus(spank_t sp, struct mtp_facts *f, char *err, size_t errlen)
{
	char *cores = NULL;

	if (!(f->allowed_cpus = mt_cpus_allowed())) {
		snprintf(err, errlen, "cannot read the step's CPUs: %s", strerror(errno));
		return -1;
	}
	if (spank_get_item(sp, S_STEP_ALLOC_CORES, &cores) == ESPANK_SUCCESS && cores &&
	    !(f->alloc_cores = strdup(cores))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* One port per job step, the same on every node (the rule is mt_contract_port's). */
static void gather_port(spank_t sp, struct mtp_facts *f)
{
	char buf[64], err[MT_ERRLEN];

	if (step_env(sp, "SLURM_STEP_RESV_PORTS", buf, sizeof buf, err, sizeof err))
		buf[0] = '\0';
	f->master_port = mt_contract_port(buf, f->job_id, f->step_id);
}

int mtp_facts_gather(spank_t sp, struct mtp_facts *f, char *err, size_t errlen)
{
	uint32_t v;

	memset(f, 0, sizeof *f);
	if (spank_get_item(sp, S_JOB_ID, &f->job_id) || spank_get_item(sp, S_JOB_STEPID, &f->step_id)) {
		snprintf(err, errlen, "Slurm gave no job or step id");
		return -1;
	}
	if (spank_get_item(sp, S_JOB_NODEID, &v) != ESPANK_SUCCESS || (f->node_id = (int)v) < 0 ||
	    spank_get_item(sp, S_JOB_NNODES, &v) != ESPANK_SUCCESS || (f->n_nodes = (int)v) <= f->node_id ||
	    spank_get_item(sp, S_JOB_LOCAL_TASK_COUNT, &v) != ESPANK_SUCCESS || (f->n_local = (int)v) < 0 ||
	    spank_get_item(sp, S_JOB_TOTAL_TASK_COUNT, &v) != ESPANK_SUCCESS || (f->world = (int)v) < f->n_local) {
		snprintf(err, errlen, "Slurm gave no usable node id, node count or task counts");
		return -1;
	}
	if (gather_layout(sp, f, err, errlen))
		return -1;
	/* where Slurm's topology plugin places this node (slurmd sets both in every step; "" when unset) */
	if (step_env(sp, "SLURM_TOPOLOGY_ADDR", f->topo_addr, sizeof f->topo_addr, err, errlen) < 0 ||
	    step_env(sp, "SLURM_TOPOLOGY_ADDR_PATTERN", f->topo_pattern, sizeof f->topo_pattern, err, errlen) < 0)
		return -1;
	gather_port(sp, f);
	return 0;
}

int mtp_facts_local(spank_t sp, struct mtp_facts *f, char *err, size_t errlen)
{
	return gather_gpus(sp, f, err, errlen) || gather_cpus(sp, f, err, errlen) ? -1 : 0;
}

void mtp_facts_free(struct mtp_facts *f)
{
	if (f->nodes)
		mt_hostlist_free(f->nodes, f->n_names);
	mt_procids_free(f->procids, f->n_nodes);
	free(f->tasks);
	free(f->local_ids);
	for (int i = 0; i < f->n_gpus; i++)
		free(f->gpu_tokens[i]);
	free(f->gpu_tokens);
	free(f->gpu_index);
	free(f->gpu_list);
	free(f->allowed_cpus);
	free(f->alloc_cores);
	memset(f, 0, sizeof *f);
}
