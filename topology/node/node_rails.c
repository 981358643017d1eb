/* node_rails.c - GPU -> RDMA NIC assignment by PCIe closeness, and rail numbering.
 *
 * Rails must be the same on every node with the same PCI layout, whatever the kernel's mlx5_N
 * numbering, so everything here is ordered by PCI bus id and GPU order, never by NIC name:
 *  1. each RDMA NIC goes to the closest supported GPU that holds fewer than ceil(NICs/GPUs) NICs,
 *     relation level by level (PIX first), most constrained NICs first, then PCI order; ties go to
 *     the GPU with fewest NICs, then the lowest; so every GPU gets distinct NICs when there are enough;
 *  2. with fewer NICs than GPUs, a GPU left without one shares its closest NIC, the least shared first;
 *  3. a GPU's rail is numbered by its primary (closest) NIC, in order of the first GPU using it;
 *     a NIC takes the rail of the GPUs it serves, -1 when it serves none.
 * The NICs are then put in rail order (RDMA first), plain NICs last, each group by PCI bus id.
 */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

static int nic_pci_cmp(const void *x, const void *y, void *ctx)
{
	const struct mt_node *n = ctx;
	const struct mt_nic *a = &n->nics[*(const int *)x], *b = &n->nics[*(const int *)y];
	if (a->rdma != b->rdma)
		return a->rdma ? -1 : 1;
	if (a->rdma && a->rail != b->rail) { /* rail order, NICs without a rail after */
		if (a->rail < 0 || b->rail < 0)
			return a->rail < 0 ? 1 : -1;
		return a->rail < b->rail ? -1 : 1;
	}
	long long ka = mt_pci_key(a->pci), kb = mt_pci_key(b->pci);
	if (ka != kb)
		return ka < kb ? -1 : 1;
	int c = strcmp(a->name, b->name);
	return c ? c : (*(const int *)x > *(const int *)y) - (*(const int *)x < *(const int *)y);
}

/* Reorders n->nics by `order` (new position -> old index), remapping pcie columns and GPU NIC lists. */
static int permute_nics(struct mt_node *n, const int *order)
{
	int G = n->n_gpus, N = n->n_nics, cols = G + N;
	if (N == 0)
		return MT_OK; /* nothing to move, and n->nics may be NULL (memcpy into NULL is undefined) */
	struct mt_nic *nics = malloc((size_t)(N ? N : 1) * sizeof(*nics));
	int *inv = malloc((size_t)(N ? N : 1) * sizeof(int));
	enum mt_rel *row = malloc((size_t)(N ? N : 1) * sizeof(*row));
	if (!nics || !inv || !row) {
		free(nics), free(inv), free(row);
		return MT_ENOMEM;
	}
	for (int i = 0; i < N; i++) {
		nics[i] = n->nics[order[i]];
		inv[order[i]] = i;
	}
	memcpy(n->nics, nics, (size_t)N * sizeof(*nics));
	for (int g = 0; g < G; g++) {
		for (int i = 0; i < N; i++)
			row[i] = n->pcie[g * cols + G + order[i]];
		memcpy(&n->pcie[g * cols + G], row, (size_t)N * sizeof(*row));
		for (int k = 0; k < n->gpus[g].n_nics; k++)
			n->gpus[g].nics[k] = inv[n->gpus[g].nics[k]];
	}
	free(nics), free(inv), free(row);
	return MT_OK;
}

