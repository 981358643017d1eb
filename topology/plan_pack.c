/* plan_pack.c - packs TP units (tp consecutive tasks of one node) into EP blocks of ep units.
 *
 * Each NVLink domain first gives floor(units/ep) whole blocks from the front of its unit list: that
 * count is the most NVLink-local blocks any layout can have.  The leftover tails (each shorter than
 * a block) are then combined, largest first; a tail that completes the block exactly is preferred,
 * then the largest that still fits, and only when nothing fits is one tail split.  This keeps the
 * leftover blocks to as few domains as the greedy can find, in O(units + ep) with count buckets.
 */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

struct piece {
	int d, start, cnt;
};

static int piece_cmp(const void *a, const void *b)
{
	const struct piece *x = a, *y = b;
	return (x->d > y->d) - (x->d < y->d);
}

int *mt_plan_pack(const struct mt_job *job, const int *node_domain, int nd, const int *dunits, const int *first,
		  int T, int E, int *rc, char *err, size_t errlen)
{
	int U = 0;
	for (int d = 0; d < nd; d++)
		U += dunits[d];
	int *dstart = malloc(sizeof(int) * (size_t)(nd + 1));
	int *fill = malloc(sizeof(int) * (size_t)nd);
	int *dlist = malloc(sizeof(int) * (size_t)U);
	int *seq = malloc(sizeof(int) * (size_t)U);
	int *head = malloc(sizeof(int) * (size_t)E);
	int *next = malloc(sizeof(int) * (size_t)nd);
	int *rem = malloc(sizeof(int) * (size_t)nd);
	int *pos = malloc(sizeof(int) * (size_t)nd);
	struct piece *pieces = malloc(sizeof(*pieces) * (size_t)E);
	int n = 0;
	if (!dstart || !fill || !dlist || !seq || !head || !next || !rem || !pos || !pieces) {
		*rc = mt_plan_err(err, errlen, MT_ENOMEM, "out of memory packing EP groups");
		goto fail;
	}
	/* counting sort of units by domain, keeping Slurm's node order inside a domain */
	dstart[0] = 0;
	for (int d = 0; d < nd; d++)
		dstart[d + 1] = dstart[d] + dunits[d];
	memcpy(fill, dstart, sizeof(int) * (size_t)nd);
	for (int i = 0; i < job->n_nodes; i++) {
		int d = node_domain[i];
		for (int u = 0; u < job->tasks[i] / T; u++)
			dlist[fill[d]++] = first[i] + u * T;
	}
	/* whole blocks inside each domain */
	for (int d = 0; d < nd; d++) {
		int whole = dunits[d] / E * E;
		memcpy(seq + n, dlist + dstart[d], sizeof(int) * (size_t)whole);
		n += whole;
		pos[d] = dstart[d] + whole;
		rem[d] = dunits[d] - whole;
	}
	/* leftover tails in buckets by size; pushed in descending domain order so the lowest pops first */
	for (int c = 0; c < E; c++)
		head[c] = -1;
	for (int d = nd - 1; d >= 0; d--)
		if (rem[d]) {
			next[d] = head[rem[d]];
			head[rem[d]] = d;
		}
	int top = E - 1;
	while (n < U) {
		int np = 0, need = E, d;
		while (top > 0 && head[top] < 0)
			top--;
		if (top <= 0)
			break; /* cannot happen: leftovers always sum to whole blocks */
		d = head[top];
		head[top] = next[d];
		pieces[np++] = (struct piece){d, pos[d], rem[d]};
		need -= rem[d];
		rem[d] = 0;
		int scan = need - 1;
		while (need > 0) {
			int c = need;
			if (head[c] < 0) {
				if (scan >= need)
					scan = need - 1;
				while (scan > 0 && head[scan] < 0)
					scan--;
				c = scan;
			}
			if (c > 0) { /* a whole tail that fits */
				d = head[c];
				head[c] = next[d];
				pieces[np++] = (struct piece){d, pos[d], c};
				rem[d] = 0;
				need -= c;
				continue;
			}
			/* nothing fits: split the largest tail, its rest goes back to the buckets */
			while (top > 0 && head[top] < 0)
				top--;
			if (top <= need)
				break;
			d = head[top];
			head[top] = next[d];
			pieces[np++] = (struct piece){d, pos[d], need};
			pos[d] += need;
			rem[d] -= need;
			next[d] = head[rem[d]];
			head[rem[d]] = d;
			need = 0;
		}
		if (need > 0)
			break;
		qsort(pieces, (size_t)np, sizeof(*pieces), piece_cmp);
		for (int k = 0; k < np; k++) {
			memcpy(seq + n, dlist + pieces[k].start, sizeof(int) * (size_t)pieces[k].cnt);
			n += pieces[k].cnt;
		}
	}
	if (n != U) {
		*rc = mt_plan_err(err, errlen, MT_EIMPOSSIBLE, "internal error: packed %d of %d units", n, U);
		goto fail;
	}
	goto out;
fail:
	free(seq);
	seq = NULL;
out:
	free(dstart);
	free(fill);
	free(dlist);
	free(head);
	free(next);
	free(rem);
	free(pos);
	free(pieces);
	return seq;
}
