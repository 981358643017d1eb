/* layout.c - the pure parts of reading a step's layout: Slurm's tasks-per-node syntax, the task ids of a
 * cyclic distribution, and which node names may become part of a file name.  No Slurm calls here, so the
 * unit tests exercise them directly.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

int mtp_tasks_per_node_parse(const char *text, int n_nodes, int **tasks, char *err, size_t errlen)
{
	int *t = calloc(n_nodes > 0 ? n_nodes : 1, sizeof *t), n = 0;
	const char *p = text;

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while (*p) {
		char *end;
		long count = strtol(p, &end, 10), rep = 1;
		if (end == p || count < 0 || count > 100000)
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
		if (*p == ',')
			p++;
		else if (*p)
			goto bad;
	}
	if (n != n_nodes)
		goto bad;
	*tasks = t;
	return 0;
bad:
	snprintf(err, errlen, "cannot read SLURM_STEP_TASKS_PER_NODE='%s' for %d nodes", text, n_nodes);
	free(t);
	return -1;
}

/* A node name becomes part of a file name (topology=.../%n.xml): letters, digits, '.', '-', '_' only. */
bool mtp_node_name_ok(const char *s)
{
	if (!*s || *s == '.' || strlen(s) >= MT_NAME_LEN)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* Cyclic over nodes: procid k goes to the next node (round robin) that still has room. */
int **mtp_cyclic_procids(const int *tasks, int n_nodes, int world)
{
	int **ids = calloc(n_nodes, sizeof *ids), *fill = calloc(n_nodes, sizeof *fill), node = 0;

	if (!ids || !fill)
		goto fail;
	for (int i = 0; i < n_nodes; i++)
		if (!(ids[i] = calloc(tasks[i] > 0 ? tasks[i] : 1, sizeof **ids)))
			goto fail;
	for (int k = 0; k < world; k++) {
		int tries = 0;
		while (fill[node] >= tasks[node] && tries++ < n_nodes)
			node = (node + 1) % n_nodes;
		if (fill[node] >= tasks[node])
			goto fail;   /* more tasks than the nodes hold: never write past a node's list */
		ids[node][fill[node]++] = k;
		node = (node + 1) % n_nodes;
	}
	free(fill);
	return ids;
fail:
	for (int i = 0; ids && i < n_nodes; i++)
		free(ids[i]);
	free(ids);
	free(fill);
	return NULL;
}

/* GRES indices come from the job's environment: small non-negative integers, each GPU once (a repeat
 * would give two ranks one GPU and leave another idle). */
int mtp_gpu_indices(char *const *tokens, int n, int *index, char *err, size_t errlen)
{
	for (int i = 0; i < n; i++) {
		const char *s = tokens[i];
		char *end;
		long v = isdigit((unsigned char)*s) ? strtol(s, &end, 10) : -1;

		if (v < 0 || *end || v > 1023) {
			snprintf(err, errlen, "GPU '%.40s' is not a device index 0-1023 (UUID and MIG lists are not "
				 "supported)", s);
			return -1;
		}
		for (int j = 0; j < i; j++)
			if (index[j] == v) {
				snprintf(err, errlen, "GPU %ld is listed twice", v);
				return -1;
			}
		index[i] = (int)v;
	}
	return 0;
}
