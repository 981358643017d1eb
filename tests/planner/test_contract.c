/* test_contract.c - the rank contract every launcher applies (mt_contract_env), without Slurm: the
 * variables and their precedence, GPU lists of any length, the one port rule, Slurm's layout without a
 * plan, and the task distributions.  Also that the ranks are a function of job-wide facts only: a plan
 * built without any node model gives every task the rank the fully known plan gives it, and binding one
 * node afterwards (what each slurmstepd does) changes nothing else. */
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "tap.h"

struct job {
	struct mt_job job;
	char **names;
	int n;
	int *tasks;
	const struct mt_node **models;
	int **procids;
};

static void job_make(struct job *j, const char *hosts, const int *tasks, const struct mt_node *const *models,
		     enum mt_dist dist, const char *spec)
{
	char err[MT_ERRLEN];
	memset(j, 0, sizeof(*j));
	if (mt_hostlist_expand(hosts, &j->names, &j->n, err, sizeof(err)))
		abort();
	j->tasks = malloc(sizeof(int) * (size_t)j->n);
	j->models = calloc((size_t)j->n, sizeof(*j->models));
	for (int i = 0; i < j->n; i++) {
		j->tasks[i] = tasks[i];
		j->models[i] = models ? models[i] : NULL;
	}
	if (dist == MT_DIST_CYCLIC && !(j->procids = mt_dist_procids(dist, j->tasks, j->n)))
		abort();
	j->job = (struct mt_job){.n_nodes = j->n, .nodes = (const char *const *)j->names, .tasks = j->tasks,
				 .procids = (const int *const *)j->procids, .models = j->models};
	if (mt_spec_parse(spec, &j->job.spec, err, sizeof(err)))
		abort();
}

static void job_free(struct job *j)
{
	mt_hostlist_free(j->names, j->n);
	mt_procids_free(j->procids, j->n);
	free(j->tasks);
	free(j->models);
}

static bool overwrite_of(const struct mt_env *e, const char *name)
{
	for (int i = 0; i < e->n; i++)
		if (!strcmp(e->v[i].name, name))
			return e->v[i].overwrite;
	return true;
}

/* The node's GPUs as tokens: "0".."n-1", or UUID-like names, with their PCI ids from the model. */
static void gpus_of(const struct mt_node *m, bool uuid, char tok[][48], const char **tokens, const char **pci)
{
	for (int g = 0; g < m->n_gpus; g++) {
		if (uuid)
			snprintf(tok[g], 48, "GPU-%08x-1111-2222-3333-%012x", 0xabc00000u + (unsigned)g, (unsigned)g);
		else
			snprintf(tok[g], 48, "%d", g);
		tokens[g] = tok[g];
		pci[g] = m->gpus[g].pci;
	}
}

