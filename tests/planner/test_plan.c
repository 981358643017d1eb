/* test_plan.c - mt_plan_build on hand-checked job shapes: rank order, GPU/rail/NIC/CPU binding,
 * EP groups packed into NVLink domains, expert placement, CPU-only jobs, and the errors for
 * impossible specs.  Expected values come from the preset facts (topology/presets.c, which cites
 * its sources) and are worked out in the comments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "tap.h"

struct jobbuf {
	struct mt_job job;
	char **names;
	int n;
	int *tasks;
	const struct mt_node **models;
};

static void job_make(struct jobbuf *jb, const char *hosts, int tasks_per_node, const struct mt_node *m,
		     const struct mt_domains *dom, const char *spec)
{
	char err[MT_ERRLEN];
	memset(jb, 0, sizeof(*jb));
	if (mt_hostlist_expand(hosts, &jb->names, &jb->n, err, sizeof(err)))
		abort();
	jb->tasks = malloc(sizeof(int) * (size_t)jb->n);
	jb->models = malloc(sizeof(*jb->models) * (size_t)jb->n);
	for (int i = 0; i < jb->n; i++) {
		jb->tasks[i] = tasks_per_node;
		jb->models[i] = m;
	}
	jb->job.n_nodes = jb->n;
	jb->job.nodes = (const char *const *)jb->names;
	jb->job.tasks = jb->tasks;
	jb->job.models = jb->models;
	jb->job.domains = dom;
	if (mt_spec_parse(spec, &jb->job.spec, err, sizeof(err)))
		abort();
}

static void job_free(struct jobbuf *jb)
{
	mt_hostlist_free(jb->names, jb->n);
	free(jb->tasks);
	free(jb->models);
}

static const struct mt_rank *by_rank(const struct mt_plan *p, int r)
{
	return &p->ranks[p->by_rank[r]];
}

int main(void)
{
	char err[MT_ERRLEN];
	struct mt_node *dgx, *gb, *cpu;
	struct mt_plan *p;
	struct jobbuf jb;

	TAP_INT(mt_preset_node("dgx-h100", &dgx, err, sizeof(err)), 0, "dgx-h100 preset");
	TAP_INT(mt_preset_node("gb300-nvl72-tray", &gb, err, sizeof(err)), 0, "gb300-nvl72-tray preset");
	TAP_INT(mt_preset_node("cpu-2socket", &cpu, err, sizeof(err)), 0, "cpu-2socket preset");
	TAP_INT(dgx->n_gpus, 8, "dgx-h100: 8 GPUs");
	TAP_INT(dgx->n_nics, 8, "dgx-h100: 8 rail NICs");
	TAP_INT(dgx->n_numa, 2, "dgx-h100: 2 NUMA nodes");
	TAP_INT(gb->n_gpus, 4, "gb300 tray: 4 GPUs");
	TAP_INT(mt_preset_domain_size("gb300-nvl72-tray"), 18, "gb300: 18 trays per NVLink domain");
	TAP_INT(mt_preset_domain_size("dgx-h100"), 1, "dgx-h100: the node is the domain");
	struct mt_node *none = (struct mt_node *)1;
	TAP_INT(mt_preset_node("dgx-a100", &none, err, sizeof(err)), MT_EINVAL, "unknown preset is an error");
	tap_ok(!none && strstr(err, "dgx-h100, gb300-nvl72-tray"), "names the valid presets: %s", err);

	/* 4 DGX H100, 8 tasks each, ep=8: each node is its own domain, so each node is one EP group. */
	job_make(&jb, "dgx[1-4]", 8, dgx, NULL, "ep=8,experts=64");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "4x DGX ep=8 plans (%s)", err);
	TAP_INT(p->world, 32, "world 32");
	TAP_INT(p->n_groups, 4, "4 EP groups");
	TAP_INT(p->summary.ep_groups_local, 4, "all 4 groups NVLink-local");
	tap_ok(p->summary.nvlink_local_fraction == 1.0, "all EP bytes inside NVLink domains");
	TAP_INT(p->experts_per_rank, 8, "64 experts / ep 8 = 8 per rank");
	TAP_INT(mt_plan_expert_owner(p, 63), 7, "expert 63 on EP rank 7");
	TAP_INT(mt_plan_expert_owner(p, 64), -1, "expert 64 does not exist");
	/* preset: GPU i sits beside rail i, GPUs 0-3 on NUMA 0 (cpus 0-55,112-167).  Four ranks share NUMA 0,
	 * each run of 56 cpus cut in four: rank 1 gets 14-27 and their SMT siblings 126-139. */
	const struct mt_rank *R = by_rank(p, 1);
	TAP_INT(R->local_rank, 1, "rank 1 is local rank 1 on dgx1");
	TAP_INT(R->gpu, 1, "local rank 1 -> GPU of rail 1");
	TAP_STR(R->gpu_pci, "0000:43:00.0", "GPU 1 PCI id");
	TAP_STR(R->nics, "mlx5_1", "rail-1 NIC");
	TAP_STR(R->cpuset, "14-27,126-139", "cpuset: second quarter of NUMA 0 with SMT siblings");
	TAP_STR(by_rank(p, 7)->cpuset, "98-111,210-223", "rank 7: last quarter of NUMA 1");
	TAP_STR(p->domain_names[R->domain], "dgx1", "without a map the node is the domain");
	mt_plan_free(p);

	/* cpu=none leaves cpusets empty; tp=2 keeps TP pairs on a node */
	jb.job.spec.cpu = MT_CPU_NONE;
	jb.job.spec.tp = 2;
	jb.job.spec.ep = 4;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "tp=2 ep=4 plans (%s)", err);
	TAP_STR(by_rank(p, 0)->cpuset, "", "cpu=none: empty cpuset");
	int tp_ok = 1;
	for (int r = 0; r < p->world; r += 2)
		tp_ok &= by_rank(p, r)->node == by_rank(p, r + 1)->node && by_rank(p, r)->tp_rank == 0 &&
			 by_rank(p, r + 1)->tp_rank == 1;
	tap_ok(tp_ok, "TP groups are consecutive ranks on one node");
	/* Megatron order: rank = tp + 2*(ep + 4*dp_block); EP group 1 = ranks 1,3,5,7 (tp rank 1) */
	TAP_INT(p->groups[1].members[0], 1, "EP group 1 starts at rank 1");
	TAP_INT(p->groups[1].members[3], 7, "EP group 1 ends at rank 7");
	TAP_INT(p->summary.ep_groups_local, 8, "8 EP groups of 4, all inside a node");
	mt_plan_free(p);
	job_free(&jb);

	/* GB300 trays (preset from oci-hpc__GB300MP.xml): GPU i in PCI order sits beside rail i's NIC;
	 * GPUs 0-1 on Grace 0 (cpus 0-71), 2-3 on Grace 1 (72-143). */
	struct mt_domains *dom = mt_domains_new();
	mt_domains_add(dom, "r1n[01-16]", "rack1", err, sizeof(err));
	mt_domains_add(dom, "r2n[01-18]", "rack2", err, sizeof(err));
	mt_domains_add(dom, "r3n[01-17]", "rack3", err, sizeof(err));
	/* Slurm order interleaves the racks: the default layout would mix them */
	job_make(&jb, "r1n[01-16],r2n[01-18],r3n[01-17]", 4, gb, dom, "ep=4,experts=256");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "51 GB300 trays, ep=4 (%s)", err);
	R = by_rank(p, 0);
	TAP_INT(R->gpu, 0, "local rank 0 -> GPU of rail 0");
	TAP_STR(R->gpu_pci, "0008:06:00.0", "rail 0 GPU is 0008:06:00.0");
	TAP_INT(R->rail, 0, "rail 0");
	TAP_STR(R->nics, "mlx5_0", "rail 0 NIC");
	TAP_STR(R->cpuset, "0-35", "two ranks share Grace 0 (0-71): first half");
	TAP_INT(by_rank(p, 2)->gpu, 2, "local rank 2 -> GPU of rail 2");
	TAP_STR(by_rank(p, 2)->cpuset, "72-107", "local rank 2: first half of Grace 1 (72-143)");
	mt_plan_free(p);
	/* 51 trays = 204 GPUs: ep=32 cannot divide it */
	jb.job.spec.ep = 32;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EIMPOSSIBLE, "ep=32 on 204 GPUs is refused");
	tap_ok(strstr(err, "204") && strstr(err, "valid ep: 1, 2, 3, 4, 6, 12, 17, 34, 51, 68, 102, 204"),
	       "lists the divisors of 204: %s", err);
	job_free(&jb);

	/* 200 GPUs: racks 64, 72, 64.  ep=40: floor(64/40)+floor(72/40)+floor(64/40) = 3 local groups; the
	 * leftovers 24+32+24 = 80 form 2 groups, each spanning 2 racks. */
	job_make(&jb, "r1n[01-16],r2n[01-18],r3n[01-16]", 4, gb, dom, "ep=40");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "ep=40 on racks of 64/72/64 (%s)", err);
	TAP_INT(p->summary.ep_groups, 5, "5 groups");
	TAP_INT(p->summary.ep_groups_local, 3, "3 NVLink-local groups (the optimum)");
	TAP_INT(p->summary.max_domains_per_group, 2, "leftover groups span 2 racks");
	mt_plan_free(p);
	job_free(&jb);

	/* domain map missing a node */
	job_make(&jb, "r1n[01-16],r4n01", 4, gb, dom, "ep=4");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EINVAL, "node missing from the map is an error");
	tap_ok(!p && strstr(err, "'r4n01'") && strstr(err, "domain map"), "names the node: %s", err);
	job_free(&jb);

	/* impossible specs */
	job_make(&jb, "dgx[1-3]", 8, dgx, NULL, "ep=16");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EIMPOSSIBLE, "ep=16 does not divide 24");
	tap_ok(strstr(err, "ep=16") && strstr(err, "valid ep: 1, 2, 3, 4, 6, 8, 12, 24"), "lists valid ep: %s", err);
	jb.job.spec.ep = 8;
	jb.job.spec.experts = 20;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EINVAL, "experts=20 not divisible by ep=8");
	tap_ok(strstr(err, "experts=20") && strstr(err, "multiple of 8"), "names experts and ep: %s", err);
	jb.job.spec.experts = 0;
	jb.job.spec.tp = 3;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EIMPOSSIBLE, "tp=3 does not divide 8 tasks");
	tap_ok(strstr(err, "tp=3") && strstr(err, "valid tp: 1, 2, 4, 8"), "lists valid tp: %s", err);
	jb.job.spec.tp = 1;
	jb.tasks[1] = 9;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EIMPOSSIBLE, "9 tasks on an 8-GPU node");
	tap_ok(strstr(err, "dgx2") && strstr(err, "9 tasks") && strstr(err, "8 GPUs"), "names node and counts: %s", err);
	jb.tasks[1] = 8;
	jb.names[2][3] = '1'; /* dgx1 twice */
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EINVAL, "a node listed twice is an error");
	jb.names[2][3] = '3';
	jb.job.spec.mode = MT_MODE_OFF;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EINVAL, "spec off asks for no plan");
	jb.job.spec.mode = MT_MODE_AUTO;
	jb.job.spec.ep = 0;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "ep=auto plans");
	TAP_INT(p->spec.ep, 8, "auto: ep = 8, the largest size local to every node-domain");
	mt_plan_free(p);
	job_free(&jb);

	/* CPU-only: 2 nodes x 4 tasks on 2 NUMA nodes: tasks 0-1 on NUMA 0, 2-3 on NUMA 1, disjoint halves
	 * (NUMA 0 = 0-31,64-95 -> 0-15,64-79 and 16-31,80-95). No GPU fields are invented. */
	job_make(&jb, "c[1-2]", 4, cpu, NULL, "ep=8");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "CPU-only job plans (%s)", err);
	R = by_rank(p, 1);
	TAP_INT(R->gpu, -1, "no GPU index");
	TAP_STR(R->gpu_pci, "", "no GPU PCI id");
	TAP_STR(R->nics, "", "no NIC");
	TAP_INT(R->rail, -1, "no rail");
	TAP_INT(R->numa, 0, "local rank 1 on NUMA 0");
	TAP_STR(R->cpuset, "16-31,80-95", "second half of NUMA 0");
	TAP_INT(by_rank(p, 2)->numa, 1, "local rank 2 on NUMA 1");
	TAP_STR(by_rank(p, 3)->cpuset, "48-63,112-127", "local rank 3: second half of NUMA 1");
	TAP_INT(p->summary.ep_groups_local, 0, "ep=8 over two single-node domains: no local group");
	TAP_INT(p->groups[0].n_domains, 2, "the group spans 2 domains, 4 ranks each");
	mt_plan_free(p);
	/* allowed cpus restrict the slices */
	const char *allowed[2] = {"0-7,32-39", NULL};
	jb.job.allowed_cpus = allowed;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "allowed cpus plan");
	TAP_STR(by_rank(p, 0)->cpuset, "0-3", "node c1 rank 0: half of the allowed NUMA-0 cpus");
	TAP_STR(by_rank(p, 3)->cpuset, "36-39", "node c1 rank 3: half of the allowed NUMA-1 cpus");
	TAP_STR(by_rank(p, 4)->cpuset, "0-15,64-79", "node c2 has no restriction");
	mt_plan_free(p);
	job_free(&jb);

	/* NVML fabric cliques: without a map, nodes whose GPUs report the same clusterUuid + cliqueId share
	 * a domain.  Trays t1, t3 in clique 1 and t2, t4 in clique 2 -> ep=8 gives two local groups. */
	struct mt_node *ca, *cb;
	mt_preset_node("gb300-nvl72-tray", &ca, err, sizeof(err));
	mt_preset_node("gb300-nvl72-tray", &cb, err, sizeof(err));
	for (int g = 0; g < 4; g++) {
		ca->gpus[g].has_fabric = cb->gpus[g].has_fabric = true;
		strcpy(ca->gpus[g].fabric_uuid, "6c2f1a7e-0000-4000-8000-000000000001");
		strcpy(cb->gpus[g].fabric_uuid, "6c2f1a7e-0000-4000-8000-000000000001");
		ca->gpus[g].clique = 1;
		cb->gpus[g].clique = 2;
	}
	job_make(&jb, "t[1-4]", 4, ca, NULL, "ep=8");
	jb.models[1] = jb.models[3] = cb;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "fabric cliques plan (%s)", err);
	TAP_INT(p->n_domains, 2, "two cliques -> two domains");
	TAP_INT(p->summary.ep_groups_local, 2, "both EP groups inside a clique");
	TAP_INT(by_rank(p, 4)->node, 2, "rank 4 is on t3, t1's clique peer");
	mt_plan_free(p);
	cb->gpus[0].has_fabric = false; /* one node without fabric info: fall back to node = domain */
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "partial fabric info plans");
	TAP_INT(p->n_domains, 4, "without fabric info on every node, each node is a domain");
	mt_plan_free(p);
	job_free(&jb);
	mt_node_free(ca);
	mt_node_free(cb);

	/* Cyclic task distribution (srun -m cyclic): procid = t * 2 + node.  The plan still puts node 1's
	 * tasks into one EP group: procid 1 (node 1, local task 0) becomes rank 8, local rank 0, rail 0. */
	job_make(&jb, "dgx[1-2]", 8, dgx, NULL, "ep=8");
	int pid_rows[2][8];
	const int *pids[2] = {pid_rows[0], pid_rows[1]};
	for (int i = 0; i < 2; i++)
		for (int t = 0; t < 8; t++)
			pid_rows[i][t] = t * 2 + i;
	jb.job.procids = pids;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "cyclic distribution plans");
	TAP_INT(p->ranks[1].rank, 8, "procid 1 -> rank 8");
	TAP_INT(p->ranks[1].node, 1, "procid 1 on dgx2");
	TAP_INT(p->ranks[1].local_rank, 0, "procid 1 is local rank 0");
	TAP_INT(p->ranks[1].rail, 0, "procid 1 on rail 0");
	TAP_INT(p->summary.ep_groups_local, 2, "both groups node-local");
	mt_plan_free(p);
	pid_rows[1][7] = 0; /* procid 0 twice */
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), MT_EINVAL, "task ids that are not a permutation");
	tap_ok(strstr(err, "permutation") != NULL, "says so: %s", err);
	job_free(&jb);

	/* Metrics by hand: DGX nodes running 4, 8 and 4 tasks, ep=8, each node its own domain.
	 * Plan: dgx2 is one local group; dgx1 + dgx3 (4 + 4, both on rails 0-3) the other.
	 *   same-domain ordered pairs: 8*7 + 4*3 + 4*3 = 80 of 2*8*7 = 112 -> nvlink_local 80/112;
	 *   cross-domain pairs 32, every sender finds its rail on the other node -> rail_aligned 1.
	 * Slurm's default: ranks 0-7 = dgx1 (rails 0-3) + dgx2 tasks 0-3 (rails 0-3), ranks 8-15 =
	 *   dgx2 tasks 4-7 (rails 4-7) + dgx3 (rails 0-3): 4 groups of 4 -> 4*12 = 48 local pairs of 112;
	 *   of the 64 cross pairs only group 0's 32 find their rail -> rail_aligned 0.5. */
	job_make(&jb, "dgx[1-3]", 8, dgx, NULL, "ep=8");
	jb.tasks[0] = jb.tasks[2] = 4;
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "4/8/4 tasks plan (%s)", err);
	tap_ok(p->summary.nvlink_local_fraction > 80.0 / 112 - 1e-12 && p->summary.nvlink_local_fraction < 80.0 / 112 + 1e-12,
	       "plan nvlink_local_fraction = 80/112 (%.4f)", p->summary.nvlink_local_fraction);
	tap_ok(p->summary.rail_aligned_fraction == 1.0, "plan rail_aligned_fraction = 1");
	TAP_INT(p->summary.ep_groups_local, 1, "plan: dgx2 is one local group");
	struct mt_sim_params sp;
	struct mt_sim_result def, mine;
	mt_sim_default_params(&sp);
	TAP_INT(mt_sim_default(&jb.job, p, &sp, &def, err, sizeof(err)), 0, "default layout simulated");
	tap_ok(def.summary.nvlink_local_fraction > 48.0 / 112 - 1e-12 && def.summary.nvlink_local_fraction < 48.0 / 112 + 1e-12,
	       "default nvlink_local_fraction = 48/112 (%.4f)", def.summary.nvlink_local_fraction);
	tap_ok(def.summary.rail_aligned_fraction == 0.5, "default rail_aligned_fraction = 0.5 (%.4f)",
	       def.summary.rail_aligned_fraction);
	/* Simulated time, by hand (defaults: 4096 tokens, hidden 7168, 2 B -> 58,720,256 B per token copy
	 * set; NIC 50 GB/s, NVLink 450 GB/s).  The slowest group is the 4 + 4 one: a token reaches the
	 * other node with probability 1 - (1/2)^8 and crosses the network once: 0.99609375 * 58720256 B /
	 * 50 GB/s = 1169.8 us per direction, more than its NVLink share (6 copies / 450 GB/s = 783 us).
	 * With spine oversubscription 2, the default's misaligned group pays twice that per rank.  The
	 * shared spine (all groups at once): dgx1 and dgx3 hold 4 GPUs each, all of whose traffic in the
	 * plan's 4 + 4 group leaves the node: 4 x 0.996 tokens over 4 NICs / 2 = twice the NIC time, so
	 * at oversub 2 the plan's cross-node group is spine-bound at the same 2 x net per direction.  In
	 * the default, dgx2 (8 GPUs) sends 4 x 0.996 for each of its two groups: 8 x 0.996 / (8 / 2),
	 * also 2 x net.  At oversub 1 the spine never exceeds the NIC time here. */
	double tok = 4096.0 * 7168 * 2, net = (1 - 1.0 / 256) * tok / 50e9 * 1e6;
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "plan simulated, oversub 1");
	tap_ok(mine.total_us > 2 * net * 0.999999 && mine.total_us < 2 * net * 1.000001,
	       "plan, oversub 1: dispatch + combine = 2 x %.1f us (%.1f)", net, mine.total_us);
	TAP_INT(mine.spine_bound_groups, 0, "plan, oversub 1: no group spine-bound");
	sp.oversub = 2;
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "plan simulated");
	TAP_INT(mt_sim_default(&jb.job, p, &sp, &def, err, sizeof(err)), 0, "default simulated, oversub 2");
	tap_ok(mine.total_us > 4 * net * 0.999999 && mine.total_us < 4 * net * 1.000001,
	       "plan, oversub 2: the 4-GPU nodes' shared uplinks: 4 x %.1f us (%.1f)", net, mine.total_us);
	TAP_INT(mine.spine_bound_groups, 1, "plan: the cross-node group is spine-bound");
	tap_ok(def.total_us > 4 * net * 0.999999 && def.total_us < 4 * net * 1.000001,
	       "default: the misaligned group crosses the spine, twice as long (%.1f)", def.total_us);
	tap_ok(def.mean_group_us > mine.mean_group_us, "mean group faster too");
	sp.oversub = 0.5;
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), MT_EINVAL, "oversubscription below 1 is refused");
	mt_plan_free(p);
	job_free(&jb);

	/* The shared spine by hand: 2 racks of 2 GB300 trays (8 GPUs each, rails 0-3 per tray), node
	 * names alternating racks (s1, s3 in A; s2, s4 in B), ep=8, defaults (NIC 50 GB/s, NVLink 450).
	 * Default: groups s1+s2 and s3+s4, each split 4/4 and rail-aligned.  Per rank, a token needs the
	 * other rack with probability h = 1 - (1/2)^8 = 255/256: it sends h and receives h (one sender
	 * per rail) -> NIC time h x 58,720,256 B / 50 GB/s = 1169.8 us; NVLink 6 copies / 450 = 783 us.
	 * Spine: rack A sends 2 groups x 4 ranks x h = 8h token sets (and receives the same) over
	 * 8 NICs / oversub: oversub 1 -> h / 50 GB/s, the NIC time (full bisection, even traffic: no
	 * change); oversub 2 -> 2h / 50 GB/s = 2339.6 us per direction: every group spine-bound.
	 * Plan: s1+s3 and s2+s4, NVLink-local: 7 copies / 450 GB/s, no spine, any oversub. */
	struct mt_domains *d3 = mt_domains_new();
	mt_domains_add(d3, "s[1,3]", "rackA", err, sizeof(err));
	mt_domains_add(d3, "s[2,4]", "rackB", err, sizeof(err));
	job_make(&jb, "s[1-4]", 4, gb, d3, "ep=8");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "2 racks x 2 trays, ep=8 (%s)", err);
	TAP_INT(p->summary.ep_groups_local, 2, "plan: both groups rack-local");
	mt_sim_default_params(&sp);
	double h = 255.0 / 256, nic1 = h * tok / 50e9 * 1e6, loc = 7 * tok / 450e9 * 1e6;
	for (int o = 1; o <= 2; o++) {
		sp.oversub = o;
		TAP_INT(mt_sim_default(&jb.job, p, &sp, &def, err, sizeof(err)), 0, "default, oversub %d", o);
		TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "plan, oversub %d", o);
		tap_ok(fabs(def.total_us - 2 * o * nic1) < 1e-6 * nic1,
		       "default, oversub %d: dispatch + combine = 2 x %d x %.1f us (%.1f)", o, o, nic1, def.total_us);
		tap_ok(fabs(def.spine_us_max - o * nic1) < 1e-6 * nic1, "default, oversub %d: busiest rack's spine %.1f us",
		       o, def.spine_us_max);
		TAP_INT(def.spine_bound_groups, o == 1 ? 0 : 2, "default, oversub %d: spine-bound groups", o);
		tap_ok(fabs(mine.total_us - 2 * loc) < 1e-6 * loc && mine.spine_us_max == 0,
		       "plan, oversub %d: NVLink only, 2 x %.1f us (%.1f)", o, loc, mine.total_us);
	}
	mt_plan_free(p);
	job_free(&jb);
	/* A busy spine does not slow an NVLink-local group: rack A with 3 trays (12 GPUs), rack B with
	 * one, ep=8 -> the plan keeps 8 of A's GPUs local and pairs A's other 4 with B's 4 (h as above).
	 * Oversub 4: B's uplinks carry 4h over 4 NICs / 4 -> 4h / 50 GB/s per direction (A's: 4h over
	 * 12 / 4, less).  The local group stays at 7 NVLink copies / 450 GB/s although rack A's spine
	 * is busy: mean over the 2 groups = (2 x 4h / 50 + 2 x 7 / 450) / 2 token sets. */
	mt_domains_add(d3, "t[1-3]", "rackA", err, sizeof(err));
	mt_domains_add(d3, "t4", "rackB", err, sizeof(err));
	job_make(&jb, "t[1-4]", 4, gb, d3, "ep=8");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "12 + 4 GPUs, ep=8 (%s)", err);
	TAP_INT(p->summary.ep_groups_local, 1, "plan: one local group");
	sp.oversub = 4;
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "plan, oversub 4");
	TAP_INT(mine.spine_bound_groups, 1, "only the cross-rack group is spine-bound");
	tap_ok(fabs(mine.total_us - 8 * nic1) < 1e-6 * nic1, "cross-rack group: 2 x 4 x %.1f us (%.1f)", nic1,
	       mine.total_us);
	double wm = (8 * nic1 + 2 * loc) / 2;
	tap_ok(fabs(mine.mean_group_us - wm) < 1e-6 * wm, "local group unslowed: mean %.1f us (want %.1f)",
	       mine.mean_group_us, wm);
	mt_plan_free(p);
	job_free(&jb);
	mt_domains_free(d3);

	/* Group-limited routing by hand: 3 GB300 trays, each its own domain, ep=12 (4 + 4 + 4).
	 * Uniform: each other tray is reached with probability 1 - (8/12)^8, so a token crosses the
	 * network 2 * 0.9610 times; route-groups=1: a token goes to 1 of the 3 trays, remote with
	 * probability 2/3.  Network time per direction = crossings * 58,720,256 B / 50 GB/s. */
	job_make(&jb, "g[1-3]", 4, gb, NULL, "ep=12,route-groups=1");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "3 trays, ep=12 (%s)", err);
	mt_sim_default_params(&sp);
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "uniform routing");
	double pu = 1, q = 8.0 / 12;
	for (int i = 0; i < 8; i++)
		pu *= q;
	double uni = 2 * (1 - pu) * tok / 50e9 * 1e6;
	tap_ok(mine.dispatch_us > uni * 0.999999 && mine.dispatch_us < uni * 1.000001, "uniform dispatch %.1f us (want %.1f)",
	       mine.dispatch_us, uni);
	sp.route_groups = p->spec.route_groups;
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "group-limited routing");
	double lim = 2.0 / 3 * tok / 50e9 * 1e6;
	tap_ok(mine.dispatch_us > lim * 0.999999 && mine.dispatch_us < lim * 1.000001,
	       "route-groups=1 dispatch %.1f us (want %.1f)", mine.dispatch_us, lim);
	mt_plan_free(p);
	job_free(&jb);

	/* Receive side and unequal chunks, by hand: 3 GB300 trays in rack A and 1 in rack B, ep=16, one
	 * group of 12 + 4 GPUs (rails 0-3 in every tray).  Defaults: NIC 50 GB/s, NVLink 450 GB/s.
	 * Uniform: B's member on rail r sends a token to A with probability 1 - (1/4)^8 (about 1), but
	 * receives from A's 3 members on its rail, each needing B with probability 1 - (3/4)^8: 2.70
	 * crossings per token - the incast a small chunk suffers; A's members send 0.90 and receive
	 * 0.33.  NVLink never dominates here (at most 7.3 copies / 450 GB/s < 2.70 / 50 GB/s).
	 * route-groups=1: the draws x solve (1/4)^x + (3/4)^x = 1, so x = 1: a token reaches A with
	 * probability 3/4 and B with 1/4 (in proportion to their experts): B's member receives
	 * 3 x 1/4 = 0.75 per token, sends 0.75; A's member forwards 1/3 x 3/4 tokens x 8 copies x 11/12
	 * plus its own 8 x 11/16 copies = 7.33 copies over NVLink, 7.33 / 450 > 0.75 / 50: NVLink sets
	 * the time there. */
	struct mt_domains *d2 = mt_domains_new();
	mt_domains_add(d2, "u1n[1-3]", "rackA", err, sizeof(err));
	mt_domains_add(d2, "u2n1", "rackB", err, sizeof(err));
	job_make(&jb, "u1n[1-3],u2n1", 4, gb, d2, "ep=16");
	TAP_INT(mt_plan_build(&jb.job, &p, err, sizeof(err)), 0, "12 + 4 GPUs, ep=16 (%s)", err);
	mt_sim_default_params(&sp);
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "uniform");
	double q4 = pow(0.75, 8), want = 3 * (1 - q4) * tok / 50e9 * 1e6;
	tap_ok(fabs(mine.dispatch_us - want) < 1e-6 * want, "small chunk's receive side: dispatch %.1f us (want %.1f)",
	       mine.dispatch_us, want);
	sp.route_groups = 1;
	TAP_INT(mt_sim_plan(p, &sp, &mine, err, sizeof(err)), 0, "route-groups=1");
	want = (8.0 * 11 / 16 + 1.0 / 3 * 0.75 * 8 * 11 / 12) * tok / 450e9 * 1e6;
	tap_ok(fabs(mine.dispatch_us - want) < 1e-6 * want, "route-groups=1: reach in proportion to experts, %.1f us (want %.1f)",
	       mine.dispatch_us, want);
	mt_plan_free(p);
	job_free(&jb);
	mt_domains_free(d2);

	mt_domains_free(dom);
	mt_node_free(dgx);
	mt_node_free(gb);
	mt_node_free(cpu);
	return tap_done();
}
