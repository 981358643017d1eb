/* apply.c - apply one rank of the plan inside its task: CPU affinity, GPU list, NIC and rank variables.
 *
 * Runs in the task's own process (task_init) after Slurm's binding.  Everything is computed first and the
 * affinity (the only step that can be refused) is set before any variable, so a failure leaves the task
 * as Slurm made it.  NCCL_IB_HCA is the node's whole rail list on every rank (NCCL picks per channel and
 * reaches other rails over NVLink); the per-rank NIC goes to UCX, NVSHMEM and MOE_NET_DEVICES.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

struct kv {
	const char *name;
	char value[512];
	int overwrite;    /* 0: a value the user set in the job's environment wins */
};

#define MAX_VARS 40

static void add(struct kv *v, int *n, const char *name, int overwrite, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void add(struct kv *v, int *n, const char *name, int overwrite, const char *fmt, ...)
{
	va_list ap;

	if (*n >= MAX_VARS)
		return;
	v[*n].name = name;
	v[*n].overwrite = overwrite;
	va_start(ap, fmt);
	vsnprintf(v[*n].value, sizeof v[*n].value, fmt, ap);
	va_end(ap);
	(*n)++;
}

/* CUDA_VISIBLE_DEVICES in Slurm's own tokens: the rank's GPU first, then (gpus=all) the step's others,
 * so that CUDA IPC between the ranks of a node keeps working and device 0 is the rank's own. */
static int gpu_list(const struct mtp_node_ctx *n, const struct mt_rank *r, char *buf, size_t len, int *mine)
{
	const struct mtp_facts *f = n->facts;
	size_t o = 0;

	*mine = -1;
	for (int j = 0; j < f->n_gpus; j++)
		if (!strcmp(n->own_full->gpus[f->gpu_index[j]].pci, r->gpu_pci))
			*mine = j;
	if (*mine < 0)
		return -1;
	o = (size_t)snprintf(buf, len, "%s", f->gpu_tokens[*mine]);
	for (int j = 0; n->plan->spec.gpus == MT_GPUS_ALL && j < f->n_gpus && o < len; j++)
		if (j != *mine)
			o += (size_t)snprintf(buf + o, len - o, ",%s", f->gpu_tokens[j]);
	return o < len ? 0 : -1;
}

/* "mlx5_0,mlx5_1" -> "mlx5_0:1,mlx5_1:1" (UCX and NVSHMEM name device:port). */
static void with_port(const char *nics, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (const char *p = nics; *p && o + 3 < len;) {
		size_t l = strcspn(p, ",");
		o += (size_t)snprintf(buf + o, len - o, "%s%.*s:1", o ? "," : "", (int)l, p);
		p += l + (p[l] == ',');
	}
}

static int set_affinity(const char *list, char *err, size_t errlen)
{
	unsigned char mask[CPU_SETSIZE];
	cpu_set_t set;

	memset(mask, 0, sizeof mask);
	if (mt_cpulist_parse(list, mask, CPU_SETSIZE) <= 0) {
		snprintf(err, errlen, "planned CPU list '%s' is not usable", list);
		return -1;
	}
	CPU_ZERO(&set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (mask[i])
			CPU_SET(i, &set);
	if (sched_setaffinity(0, sizeof set, &set)) {
		snprintf(err, errlen, "cannot bind to CPUs %s: %s", list, strerror(errno));
		return -1;
	}
	return 0;
}

int mtp_apply_rank(spank_t sp, const struct mtp_node_ctx *n, int procid, char *err, size_t errlen)
{
	const struct mt_plan *p = n->plan;
	const struct mtp_facts *f = n->facts;
	const struct mt_rank *r;
	struct kv v[MAX_VARS];
	char cvd[1024] = "", ports[512];
	int nv = 0, mine = -1, local_size;
	bool torch = p->spec.export_ == MT_EXPORT_TORCH;

	if (procid < 0 || procid >= p->world) {
		snprintf(err, errlen, "task %d is not in the plan (%d ranks)", procid, p->world);
		return -1;
	}
	r = &p->ranks[procid];
	local_size = f->tasks[r->node];
	if (r->gpu >= 0 && gpu_list(n, r, cvd, sizeof cvd, &mine)) {
		snprintf(err, errlen, "planned GPU %s is not one Slurm gave the step (%s)", r->gpu_pci, f->gpu_list);
		return -1;
	}
	if (p->spec.cpu == MT_CPU_NUMA && r->cpuset && r->cpuset[0] && set_affinity(r->cpuset, err, errlen))
		return -1;

	if (mine >= 0) {
		add(v, &nv, "CUDA_VISIBLE_DEVICES", 1, "%s", cvd);
		add(v, &nv, "CUDA_DEVICE_ORDER", 1, "PCI_BUS_ID");
		add(v, &nv, "MOE_GPU_PCI", 1, "%s", r->gpu_pci);
	}
	if (r->nics[0]) {
		with_port(r->nics, ports, sizeof ports);
		add(v, &nv, "MOE_NET_DEVICES", 1, "%s", r->nics);
		add(v, &nv, "UCX_NET_DEVICES", 0, "%s", ports);
		add(v, &nv, "NVSHMEM_HCA_LIST", 0, "%s", ports);
	}
	if (n->nccl_ib_hca)
		add(v, &nv, "NCCL_IB_HCA", 0, "%s", n->nccl_ib_hca);
	add(v, &nv, "MOE_RANK", 1, "%d", r->rank);
	add(v, &nv, "MOE_WORLD_SIZE", 1, "%d", p->world);
	add(v, &nv, "MOE_LOCAL_RANK", 1, "%d", r->local_rank);
	add(v, &nv, "MOE_LOCAL_SIZE", 1, "%d", local_size);
	add(v, &nv, "MOE_NODE_RANK", 1, "%d", n->node_rank);
	add(v, &nv, "MOE_EP_SIZE", 1, "%d", p->groups[r->ep_group].size);
	add(v, &nv, "MOE_EP_RANK", 1, "%d", r->ep_rank);
	add(v, &nv, "MOE_EP_GROUP", 1, "%d", r->ep_group);
	add(v, &nv, "MOE_DP_RANK", 1, "%d", r->dp_rank);
	add(v, &nv, "MOE_DOMAIN", 1, "%s", p->domain_names[r->domain]);
	add(v, &nv, "MOE_EXPERTS", 1, "%d", p->spec.experts);
	add(v, &nv, "MOE_ROUTE_GROUPS", 1, "%d", p->spec.route_groups);
	add(v, &nv, "MOE_MASTER_ADDR", 1, "%s", n->master_addr);
	add(v, &nv, "MOE_MASTER_PORT", 1, "%s", f->master_port);
	add(v, &nv, "MOE_CPUS", 1, "%s", r->cpuset ? r->cpuset : "");
	if (torch) {
		add(v, &nv, "RANK", 1, "%d", r->rank);
		add(v, &nv, "LOCAL_RANK", 1, "%d", r->local_rank);
		add(v, &nv, "WORLD_SIZE", 1, "%d", p->world);
		add(v, &nv, "LOCAL_WORLD_SIZE", 1, "%d", local_size);
		add(v, &nv, "GROUP_RANK", 1, "%d", n->node_rank);
		add(v, &nv, "MASTER_ADDR", 1, "%s", n->master_addr);
		add(v, &nv, "MASTER_PORT", 1, "%s", f->master_port);
	}
	for (int i = 0; i < nv; i++)
		spank_setenv(sp, v[i].name, v[i].value, v[i].overwrite);

	if (p->spec.verbose)
		mtp_user("rank %d/%d node %s gpu %s cuda %s nic %s cores %s ep-group %d ep-rank %d domain %s",
			 r->rank, p->world, f->nodes[r->node], r->gpu_pci[0] ? r->gpu_pci : "-", cvd[0] ? cvd : "-",
			 r->nics[0] ? r->nics : "-", r->cpuset && r->cpuset[0] ? r->cpuset : "-", r->ep_group,
			 r->ep_rank, p->domain_names[r->domain]);
	return 0;
}