static void test_contract_dgx(const struct mt_node *dgx)
{
	char err[MT_ERRLEN], tok[64][48];
	const char *tokens[64], *pci[64];
	int tasks[2] = {8, 8};
	const struct mt_node *models[2] = {dgx, dgx};
	struct mt_plan *p;
	struct job j;
	int bad_rank = 0, bad_torch = 0, bad_cvd = 0, bad_hca = 0;

	job_make(&j, "dgx[1-2]", tasks, models, MT_DIST_BLOCK, "ep=8,export=torch");
	TAP_INT(mt_plan_build(&j.job, &p, err, sizeof(err)), 0, "dgx 2x8 ep=8 plans (%s)", err);
	gpus_of(dgx, false, tok, tokens, pci);
	TAP_INT(p->master_node, p->ranks[p->by_rank[0]].node, "master node holds rank 0");
	for (int q = 0; q < p->world; q++) {
		const struct mt_rank *r = &p->ranks[q];
		struct mt_task t = {.procid = q, .n_gpus = dgx->n_gpus, .gpu_tokens = tokens, .gpu_pci = pci,
				    .master_port = 23456};
		struct mt_env e;
		char want[16];
		if (mt_contract_env(p, &t, &e, err, sizeof(err))) {
			tap_ok(0, "contract of task %d: %s", q, err);
			continue;
		}
		snprintf(want, sizeof(want), "%d", r->rank);
		bad_rank += strcmp(mt_env_get(&e, "MOE_RANK"), want) != 0;
		bad_torch += strcmp(mt_env_get(&e, "RANK"), want) != 0 || strcmp(mt_env_get(&e, "WORLD_SIZE"), "16") ||
			     strcmp(mt_env_get(&e, "MASTER_ADDR"), p->node_names[p->master_node]) ||
			     strcmp(mt_env_get(&e, "MASTER_PORT"), "23456") ||
			     atoi(mt_env_get(&e, "LOCAL_RANK")) != r->local_rank ||
			     strcmp(mt_env_get(&e, "LOCAL_WORLD_SIZE"), "8");
		/* the rank's own GPU first, then the 7 others */
		const char *cvd = mt_env_get(&e, "CUDA_VISIBLE_DEVICES");
		bad_cvd += !cvd || atoi(cvd) != r->gpu || strlen(cvd) != 15 || !overwrite_of(&e, "CUDA_VISIBLE_DEVICES") ||
			   strcmp(mt_env_get(&e, "CUDA_DEVICE_ORDER"), "PCI_BUS_ID");
		const char *hca = mt_env_get(&e, "NCCL_IB_HCA");
		bad_hca += !hca || strcmp(hca, "=mlx5_0,mlx5_1,mlx5_2,mlx5_3,mlx5_4,mlx5_5,mlx5_6,mlx5_7") ||
			   overwrite_of(&e, "NCCL_IB_HCA");
		if (q == 0) {
			char ucx[160];
			snprintf(ucx, sizeof(ucx), "%s:1", r->nics);
			TAP_STR(mt_env_get(&e, "UCX_NET_DEVICES"), ucx, "UCX_NET_DEVICES is the rank's NIC with its port");
			TAP_STR(mt_env_get(&e, "NVSHMEM_HCA_LIST"), ucx, "NVSHMEM_HCA_LIST too");
			tap_ok(!overwrite_of(&e, "UCX_NET_DEVICES") && !overwrite_of(&e, "NVSHMEM_HCA_LIST"),
			       "a user's UCX_NET_DEVICES / NVSHMEM_HCA_LIST wins");
			TAP_STR(mt_env_get(&e, "MOE_CPUS"), r->cpuset, "MOE_CPUS is the planned CPU set");
		}
		mt_env_free(&e);
	}
	TAP_INT(bad_rank, 0, "MOE_RANK is the plan's rank on all 16 tasks");
	TAP_INT(bad_torch, 0, "RANK/LOCAL_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE/MASTER_* follow the plan (export=torch)");
	TAP_INT(bad_cvd, 0, "CUDA_VISIBLE_DEVICES starts with the rank's GPU and lists all 8 (PCI_BUS_ID order)");
	TAP_INT(bad_hca, 0, "NCCL_IB_HCA: '=' (exact names) then every rail NIC in rail order, user's value wins");

	/* 16 UUID tokens: 655 characters, never cut */
	struct mt_node *sub = NULL;
	struct mt_task t = {.procid = 3, .n_gpus = 16, .gpu_tokens = tokens, .gpu_pci = pci, .master_port = 1};
	struct mt_env e;
	gpus_of(dgx, true, tok, tokens, pci);
	for (int g = 8; g < 16; g++) { /* 8 more tokens for devices the plan does not bind */
		snprintf(tok[g], 48, "GPU-%08x-1111-2222-3333-%012x", 0xabc00000u + (unsigned)g, (unsigned)g);
		tokens[g] = tok[g];
		pci[g] = "0000:ff:00.0";
	}
	TAP_INT(mt_contract_env(p, &t, &e, err, sizeof(err)), 0, "contract with 16 GPU UUIDs (%s)", err);
	const char *cvd = mt_env_get(&e, "CUDA_VISIBLE_DEVICES");
	TAP_INT(cvd ? (long long)strlen(cvd) : -1, 16 * 40 + 15, "CUDA_VISIBLE_DEVICES holds all 16 UUIDs");
	tap_ok(cvd && !strncmp(cvd, tok[p->ranks[3].gpu], 40) && strstr(cvd, tok[15]),
	       "its own UUID first, the last UUID whole");
	mt_env_free(&e);
	(void)sub;

	/* a planned GPU the node's list does not hold is an error, not a silent default */
	t.n_gpus = 2;
	tap_ok(mt_contract_env(p, &t, &e, err, sizeof(err)) != 0 && strstr(err, "planned GPU"),
	       "a planned GPU outside the step's GPUs is refused: %s", err);
	mt_plan_free(p);
	job_free(&j);

	/* gpus=single: only the rank's own GPU */
	job_make(&j, "dgx1", tasks, models, MT_DIST_BLOCK, "gpus=single");
	gpus_of(dgx, false, tok, tokens, pci);
	t = (struct mt_task){.procid = 5, .n_gpus = 8, .gpu_tokens = tokens, .gpu_pci = pci};
	if (!mt_plan_build(&j.job, &p, err, sizeof(err)) && !mt_contract_env(p, &t, &e, err, sizeof(err))) {
		char want[8];
		snprintf(want, sizeof(want), "%d", p->ranks[5].gpu);
		TAP_STR(mt_env_get(&e, "CUDA_VISIBLE_DEVICES"), want, "gpus=single: one device, the rank's");
		tap_ok(!mt_env_get(&e, "RANK"), "no torch variables without export=torch");
		mt_env_free(&e);
		mt_plan_free(p);
	} else
		tap_ok(0, "gpus=single plan: %s", err);
	job_free(&j);
}

