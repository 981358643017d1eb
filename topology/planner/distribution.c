/* distribution.c - how Slurm spreads a step's tasks over its nodes: the tasks-per-node syntax of
 * SLURM_STEP_TASKS_PER_NODE and the task ids (SLURM_PROCID) each node holds under -m block or -m cyclic.
 * The plugin, the Slurm-mode launcher and `moetopo plan --distribution` all read them here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

int mt_tasks_per_node_parse(const char *text, int n_nodes, int **tasks, char *err, size_t errlen)
{
	int *t = calloc(n_nodes > 0 ? (size_t)n_nodes : 1, sizeof(*t)), n = 0;
	const char *p = text ? text : "";

	*tasks = NULL;
	if (!t)
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	while (*p) {
		char *end;
		long count = strtol(p, &end, 10), rep = 1;
		if (end == p || *p < '0' || *p > '9' || count < 0 || count > 100000)
			goto bad;
		p = end;
		if (!strncmp(p, "(x", 2)) {
			rep = strtol(p + 2, &end, 10);
			if (end == p + 2 || *end != ')' || rep < 1 || rep > n_nodes)
				goto bad;
			p = end + 1;
		}
		for (long i = 0; i < rep; i++) {
			if (n >= n_nodes)
				goto bad;
			t[n++] = (int)count;
		}
		if (*p == ',' && p[1])
			p++;
		else if (*p)
			goto bad;
	}
	if (n != n_nodes)
		goto bad;
	*tasks = t;
	return 0;
bad:
	free(t);
	return mt_seterr(err, errlen, MT_EINVAL, "cannot read tasks per node '%.200s' for %d nodes (valid: counts "
			 "such as 4,2 or 4(x3),2)", text ? text : "", n_nodes);
}

int mt_dist_parse(const char *text, enum mt_dist *d, char *err, size_t errlen)
{
	/* Slurm writes the node level first ("cyclic:block", "block:cyclic,Pack"): that part places tasks on
	 * nodes; the rest orders CPUs inside a node, which the plan's own binding replaces */
	size_t l = text ? strcspn(text, ":,") : 0;

	if (l == 5 && !strncmp(text, "block", 5))
		*d = MT_DIST_BLOCK;
	else if (l == 6 && !strncmp(text, "cyclic", 6))
		*d = MT_DIST_CYCLIC;
	else
		return mt_seterr(err, errlen, MT_EINVAL, "task distribution '%.60s' is not supported (valid: block, "
				 "cyclic)", text ? text : "");
	return 0;
}

void mt_procids_free(int **ids, int n_nodes)
{
	for (int i = 0; ids && i < n_nodes; i++)
		free(ids[i]);
	free(ids);
}

/* block: node order, then local order.  cyclic: task k goes to the next node (round robin) that still
 * has room, which is what Slurm does when the nodes' task counts differ. */
int **mt_dist_procids(enum mt_dist d, const int *tasks, int n_nodes)
{
	int **ids = calloc(n_nodes > 0 ? (size_t)n_nodes : 1, sizeof(*ids));
	int *fill = calloc(n_nodes > 0 ? (size_t)n_nodes : 1, sizeof(*fill)), node = 0;
	long world = 0;

	if (!ids || !fill)
		goto fail;
	for (int i = 0; i < n_nodes; i++) {
		if (tasks[i] < 0 || !(ids[i] = calloc(tasks[i] > 0 ? (size_t)tasks[i] : 1, sizeof(**ids))))
			goto fail;
		world += tasks[i];
	}
	for (long k = 0; k < world; k++) {
		if (d == MT_DIST_BLOCK) {
			while (fill[node] >= tasks[node])
				node++;
		} else {
			while (fill[node] >= tasks[node])
				node = (node + 1) % n_nodes;
		}
		ids[node][fill[node]++] = (int)k;
		if (d == MT_DIST_CYCLIC)
			node = (node + 1) % n_nodes;
	}
	free(fill);
	return ids;
fail:
	mt_procids_free(ids, n_nodes);
	free(fill);
	return NULL;
}