int mt_node_finish(struct mt_node *n, char *err, size_t errlen)
{
	int G = n->n_gpus, N = n->n_nics, cols = G + N;
	int *order = malloc((size_t)(N ? N : 1) * sizeof(int));
	int *ncand = calloc((size_t)(N ? N : 1), sizeof(int));
	int *users = calloc((size_t)(N ? N : 1), sizeof(int));
	int rc = MT_OK;
	if (!order || !ncand || !users) {
		rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
		goto out;
	}
	for (int g = 0; g < G; g++) {
		n->gpus[g].n_nics = 0;
		n->gpus[g].rail = -1;
	}
	for (int c = 0; c < N; c++)
		n->nics[c].rail = -1;
	/* PCI order first (rail = -1 everywhere, so rdma then PCI) */
	for (int c = 0; c < N; c++)
		order[c] = c;
	qsort_r(order, (size_t)N, sizeof(int), nic_pci_cmp, n);
	if ((rc = permute_nics(n, order)) < 0) {
		rc = mt_seterr(err, errlen, rc, "out of memory");
		goto out;
	}
	int nr = 0, ng = 0;
	for (int c = 0; c < N && n->nics[c].rdma; c++)
		nr++;
	for (int g = 0; g < G; g++)
		ng += n->gpus[g].supported;
	if (!nr || !ng)
		goto renumber;
	int cap = (nr + ng - 1) / ng;
	if (cap > MT_MAX_GPU_NICS)
		cap = MT_MAX_GPU_NICS;
#define REL(g, c) ((int)n->pcie[(g) * cols + G + (c)])
	/* 1. NIC-centric balanced assignment */
	for (int c = 0; c < nr; c++) {
		int best = MT_REL_UNKNOWN + 1;
		for (int g = 0; g < G; g++)
			if (n->gpus[g].supported && REL(g, c) < best)
				best = REL(g, c), ncand[c] = 0;
		for (int g = 0; g < G; g++)
			ncand[c] += n->gpus[g].supported && REL(g, c) == best;
		order[c] = c;
	}
	for (int i = 1; i < nr; i++) /* stable insertion sort: fewest candidates first */
		for (int j = i; j > 0 && ncand[order[j - 1]] > ncand[order[j]]; j--) {
			int t = order[j];
			order[j] = order[j - 1], order[j - 1] = t;
		}
	/* level by level, so that a NIC only goes farther once every closer GPU is full */
	for (int lvl = MT_REL_X; lvl <= MT_REL_UNKNOWN; lvl++)
		for (int i = 0; i < nr; i++) {
			int c = order[i], pick = -1;
			if (users[c])
				continue;
			for (int g = 0; g < G; g++) {
				struct mt_gpu *q = &n->gpus[g];
				if (!q->supported || q->n_nics >= cap || REL(g, c) > lvl)
					continue;
				if (pick < 0 || REL(g, c) < REL(pick, c) ||
				    (REL(g, c) == REL(pick, c) && q->n_nics < n->gpus[pick].n_nics))
					pick = g;
			}
			if (pick < 0)
				continue;
			n->gpus[pick].nics[n->gpus[pick].n_nics++] = c;
			users[c]++;
		}
	/* 2. GPUs without a NIC share the closest, least shared one */
	for (int g = 0; g < G; g++) {
		struct mt_gpu *q = &n->gpus[g];
		if (!q->supported || q->n_nics)
			continue;
		int pick = 0;
		for (int c = 1; c < nr; c++)
			if (REL(g, c) < REL(g, pick) || (REL(g, c) == REL(g, pick) && users[c] < users[pick]))
				pick = c;
		q->nics[q->n_nics++] = pick;
		users[pick]++;
	}
	/* closest first within a GPU, then PCI order */
	for (int g = 0; g < G; g++) {
		struct mt_gpu *q = &n->gpus[g];
		for (int i = 1; i < q->n_nics; i++)
			for (int j = i; j > 0; j--) {
				int a = q->nics[j - 1], b = q->nics[j];
				if (REL(g, a) < REL(g, b) || (REL(g, a) == REL(g, b) && a < b))
					break;
				q->nics[j - 1] = b, q->nics[j] = a;
			}
	}
	/* 3. rails by primary NIC, in GPU order */
	int rails = 0;
	for (int g = 0; g < G; g++) {
		struct mt_gpu *q = &n->gpus[g];
		if (!q->n_nics)
			continue;
		int p = q->nics[0];
		if (n->nics[p].rail < 0)
			n->nics[p].rail = rails++;
		q->rail = n->nics[p].rail;
	}
	for (int g = 0; g < G; g++)
		for (int k = 1; k < n->gpus[g].n_nics; k++)
			if (n->nics[n->gpus[g].nics[k]].rail < 0)
				n->nics[n->gpus[g].nics[k]].rail = n->gpus[g].rail;
#undef REL
renumber:
	for (int c = 0; c < N; c++)
		order[c] = c;
	qsort_r(order, (size_t)N, sizeof(int), nic_pci_cmp, n);
	if ((rc = permute_nics(n, order)) < 0)
		rc = mt_seterr(err, errlen, rc, "out of memory");
out:
	free(order);
	free(ncand);
	free(users);
	return rc;
}