/* The ranks depend only on names, task counts, distribution, domains and spec. */
static void test_job_wide(const struct mt_node *dgx, const struct mt_node *gb)
{
	char err[MT_ERRLEN];
	int tasks[4] = {8, 4, 4, 8};
	const struct mt_node *models[4] = {dgx, gb, gb, dgx};
	struct mt_domains *dom = mt_domains_new();
	struct mt_plan *full, *blind;
	struct job a, b;

	mt_domains_add(dom, "n[1-2]", "rackA", err, sizeof(err));
	mt_domains_add(dom, "n[3-4]", "rackB", err, sizeof(err));
	for (int d = 0; d < 2; d++) {
		enum mt_dist dist = d ? MT_DIST_CYCLIC : MT_DIST_BLOCK;
		job_make(&a, "n[1-4]", tasks, models, dist, "ep=4,export=torch");
		job_make(&b, "n[1-4]", tasks, NULL, dist, "ep=4,export=torch");
		a.job.domains = b.job.domains = dom;
		int ra = mt_plan_build(&a.job, &full, err, sizeof(err));
		TAP_INT(ra, 0, "%s: heterogeneous 8/4/4/8 GPUs plans (%s)", d ? "cyclic" : "block", err);
		int rb = mt_plan_build(&b.job, &blind, err, sizeof(err));
		TAP_INT(rb, 0, "%s: the same job with no node model plans (%s)", d ? "cyclic" : "block", err);
		if (ra || rb)
			continue;
		int diff = 0, unbound = 0;
		for (int q = 0; q < full->world; q++)
			diff += full->ranks[q].rank != blind->ranks[q].rank ||
				full->ranks[q].ep_group != blind->ranks[q].ep_group ||
				full->ranks[q].local_rank != blind->ranks[q].local_rank;
		for (int i = 0; i < 4; i++)
			unbound += !blind->node_bound[i];
		TAP_INT(diff, 0, "%s: every task's rank, EP group and local rank without any model", d ? "cyclic" : "block");
		TAP_INT(unbound, 4, "nodes without a model are not bound");
		/* node 1 binds itself (as its slurmstepd does): its ranks get the full plan's binding */
		TAP_INT(mt_plan_bind_node(blind, 1, gb, NULL, err, sizeof(err)), 0, "node 1 binds alone (%s)", err);
		int bind_diff = 0, others = 0;
		for (int q = 0; q < full->world; q++) {
			const struct mt_rank *x = &full->ranks[q], *y = &blind->ranks[q];
			if (x->node == 1)
				bind_diff += x->gpu != y->gpu || strcmp(x->gpu_pci, y->gpu_pci) || strcmp(x->nics, y->nics) ||
					     strcmp(x->cpuset, y->cpuset);
			else
				others += y->gpu >= 0 || y->cpuset != NULL;
		}
		TAP_INT(bind_diff, 0, "node 1's binding equals the full plan's");
		TAP_INT(others, 0, "the other nodes stay unbound");
		for (int i = 0; i < 4; i++)
			bind_diff += full->node_rank[i] != blind->node_rank[i];
		TAP_INT(bind_diff + (full->master_node != blind->master_node), 0, "node ranks and master node agree");
		/* 8 tasks on a 4-GPU model: only that node's binding fails */
		tap_ok(mt_plan_bind_node(blind, 0, gb, NULL, err, sizeof(err)) == MT_EIMPOSSIBLE && strstr(err, "n1") &&
		       !blind->node_bound[0], "8 tasks on a node with 4 GPUs: its binding fails, naming it (%s)", err);
		/* the unbound node's tasks still get their ranks, without binding variables */
		int q0 = blind->by_rank[0];
		struct mt_task t = {.procid = q0, .master_port = 20001};
		struct mt_env e;
		if (blind->ranks[q0].node != 0) /* rank 0 may sit elsewhere: take one of node 0's tasks */
			for (int q = 0; q < blind->world; q++)
				if (blind->ranks[q].node == 0)
					t.procid = q0 = q;
		if (!mt_contract_env(blind, &t, &e, err, sizeof(err))) {
			char want[16];
			snprintf(want, sizeof(want), "%d", blind->ranks[q0].rank);
			TAP_STR(mt_env_get(&e, "RANK"), want, "unbound node: RANK is still the plan's");
			tap_ok(!mt_env_get(&e, "CUDA_VISIBLE_DEVICES") && !mt_env_get(&e, "NCCL_IB_HCA") &&
			       !strcmp(mt_env_get(&e, "MOE_CPUS"), ""), "unbound node: no GPU, NIC or CPU variables");
			mt_env_free(&e);
		} else
			tap_ok(0, "contract on an unbound node: %s", err);
		mt_plan_free(full);
		mt_plan_free(blind);
		job_free(&a);
		job_free(&b);
	}
	mt_domains_free(dom);
}

