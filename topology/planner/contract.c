/* contract.c - the rank contract: the environment one task receives, computed once for every launcher.
 *
 * The SPANK plugin, `moe-launch --nproc` and `moe-launch` under srun all call mt_contract_env and apply
 * the list it returns with one loop each, so a variable's name, value and precedence (overwrite, or let
 * a value the user already set win) are decided here and nowhere else (names in doc/launcher.md).
 * Also here: the fallback rendezvous port and the one CPU-binding helper the launchers share.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

void mt_env_free(struct mt_env *e)
{
	for (int i = 0; e && i < e->n; i++)
		free(e->v[i].value);
	if (e) {
		free(e->v);
		memset(e, 0, sizeof(*e));
	}
}

const char *mt_env_get(const struct mt_env *e, const char *name)
{
	for (int i = 0; i < e->n; i++)
		if (!strcmp(e->v[i].name, name))
			return e->v[i].value;
	return NULL;
}

/* Values are as long as they need to be: a GPU list of 16 UUIDs is 655 characters. */
static int add(struct mt_env *e, const char *name, bool overwrite, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int add(struct mt_env *e, const char *name, bool overwrite, const char *fmt, ...)
{
	struct mt_env_var *v;
	va_list ap;
	char *value;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&value, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return MT_ENOMEM;
	for (int i = 0; i < e->n; i++)
		if (!strcmp(e->v[i].name, name)) { /* set twice: the last one holds */
			free(e->v[i].value);
			e->v[i].value = value;
			e->v[i].overwrite = overwrite;
			return 0;
		}
	if (!(v = realloc(e->v, sizeof(*v) * (size_t)(e->n + 1)))) {
		free(value);
		return MT_ENOMEM;
	}
	e->v = v;
	e->v[e->n++] = (struct mt_env_var){name, value, overwrite};
	return 0;
}

int mt_env_add(struct mt_env *e, const char *name, bool overwrite, const char *value)
{
	return add(e, name, overwrite, "%s", value);
}

unsigned mt_contract_port(const char *resv_ports, unsigned job_id, unsigned step_id)
{
	char *end;
	long p = resv_ports ? strtol(resv_ports, &end, 10) : 0;

	if (p > 1024 && p < 65536)
		return (unsigned)p;   /* Slurm reserved it for this step (MpiParams=ports=...) */
	/* 20000-29999: below Linux's ephemeral range (32768-60999), so no outgoing connection holds it */
	return MT_PORT_BASE + (job_id * 131u + step_id) % MT_PORT_SPAN;
}

/* CUDA_VISIBLE_DEVICES: the rank's GPU first (device 0 is its own), then with gpus=all the node's other
 * GPUs of the step, so CUDA IPC between the ranks of a node keeps working.  Tokens are the launcher's own
 * names for the devices (Slurm's GRES tokens under the plugin), matched to the plan by PCI bus id. */
static int gpu_list(const struct mt_plan *p, const struct mt_rank *r, const struct mt_task *t, char **out,
		    char *err, size_t errlen)
{
	size_t len = 1, o;
	int mine = -1;

	for (int j = 0; j < t->n_gpus; j++) {
		len += strlen(t->gpu_tokens[j]) + 1;
		if (!strcmp(t->gpu_pci[j], r->gpu_pci))
			mine = j;
	}
	if (mine < 0)
		return mt_seterr(err, errlen, MT_EINVAL, "planned GPU %s of rank %d is not one of this node's %d GPUs "
				 "of the step", r->gpu_pci, r->rank, t->n_gpus);
	if (!(*out = malloc(len)))
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	o = (size_t)sprintf(*out, "%s", t->gpu_tokens[mine]);
	for (int j = 0; p->spec.gpus == MT_GPUS_ALL && j < t->n_gpus; j++)
		if (j != mine)
			o += (size_t)sprintf(*out + o, ",%s", t->gpu_tokens[j]);
	return 0;
}

/* "mlx5_0,mlx5_1" -> "mlx5_0:1,mlx5_1:1" (UCX and NVSHMEM name device:port). */
static int with_port(struct mt_env *e, const char *name, const char *nics)
{
	size_t n = strlen(nics), o = 0;
	char *buf = malloc(n * 3 + 3);
	int rc;

	if (!buf)
		return MT_ENOMEM;
	buf[0] = '\0';
	for (const char *s = nics; *s;) {
		size_t l = strcspn(s, ",");
		o += (size_t)sprintf(buf + o, "%s%.*s:1", o ? "," : "", (int)l, s);
		s += l + (s[l] == ',');
	}
	rc = add(e, name, false, "%s", buf);
	free(buf);
	return rc;
}

/* The torch.distributed variables (export=torch), as torchrun sets them. */
static int torch_vars(struct mt_env *e, int rank, int local_rank, int world, int local_size, int node_rank,
		      const char *maddr, unsigned mport)
{
	return add(e, "RANK", true, "%d", rank) | add(e, "LOCAL_RANK", true, "%d", local_rank) |
	       add(e, "WORLD_SIZE", true, "%d", world) | add(e, "LOCAL_WORLD_SIZE", true, "%d", local_size) |
	       add(e, "GROUP_RANK", true, "%d", node_rank) | add(e, "MASTER_ADDR", true, "%s", maddr) |
	       add(e, "MASTER_PORT", true, "%u", mport);
}

/* Without a plan: Slurm's own layout.  Rank = SLURM_PROCID, EP groups of consecutive ranks (the whole
 * world with ep 0), each node its own domain unless a domain map named it. */
static int slurm_layout(const struct mt_task *t, struct mt_env *e, char *err, size_t errlen)
{
	const struct mt_slurm_task *s = &t->slurm;
	int rc = 0, E = s->ep > 0 ? s->ep : s->world;

	if (s->world < 1 || t->procid < 0 || t->procid >= s->world || s->local_rank < 0 ||
	    s->local_rank >= s->local_size || !s->node_name || !t->master_addr)
		return mt_seterr(err, errlen, MT_EINVAL, "task %d of %d (local %d of %d) is not a task of the step",
				 t->procid, s->world, s->local_rank, s->local_size);
	if (s->ep < 0 || s->world % E)
		return mt_seterr(err, errlen, MT_EINVAL, "ep=%d does not divide the step's %d tasks", s->ep, s->world);
	if (s->ep > 0 && s->experts % E)
		return mt_seterr(err, errlen, MT_EINVAL, "experts=%d is not divisible by ep=%d", s->experts, E);
	if (!t->torch_only)
		rc = add(e, "MOE_RANK", true, "%d", t->procid) | add(e, "MOE_WORLD_SIZE", true, "%d", s->world) |
		     add(e, "MOE_LOCAL_RANK", true, "%d", s->local_rank) |
		     add(e, "MOE_LOCAL_SIZE", true, "%d", s->local_size) |
		     add(e, "MOE_NODE_RANK", true, "%d", s->node_rank) | add(e, "MOE_EP_SIZE", true, "%d", E) |
		     add(e, "MOE_EP_RANK", true, "%d", t->procid % E) |
		     add(e, "MOE_EP_GROUP", true, "%d", t->procid / E) |
		     add(e, "MOE_DP_RANK", true, "%d", t->procid / E) |
		     add(e, "MOE_DOMAIN", true, "%s", s->domain ? s->domain : s->node_name) |
		     add(e, "MOE_MASTER_ADDR", true, "%s", t->master_addr) |
		     add(e, "MOE_MASTER_PORT", true, "%u", t->master_port);
	if (!t->torch_only && s->ep > 0)
		rc |= add(e, "MOE_EXPERTS", true, "%d", s->experts) |
		      add(e, "MOE_ROUTE_GROUPS", true, "%d", s->route_groups);
	if (t->torch_only || t->torch)
		rc |= torch_vars(e, t->procid, s->local_rank, s->world, s->local_size, s->node_rank, t->master_addr,
				 t->master_port);
	return rc ? mt_seterr(err, errlen, MT_ENOMEM, "out of memory") : 0;
}

int mt_contract_env(const struct mt_plan *p, const struct mt_task *t, struct mt_env *e, char *err, size_t errlen)
{
	const struct mt_rank *r;
	const char *maddr;
	char *cvd = NULL;
	int rc = 0, local_size, node_rank;
	bool bound;

	memset(e, 0, sizeof(*e));
	if (!p)
		rc = slurm_layout(t, e, err, errlen);
	else if (t->procid < 0 || t->procid >= p->world)
		rc = mt_seterr(err, errlen, MT_EINVAL, "task %d is not in the plan (%d ranks)", t->procid, p->world);
	if (!p || rc) {
		if (rc)
			mt_env_free(e);
		return rc;
	}
	r = &p->ranks[t->procid];
	maddr = t->master_addr ? t->master_addr : p->node_names[p->master_node];
	local_size = p->node_tasks[r->node];
	node_rank = p->node_rank[r->node];
	bound = p->node_bound[r->node] && !t->no_binding;
	if (bound) {
		/* binding: only where this node's model bound the rank (a node-local failure leaves none) */
		if (r->gpu >= 0) {
			if ((rc = gpu_list(p, r, t, &cvd, err, errlen)))
				goto out;
			rc |= add(e, "CUDA_VISIBLE_DEVICES", true, "%s", cvd);
			/* ordinals follow PCI bus order, as the plan's GPU indices do */
			rc |= add(e, "CUDA_DEVICE_ORDER", true, "PCI_BUS_ID");
			rc |= add(e, "MOE_GPU_PCI", true, "%s", r->gpu_pci);
		}
		if (r->nics[0])
			rc |= add(e, "MOE_NET_DEVICES", true, "%s", r->nics) | with_port(e, "UCX_NET_DEVICES", r->nics) |
			      with_port(e, "NVSHMEM_HCA_LIST", r->nics);
		/* NCCL_IB_HCA: the node's whole rail list on every rank (NCCL picks per channel and reaches the
		 * other rails over NVLink); a user's own value wins */
		if (p->node_nccl_hca[r->node])
			rc |= add(e, "NCCL_IB_HCA", false, "%s", p->node_nccl_hca[r->node]);
	}
	rc |= add(e, "MOE_RANK", true, "%d", r->rank) | add(e, "MOE_WORLD_SIZE", true, "%d", p->world) |
	      add(e, "MOE_LOCAL_RANK", true, "%d", r->local_rank) | add(e, "MOE_LOCAL_SIZE", true, "%d", local_size) |
	      add(e, "MOE_NODE_RANK", true, "%d", node_rank) |
	      add(e, "MOE_EP_SIZE", true, "%d", p->groups[r->ep_group].size) |
	      add(e, "MOE_EP_RANK", true, "%d", r->ep_rank) | add(e, "MOE_EP_GROUP", true, "%d", r->ep_group) |
	      add(e, "MOE_DP_RANK", true, "%d", r->dp_rank) |
	      add(e, "MOE_DOMAIN", true, "%s", p->domain_names[r->domain]) |
	      add(e, "MOE_EXPERTS", true, "%d", p->spec.experts) |
	      add(e, "MOE_ROUTE_GROUPS", true, "%d", p->spec.route_groups) |
	      add(e, "MOE_MASTER_ADDR", true, "%s", maddr) | add(e, "MOE_MASTER_PORT", true, "%u", t->master_port) |
	      add(e, "MOE_CPUS", true, "%s", bound && r->cpuset ? r->cpuset : "");
	if (p->spec.export_ == MT_EXPORT_TORCH)
		rc |= torch_vars(e, r->rank, r->local_rank, p->world, local_size, node_rank, maddr, t->master_port);
	if (rc)
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
out:
	free(cvd);
	if (rc)
		mt_env_free(e);
	return rc;
}

int mt_cpus_bind(const char *list, char *err, size_t errlen)
{
	unsigned char mask[CPU_SETSIZE];
	cpu_set_t set;

	memset(mask, 0, sizeof(mask));
	if (mt_cpulist_parse(list, mask, CPU_SETSIZE) <= 0)
		return mt_seterr(err, errlen, MT_EINVAL, "planned CPU list '%s' is not usable", list);
	CPU_ZERO(&set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (mask[i])
			CPU_SET(i, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return mt_seterr(err, errlen, MT_EPERM, "cannot bind to CPUs %s: %s", list, strerror(errno));
	return 0;
}

char *mt_cpus_allowed(void)
{
	unsigned char mask[CPU_SETSIZE];
	char buf[CPU_SETSIZE * 6];
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set))
		return NULL;
	for (int i = 0; i < CPU_SETSIZE; i++)
		mask[i] = CPU_ISSET(i, &set) ? 1 : 0;
	if (mt_cpulist_format(mask, CPU_SETSIZE, buf, sizeof(buf)) < 0)
		return NULL;
	return strdup(buf);
}
