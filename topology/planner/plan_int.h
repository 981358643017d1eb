/* plan_int.h - helpers shared by the planner's source files (not installed, not public API). */
#ifndef MT_PLAN_INT_H
#define MT_PLAN_INT_H

#include <stdint.h>

#include "mt_plan.h"
#include "mt_common.h"


/* A layout reduced to what the traffic metrics need: per rank (indexed by rank) its EP group,
 * node, NVLink domain and rail.  Both the plan and Slurm's default layout are described this way,
 * so `simulate` compares them with one model. */
struct mt_layout {
	int world, ep, n_groups, n_domains;
	const int *group;  /* group of rank r; members of a group are listed in `members` */
	const int *node;
	const int *domain;
	const int *rail;   /* -1 none */
	const int *members; /* n_groups * ep ranks, group-major */
};
void mt_layout_summary(const struct mt_layout *l, struct mt_summary *s);
/* plan_metrics.c: the EP groups of W ranks in Megatron order (tp T fastest, then ep E: EP block b holds
 * groups b*T..b*T+T-1, members strided by T) into *l; *node, *domain, *rail (per rank) are for the
 * caller to fill.  Returns the one allocation behind them (free it), NULL when out of memory. */
int *mt_layout_megatron(struct mt_layout *l, int W, int E, int T, int n_domains, int **node, int **domain,
			int **rail);
/* simulate.c: the fabric model of one layout (what `moetopo simulate` prints for each). */
int mt_sim_layout(const struct mt_layout *l, const struct mt_sim_params *sp, struct mt_sim_result *res, char *err,
		  size_t errlen);
/* fabric.c: simulate's parameters for planning under fabric f (defaults where f leaves a figure out). */
void mt_fabric_params(const struct mt_fabric *f, int route_groups, struct mt_sim_params *sp);
/* simulate.c: group-limited routing to M domains acts like x <= k uniform expert draws; x for a
 * group whose domains hold cnt[0..nt) of its E members. */
double mt_sim_draws(const int *cnt, int nt, double E, double k, int M);
/* simulate.c, the model's per-domain and per-rank facts (the packer prices tails with them too):
 * the chance a token needs a domain holding c of its group's E members, after x expert draws; and the
 * token sets a rank receives: from the rail_senders outside its domain on its rail, shared by the
 * domain's rail_own members there, plus its share (of `members`) of the `unaligned` senders whose rail
 * the domain lacks, over the spine (oversub times slower). */
double mt_sim_hit(double c, double E, double x);
double mt_sim_recv(double h, double rail_senders, double rail_own, double unaligned, double members, double oversub);

/* plan_pack.c: global slot of each TP unit's first task, in rank order (malloc'd), NULL on error.  chain < 0:
 * the most local groups; chain = a domain with a tail: that tail starts a chain of domains giving up a
 * local group each (plan_objective.c); NULL with *rc 0 when no such chain exists. */
int *mt_plan_pack(const struct mt_job *job, const int *node_domain, int nd, const int *dunits, const int *first,
		  int T, int E, int chain, int *rc, char *err, size_t errlen);
/* plan_objective.c: with job->fabric known, the unit sequence (seq or a better one; seq is consumed)
 * whose slowest EP group is fastest under simulate's model; NULL on error. */
int *mt_plan_objective(const struct mt_job *job, const int *node_domain, int nd, const int *dunits, const int *first,
		       const int *slot_of, int T, int E, int *seq, int *rc, char *err, size_t errlen);
/* plan_bind.c: a node model holds the node's tasks (one GPU each when it has GPUs); err names the node. */
int mt_plan_check_gpus(const char *node, int tasks, const struct mt_node *m, char *err, size_t errlen);
/* plan_bind.c: fills ranks, bindings, groups and summary of p from the packed order. */
int mt_plan_fill(const struct mt_job *job, struct mt_plan *p, const int *seq, const int *first, const int *slot_of,
		 int T, int E, int D, char *err, size_t errlen);

#endif