static void test_slurm_layout(void)
{
	char err[MT_ERRLEN];
	struct mt_env e;
	struct mt_task t = {.procid = 5, .master_addr = "gpu-r1-n1", .master_port = 21234,
			    .slurm = {.world = 8, .local_rank = 1, .local_size = 4, .node_rank = 1, .node_name = "gpu-r1-n2"},
			    .torch_only = true};

	TAP_INT(mt_contract_env(NULL, &t, &e, err, sizeof(err)), 0, "Slurm's layout, torch only (%s)", err);
	TAP_STR(mt_env_get(&e, "RANK"), "5", "RANK = SLURM_PROCID");
	TAP_STR(mt_env_get(&e, "LOCAL_RANK"), "1", "LOCAL_RANK = SLURM_LOCALID");
	TAP_STR(mt_env_get(&e, "WORLD_SIZE"), "8", "WORLD_SIZE = tasks of the step");
	TAP_STR(mt_env_get(&e, "MASTER_ADDR"), "gpu-r1-n1", "MASTER_ADDR = task 0's node");
	TAP_STR(mt_env_get(&e, "MASTER_PORT"), "21234", "MASTER_PORT = the step's port");
	tap_ok(!mt_env_get(&e, "MOE_RANK") && e.n == 7, "torch only: no MOE_* (no plan is in effect), 7 variables");
	mt_env_free(&e);
	t.torch_only = false;
	TAP_INT(mt_contract_env(NULL, &t, &e, err, sizeof(err)), 0, "Slurm's layout, MOE_* (%s)", err);
	TAP_STR(mt_env_get(&e, "MOE_EP_SIZE"), "8", "one EP group of the world");
	TAP_STR(mt_env_get(&e, "MOE_DOMAIN"), "gpu-r1-n2", "each node its own domain");
	tap_ok(!mt_env_get(&e, "RANK"), "no torch variables unless asked");
	mt_env_free(&e);
	t.slurm.local_rank = 4;
	tap_ok(mt_contract_env(NULL, &t, &e, err, sizeof(err)) != 0, "a local rank outside the node is refused: %s", err);
}

