/* contract.c - the rank contract as environment variables, built from a plan exactly as the SPANK
 * plugin sets it inside a Slurm task (same names, same meaning), plus CPU binding helpers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher.h"

void ml_env_set(struct ml_env *e, const char *name, const char *fmt, ...)
{
	char val[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof(val), fmt, ap);
	va_end(ap);
	size_t nl = strlen(name);
	for (int i = 0; i < e->n; i++)
		if (!strncmp(e->kv[i], name, nl) && e->kv[i][nl] == '=') {
			free(e->kv[i]);
			if (asprintf(&e->kv[i], "%s=%s", name, val) < 0)
				e->kv[i] = NULL;
			return;
		}
	char **kv = realloc(e->kv, (e->n + 1) * sizeof(char *));
	if (!kv)
		return;
	e->kv = kv;
	if (asprintf(&e->kv[e->n], "%s=%s", name, val) >= 0)
		e->n++;
}

void ml_env_free(struct ml_env *e)
{
	for (int i = 0; i < e->n; i++)
		free(e->kv[i]);
	free(e->kv);
	e->kv = NULL;
	e->n = 0;
}

int ml_env_apply(const struct ml_env *e)
{
	for (int i = 0; i < e->n; i++) {
		char *eq = strchr(e->kv[i], '=');
		if (!eq)
			continue;
		*eq = 0;
		int rc = setenv(e->kv[i], eq + 1, 1);
		*eq = '=';
		if (rc)
			return -1;
	}
	return 0;
}

void ml_contract_from_plan(struct ml_env *e, const struct mt_plan *p, const struct mt_node *node, int procid,
			   int local_size, const char *master_addr, int master_port)
{
	const struct mt_rank *r = &p->ranks[procid];
	if (r->gpu >= 0) {
		/* the rank's GPU first (device 0 is its own), then the others so CUDA IPC keeps working;
		 * ordinals follow PCI bus order, which CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA use */
		char cvd[1024];
		size_t o = snprintf(cvd, sizeof(cvd), "%d", r->gpu);
		for (int g = 0; p->spec.gpus == MT_GPUS_ALL && g < node->n_gpus && o < sizeof(cvd); g++)
			if (g != r->gpu)
				o += snprintf(cvd + o, sizeof(cvd) - o, ",%d", g);
		ml_env_set(e, "CUDA_VISIBLE_DEVICES", "%s", cvd);
		ml_env_set(e, "CUDA_DEVICE_ORDER", "PCI_BUS_ID");
		ml_env_set(e, "MOE_GPU_PCI", "%s", r->gpu_pci);
	}
	if (r->nics[0]) {
		char ports[512];
		size_t o = 0;
		ports[0] = 0;
		for (const char *s = r->nics; *s && o + 3 < sizeof(ports);) {
			size_t l = strcspn(s, ",");
			o += snprintf(ports + o, sizeof(ports) - o, "%s%.*s:1", o ? "," : "", (int)l, s);
			s += l + (s[l] == ',');
		}
		ml_env_set(e, "MOE_NET_DEVICES", "%s", r->nics);
		if (!getenv("UCX_NET_DEVICES"))
			ml_env_set(e, "UCX_NET_DEVICES", "%s", ports);
		if (!getenv("NVSHMEM_HCA_LIST"))
			ml_env_set(e, "NVSHMEM_HCA_LIST", "%s", ports);
	}
	/* every rank gets the node's whole rail list: NCCL picks per channel */
	char hca[1024];
	size_t o = 0;
	hca[0] = 0;
	for (int i = 0; i < node->n_nics && o < sizeof(hca); i++)
		if (node->nics[i].rdma && node->nics[i].rail >= 0)
			o += snprintf(hca + o, sizeof(hca) - o, "%s%s", o ? "," : "", node->nics[i].name);
	if (hca[0] && !getenv("NCCL_IB_HCA"))
		ml_env_set(e, "NCCL_IB_HCA", "%s", hca);
	ml_env_set(e, "MOE_RANK", "%d", r->rank);
	ml_env_set(e, "MOE_WORLD_SIZE", "%d", p->world);
	ml_env_set(e, "MOE_LOCAL_RANK", "%d", r->local_rank);
	ml_env_set(e, "MOE_LOCAL_SIZE", "%d", local_size);
	ml_env_set(e, "MOE_NODE_RANK", "%d", 0);
	ml_env_set(e, "MOE_EP_SIZE", "%d", p->groups[r->ep_group].size);
	ml_env_set(e, "MOE_EP_RANK", "%d", r->ep_rank);
	ml_env_set(e, "MOE_EP_GROUP", "%d", r->ep_group);
	ml_env_set(e, "MOE_DP_RANK", "%d", r->dp_rank);
	ml_env_set(e, "MOE_DOMAIN", "%s", p->domain_names[r->domain]);
	ml_env_set(e, "MOE_EXPERTS", "%d", p->spec.experts);
	ml_env_set(e, "MOE_ROUTE_GROUPS", "%d", p->spec.route_groups);
	ml_env_set(e, "MOE_MASTER_ADDR", "%s", master_addr);
	ml_env_set(e, "MOE_MASTER_PORT", "%d", master_port);
	ml_env_set(e, "MOE_CPUS", "%s", r->cpuset ? r->cpuset : "");
	if (p->spec.export_ == MT_EXPORT_TORCH) {
		ml_env_set(e, "RANK", "%d", r->rank);
		ml_env_set(e, "LOCAL_RANK", "%d", r->local_rank);
		ml_env_set(e, "WORLD_SIZE", "%d", p->world);
		ml_env_set(e, "LOCAL_WORLD_SIZE", "%d", local_size);
		ml_env_set(e, "GROUP_RANK", "%d", 0);
		ml_env_set(e, "MASTER_ADDR", "%s", master_addr);
		ml_env_set(e, "MASTER_PORT", "%d", master_port);
	}
}

int ml_bind_cpus(const char *list, char *err, size_t errlen)
{
	unsigned char mask[CPU_SETSIZE];
	memset(mask, 0, sizeof(mask));
	if (mt_cpulist_parse(list, mask, CPU_SETSIZE) <= 0) {
		snprintf(err, errlen, "planned CPU list '%s' is not usable", list);
		return -1;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (mask[i])
			CPU_SET(i, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		snprintf(err, errlen, "cannot bind to CPUs %s: %s", list, strerror(errno));
		return -1;
	}
	return 0;
}

char *ml_allowed_cpus(void)
{
	cpu_set_t set;
	unsigned char mask[CPU_SETSIZE];
	char buf[8192];
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return NULL;
	for (int i = 0; i < CPU_SETSIZE; i++)
		mask[i] = CPU_ISSET(i, &set) ? 1 : 0;
	if (mt_cpulist_format(mask, CPU_SETSIZE, buf, sizeof(buf)) < 0)
		return NULL;
	return strdup(buf);
}
