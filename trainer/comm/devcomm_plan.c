/* devcomm_plan.c - the order of a device combine's additions (struct tr_dsum_plan, devcomm.h), built on
 * the host from the keys and the node of each source rank, and its arithmetic on the host: the device
 * kernel (devcomm_kernels.cu) does the same additions, so a GPU combine has tr_alltoallv_sum_f32's bits
 * and the CPU tests can check the plan against the transports' own sums.
 */
#include <stdlib.h>
#include <string.h>

#include "devcomm.h"

static int grow(void **p, size_t *cap, size_t want, size_t esz)
{
	if (want <= *cap && *p)
		return 0;
	void *q = realloc(*p, (want ? want : 1) * esz);
	if (!q)
		return -1;
	*p = q;
	*cap = want;
	return 0;
}

int tr_dsum_plan_build(struct tr_dsum_plan *pl, const int *node, int P, const size_t *rb, const size_t *ro,
		       size_t row_bytes, const int *key, int nkeys)
{
	size_t rows = 0, fcap = pl->cap;
	int nodes = 0;
	for (int p = 0; p < P; p++) {
		rows += rb[p] / row_bytes;
		nodes = node[p] + 1 > nodes ? node[p] + 1 : nodes;
	}
	/* row and first share one capacity: grow row first, then first to the same */
	if (nkeys < 0 || grow((void **)&pl->row, &fcap, rows, sizeof(int)) ||
	    (fcap = pl->cap, grow((void **)&pl->first, &fcap, rows, 1)) ||
	    grow((void **)&pl->start, &pl->kcap, (size_t)nkeys + 1, sizeof(int)))
		return -1;
	pl->cap = fcap;
	int *last = malloc(sizeof(int) * (size_t)(nkeys ? nkeys : 1));
	if (!last)
		return -1;
	/* rows per key, then every key's rows in (node, rank, row) order */
	memset(pl->start, 0, sizeof(int) * ((size_t)nkeys + 1));
	for (int p = 0; p < P; p++)
		for (size_t i = ro[p] / row_bytes; i < (ro[p] + rb[p]) / row_bytes; i++) {
			if (key[i] < 0 || key[i] >= nkeys) {
				free(last);
				return -1;
			}
			pl->start[key[i] + 1]++;
		}
	for (int k = 0; k < nkeys; k++) {
		pl->start[k + 1] += pl->start[k];
		last[k] = -1;
	}
	int *at = malloc(sizeof(int) * (size_t)(nkeys ? nkeys : 1));
	if (!at) {
		free(last);
		return -1;
	}
	memcpy(at, pl->start, sizeof(int) * (size_t)nkeys);
	for (int n = 0; n < nodes; n++)
		for (int p = 0; p < P; p++) {
			if (node[p] != n)
				continue;
			for (size_t i = ro[p] / row_bytes; i < (ro[p] + rb[p]) / row_bytes; i++) {
				int k = key[i], j = at[k]++;
				pl->row[j] = (int)i;
				pl->first[j] = last[k] != n;
				last[k] = n;
			}
		}
	free(at);
	free(last);
	pl->nkeys = nkeys;
	pl->rows = rows;
	return 0;
}

void tr_dsum_plan_free(struct tr_dsum_plan *pl)
{
	free(pl->start), free(pl->row), free(pl->first);
	memset(pl, 0, sizeof(*pl));
}

void tr_dsum_plan_apply(const struct tr_dsum_plan *pl, const float *recv, float *sum, size_t D)
{
	for (int k = 0; k < pl->nkeys; k++)
		for (size_t d = 0; d < D; d++) {
			int a = pl->start[k], b = pl->start[k + 1], have = 0;
			float t = 0, s = 0;
			for (int j = a; j < b; j++) {
				float v = recv[(size_t)pl->row[j] * D + d];
				if (!pl->first[j]) {
					s += v;
					continue;
				}
				if (j > a) { /* a node's run ends: into the total, the first one copied */
					t = have ? t + s : s;
					have = 1;
				}
				s = v;
			}
			if (b > a)
				t = have ? t + s : s;
			sum[(size_t)k * D + d] = t;
		}
}