static void test_port(void)
{
	int out = 0;
	for (unsigned job = 1; job < 5000; job += 7)
		for (unsigned step = 0; step < 40; step++) {
			unsigned p = mt_contract_port(NULL, job, step);
			out += p < 20000 || p >= 30000;
		}
	TAP_INT(out, 0, "fallback ports stay in 20000-29999, below the ephemeral range (32768-)");
	TAP_INT(mt_contract_port("12345-12350", 7, 0), 12345, "Slurm's reserved port wins");
	TAP_INT(mt_contract_port("80", 7, 0), mt_contract_port(NULL, 7, 0), "a privileged 'reserved' port is ignored");
	TAP_INT(mt_contract_port(NULL, 4294967295u, 4294967294u) - 20000 < 10000, 1, "no overflow past the range");
}

static void test_distribution(void)
{
	char err[MT_ERRLEN];
	int *t = NULL, tasks[3] = {4, 2, 2};
	enum mt_dist d;

	TAP_INT(mt_tasks_per_node_parse("2(x3),1", 4, &t, err, sizeof(err)), 0, "tasks per node 2(x3),1");
	tap_ok(t && t[0] == 2 && t[2] == 2 && t[3] == 1, "reads 2,2,2,1");
	free(t);
	const char *bad[] = {"2(x3)", "2,", "-1,2", "2(x0),2", "a", "2(x3,1", "2,2,2,1,1", ""};
	int refused = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		refused += mt_tasks_per_node_parse(bad[i], 4, &t, err, sizeof(err)) != 0 && !t;
	TAP_INT(refused, 8, "malformed or short tasks-per-node lists are refused (%s)", err);
	TAP_INT(mt_dist_parse("cyclic:block", &d, err, sizeof(err)) == 0 && d == MT_DIST_CYCLIC, 1, "cyclic:block is cyclic");
	TAP_INT(mt_dist_parse("block:cyclic,Pack", &d, err, sizeof(err)) == 0 && d == MT_DIST_BLOCK, 1, "block:... is block");
	tap_ok(mt_dist_parse("plane=4", &d, err, sizeof(err)) != 0 && strstr(err, "block, cyclic"),
	       "plane is refused naming the valid choices: %s", err);
	int **c = mt_dist_procids(MT_DIST_CYCLIC, tasks, 3), **b = mt_dist_procids(MT_DIST_BLOCK, tasks, 3);
	tap_ok(c && c[0][0] == 0 && c[1][0] == 1 && c[2][0] == 2 && c[0][1] == 3 && c[1][1] == 4 && c[2][1] == 5 &&
	       c[0][2] == 6 && c[0][3] == 7, "cyclic over 4,2,2: round robin over the nodes with room");
	tap_ok(b && b[0][3] == 3 && b[1][0] == 4 && b[2][1] == 7, "block over 4,2,2: node order");
	mt_procids_free(c, 3);
	int uneven[2] = {1, 3};
	c = mt_dist_procids(MT_DIST_CYCLIC, uneven, 2);
	tap_ok(c && c[0][0] == 0 && c[1][0] == 1 && c[1][1] == 2 && c[1][2] == 3, "cyclic 1+3: a full node is skipped");
	mt_procids_free(c, 2);
	c = NULL;
	mt_procids_free(c, 3);
	mt_procids_free(b, 3);
}

int main(void)
{
	char err[MT_ERRLEN];
	struct mt_node *dgx, *gb;

	if (mt_preset_node("dgx-h100", &dgx, err, sizeof(err)) || mt_preset_node("gb200-nvl72-tray", &gb, err, sizeof(err)))
		return printf("Bail out! %s\n", err), 1;
	test_contract_dgx(dgx);
	test_job_wide(dgx, gb);
	test_slurm_layout();
	test_port();
	test_distribution();
	mt_node_free(dgx);
	mt_node_free(gb);
	return tap_done();
}
