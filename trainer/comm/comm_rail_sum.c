/* comm_rail_sum.c - tr_alltoallv_sum_f32 / _f64, the combine: rows travel back as tr_alltoallv would move
 * them, and each receiver adds the rows of one key (token) into one sum row.
 *
 * The order of the additions is part of the contract, so every mode gives the same bits: the rows from
 * one node (its ranks in order, each one's rows in order) are summed per key first - the first row
 * copied, the next ones added - and those per-node sums are then added in node order.  Direct mode
 * receives every row and sums it so.  Rail mode has the rail peer on each node (the receiver's local
 * rank) form that node's sums from the rows its node-mates hand it over the node's transport, with the
 * row-to-sum index the receiver sent it, and only the sums cross the network: a token's expert outputs
 * on one node cross once.  Where the index would cost more than it saves (no key repeats) the rows
 * cross as they are and the receiver forms the same sums itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_rail.h"

#define RAW UINT64_MAX /* in the metadata: this node's rows cross unreduced */

/* a run of rows one node sends a receiver: at (NULL while not yet received) with their keys */
struct seg {
	const char *at;
	const int *key;
	size_t rows;
};

/* Numbers the distinct keys of a node's rows by first appearance: uidx[q] for row q, ukey[u] the key;
 * seen[2k] == stamp marks key k as numbered seen[2k + 1].  Returns the number of distinct keys. */
static size_t number_keys(const struct seg *sg, int nseg, int *seen, int stamp, uint32_t *uidx, int *ukey)
{
	size_t uniq = 0, q = 0;
	for (int s = 0; s < nseg; s++)
		for (size_t i = 0; i < sg[s].rows; i++, q++) {
			int k = sg[s].key[i];
			if (seen[2 * k] != stamp) {
				seen[2 * k] = stamp;
				seen[2 * k + 1] = (int)uniq;
				ukey[uniq++] = k;
			}
			uidx[q] = (uint32_t)seen[2 * k + 1];
		}
	return uniq;
}

/* the one addition every mode uses: dst = src for the first row of a sum, dst += src for the others
 * (rows of float, or of double when esz is 8) */
static void fold(char *dst, const char *src, size_t row, size_t esz, bool first)
{
	if (first) {
		memcpy(dst, src, row);
		return;
	}
	if (esz == sizeof(double)) {
		double *y = (double *)(void *)dst;
		const double *x = (const double *)(const void *)src;
		for (size_t d = 0; d < row / esz; d++)
			y[d] += x[d];
		return;
	}
	float *y = (float *)(void *)dst;
	const float *x = (const float *)(const void *)src;
	for (size_t d = 0; d < row / esz; d++)
		y[d] += x[d];
}

/* A node's per-key sums: P row u = the rows q with uidx[q] == u, in order.  have: uniq bytes scratch. */
static void node_sums(char *P, unsigned char *have, const struct seg *sg, int nseg, const uint32_t *uidx,
		      size_t uniq, size_t row, size_t esz)
{
	memset(have, 0, uniq);
	size_t q = 0;
	for (int s = 0; s < nseg; s++)
		for (size_t i = 0; i < sg[s].rows; i++, q++) {
			uint32_t u = uidx[q];
			fold(P + (size_t)u * row, sg[s].at + i * row, row, esz, !have[u]);
			have[u] = 1;
		}
}

/* adds a node's sums into the result, in node order (haveK: the keys some earlier node gave) */
static void add_node(char *sum, unsigned char *haveK, const char *P, size_t uniq, const int *ukey, size_t row,
		     size_t esz)
{
	for (size_t u = 0; u < uniq; u++) {
		int k = ukey[u];
		fold(sum + (size_t)k * row, P + u * row, row, esz, !haveK[k]);
		haveK[k] = 1;
	}
}

/* scratch of one call: numbering of every received row, per-node sums, flags */
struct work {
	int *seen, *ukey;
	uint32_t *uidx;
	unsigned char *have, *haveK;
	char *P;
	struct seg *sg;
};

static void work_free(struct work *w)
{
	free(w->seen), free(w->ukey), free(w->uidx), free(w->have), free(w->haveK), free(w->P), free(w->sg);
}

static int work_new(struct work *w, size_t rows, size_t maxnode_rows, int nkeys, int nseg, size_t row)
{
	memset(w, 0, sizeof(*w));
	size_t nk = nkeys > 0 ? (size_t)nkeys : 1;
	w->seen = calloc(2 * nk, sizeof(int));
	w->ukey = malloc((rows + 1) * sizeof(int));
	w->uidx = malloc((rows + 1) * sizeof(uint32_t));
	w->have = malloc(maxnode_rows + 1);
	w->haveK = calloc(nk, 1);
	w->P = malloc(maxnode_rows * row + 1);
	w->sg = malloc((size_t)(nseg > 0 ? nseg : 1) * sizeof(struct seg));
	if (w->seen && w->ukey && w->uidx && w->have && w->haveK && w->P && w->sg)
		return 0;
	work_free(w);
	return -1;
}

static int sum_direct(struct tr_comm *c, struct tr_rail *r, const void *send, const size_t *sb, const size_t *so,
		      char *sum, const size_t *rb, const size_t *ro, size_t row, size_t esz, int nkeys, const int *key)
{
	int P = tr_comm_size(c);
	size_t rt = 0, rows = 0, maxn = 0;
	for (int p = 0; p < P; p++)
		rt += rb[p];
	rows = rt / row;
	for (int n = 0; n < r->nodes; n++) {
		size_t nr = 0;
		for (int p = 0; p < P; p++)
			nr += r->node[p] == n ? rb[p] / row : 0;
		maxn = nr > maxn ? nr : maxn;
	}
	char *buf = tr_rail_grow(r, 3, rt);
	struct work w;
	if (!buf || work_new(&w, rows, maxn, nkeys, P, row))
		return tr_comm_fail(c, "out of memory for the combine");
	int rc = -1;
	if (tr_alltoallv(c, send, sb, so, buf, rb, ro))
		goto out;
	memset(sum, 0, (size_t)nkeys * row);
	for (int n = 0; n < r->nodes; n++) {
		int ns = 0;
		for (int p = 0; p < P; p++)
			if (r->node[p] == n)
				w.sg[ns++] = (struct seg){ buf + ro[p], key + ro[p] / row, rb[p] / row };
		size_t uniq = number_keys(w.sg, ns, w.seen, n + 1, w.uidx, w.ukey);
		node_sums(w.P, w.have, w.sg, ns, w.uidx, uniq, row, esz);
		add_node(sum, w.haveK, w.P, uniq, w.ukey, row, esz);
	}
	rc = 0;
out:
	work_free(&w);
	return rc;
}

int tr_rail_sum(struct tr_comm *c, struct tr_rail *r, bool rail, size_t esz, const void *send, const size_t *sb,
		const size_t *so, void *sumv, const size_t *rb, const size_t *ro, size_t row, const int *key, int nkeys)
{
	char *sum = sumv;
	if (!rail)
		return sum_direct(c, r, send, sb, so, sum, rb, ro, row, esz, nkeys, key);
	if (tr_rail_subs(c, r))
		return -1;
	int me = tr_comm_rank(c), L = r->local_size, N = r->nodes, mynode = r->node[me], mine = r->lrank[me];
	size_t M = (size_t)L + 1, rows = 0, maxn = 0;
	for (int n = 0; n < N; n++) {
		size_t nr = 0;
		for (int j = 0; j < L; j++)
			nr += rb[r->rank_of[n * L + j]] / row;
		rows += nr;
		maxn = nr > maxn ? nr : maxn;
	}
	/* per node: metadata out and in, then 8 size_t arrays of N and 4 of L */
	uint64_t *meta = calloc(2 * M * N + 2 * (size_t)L * N, sizeof(uint64_t)), *rmeta = meta + M * N;
	uint64_t *cnt = rmeta + M * N, *rcnt = cnt + (size_t)L * N;
	size_t *z = calloc(10 * (size_t)N + 4 * (size_t)L, sizeof(size_t));
	struct work w;
	if (!meta || !z || work_new(&w, rows, maxn, nkeys, L, row)) {
		free(meta), free(z);
		return tr_comm_fail(c, "out of memory for the combine");
	}
	size_t *ib = z, *io = ib + N, *rib = io + N, *rio = rib + N, *pb = rio + N, *po = pb + N, *rpb = po + N,
	       *rpo = rpb + N, *uniq = rpo + N, *first = uniq + N, *s2b = first + N, *s2o = s2b + L, *r2b = s2o + L,
	       *r2o = r2b + L;
	int rc = -1;

	/* A: number the rows every node will send me, and give each rail peer its index */
	size_t q = 0, itot = 0;
	for (int n = 0; n < N; n++) {
		size_t nr = 0;
		for (int j = 0; j < L; j++) {
			int p = r->rank_of[n * L + j];
			w.sg[j] = (struct seg){ NULL, key + ro[p] / row, rb[p] / row };
			meta[M * n + j] = rb[p] / row;
			nr += rb[p] / row;
		}
		first[n] = q;
		uniq[n] = number_keys(w.sg, L, w.seen, n + 1, w.uidx + q, w.ukey + q);
		bool indexed = n != mynode && uniq[n] < nr && uniq[n] * row + nr * sizeof(uint32_t) < nr * row;
		meta[M * n + L] = indexed ? uniq[n] : RAW;
		ib[n] = indexed ? nr * sizeof(uint32_t) : 0, io[n] = itot, itot += ib[n];
		rpb[n] = n == mynode ? 0 : indexed ? uniq[n] * row : nr * row;
		q += nr;
	}
	char *ix = tr_rail_grow(r, 3, itot);
	if (!ix)
		goto oom;
	for (int n = 0; n < N; n++)
		if (ib[n])
			tr_rail_copy(ix + io[n], w.uidx + first[n], ib[n]);
	if (tr_alltoall(r->rail, meta, rmeta, M * sizeof(uint64_t)))
		goto subfail;
	size_t ritot = 0;
	for (int a = 0; a < N; a++) {
		size_t nr = 0;
		for (int j = 0; j < L; j++)
			nr += rmeta[M * a + j];
		rib[a] = a != mynode && rmeta[M * a + L] != RAW ? nr * sizeof(uint32_t) : 0;
		rio[a] = ritot, ritot += rib[a];
	}
	char *rix = tr_rail_grow(r, 4, ritot);
	if (!rix)
		goto oom;
	if (tr_alltoallv(r->rail, ix, ib, io, rix, rib, rio))
		goto subfail;

	/* B: inside the node, every rank hands local rank i what it has for the rank i of every node,
	 * in node order; byte counts first, so a mismatch names the sender */
	for (int i = 0; i < L; i++)
		for (int a = 0; a < N; a++)
			cnt[i * N + a] = sb[r->rank_of[a * L + i]];
	if (tr_alltoall(r->intra, cnt, rcnt, (size_t)N * sizeof(uint64_t)))
		goto subfail;
	size_t t2 = 0, rt2 = 0;
	for (int j = 0; j < L; j++) {
		size_t b = 0, rbj = 0;
		for (int a = 0; a < N; a++) {
			int src = r->rank_of[mynode * L + j], dst = r->rank_of[a * L + mine];
			size_t want = a == mynode ? rb[src] : rmeta[M * a + j] * row;
			if (rcnt[j * N + a] != want) {
				rc = tr_comm_fail(c, "alltoallv: rank %d sent %llu bytes for rank %d, which expects %zu",
						  tr_comm_world_rank(c, src), (unsigned long long)rcnt[j * N + a],
						  tr_comm_world_rank(c, dst), want);
				goto out;
			}
			b += sb[r->rank_of[a * L + j]];
			rbj += want;
		}
		s2b[j] = b, s2o[j] = t2, t2 += b;
		r2b[j] = rbj, r2o[j] = rt2, rt2 += rbj;
	}
	char *s2 = tr_rail_grow(r, 5, t2 + rt2);
	if (!s2)
		goto oom;
	char *r2 = s2 + t2;
	for (int j = 0; j < L; j++)
		for (size_t a = 0, at = 0; a < (size_t)N; a++) {
			int d = r->rank_of[a * L + j];
			tr_rail_copy(s2 + s2o[j] + at, (const char *)send + so[d], sb[d]);
			at += sb[d];
		}
	if (tr_alltoallv(r->intra, s2, s2b, s2o, r2, r2b, r2o))
		goto subfail;

	/* C: as rail peer, this node's sums for the rank `mine` of every other node, which cross */
	size_t ptot = 0, most = maxn;
	for (int a = 0; a < N; a++) {
		size_t nr = 0;
		for (int j = 0; j < L; j++)
			nr += rmeta[M * a + j];
		if (a != mynode && rmeta[M * a + L] != RAW && rmeta[M * a + L] > nr) {
			rc = tr_comm_fail(c, "combine: rank %d claims %llu distinct rows of %zu",
					  tr_comm_world_rank(c, r->rank_of[a * L + mine]),
					  (unsigned long long)rmeta[M * a + L], nr);
			goto out;
		}
		pb[a] = a == mynode ? 0 : rmeta[M * a + L] == RAW ? nr * row : rmeta[M * a + L] * row;
		po[a] = ptot, ptot += pb[a];
		most = nr > most ? nr : most;
	}
	unsigned char *have = realloc(w.have, most + 1);
	if (!have)
		goto oom;
	w.have = have;
	size_t rptot = 0;
	for (int n = 0; n < N; n++)
		rpo[n] = rptot, rptot += rpb[n];
	char *blk = malloc(ptot + rptot + 1), *rp = blk ? blk + ptot : NULL;
	if (!blk)
		goto oom;
	/* where source node a's rows start in local rank j's part of r2 */
	for (int a = 0; a < N; a++) {
		if (a == mynode)
			continue;
		size_t nr = 0;
		for (int j = 0; j < L; j++) {
			size_t at = r2o[j];
			for (int aa = 0; aa < a; aa++)
				at += aa == mynode ? rb[r->rank_of[mynode * L + j]] : rmeta[M * aa + j] * row;
			w.sg[j] = (struct seg){ r2 + at, NULL, rmeta[M * a + j] };
			nr += rmeta[M * a + j];
		}
		if (rmeta[M * a + L] == RAW) {
			for (size_t j = 0, o = 0; j < (size_t)L; j++)
				tr_rail_copy(blk + po[a] + o, w.sg[j].at, w.sg[j].rows * row), o += w.sg[j].rows * row;
			continue;
		}
		const uint32_t *ui = (const uint32_t *)(const void *)(rix + rio[a]);
		for (size_t i = 0; i < nr; i++)
			if (ui[i] >= rmeta[M * a + L]) {
				free(blk);
				rc = tr_comm_fail(c, "combine: rank %d sent a row index %u of %llu",
						  tr_comm_world_rank(c, r->rank_of[a * L + mine]), ui[i],
						  (unsigned long long)rmeta[M * a + L]);
				goto out;
			}
		node_sums(blk + po[a], w.have, w.sg, L, ui, rmeta[M * a + L], row, esz);
	}
	if (tr_alltoallv(r->rail, blk, pb, po, rp, rpb, rpo)) {
		free(blk);
		goto subfail;
	}
	for (int n = 0; n < N; n++) {
		if (n == mynode)
			continue;
		/* this rank's index and metadata went out, the sums for the other node's rank `mine` too */
		size_t b = M * sizeof(uint64_t) + ib[n] + pb[n], nr = 0;
		r->cross += b, r->on_rail += b, r->to_local[mine] += b;
		for (int j = 0; j < L; j++)
			nr += meta[M * n + j];
		if (meta[M * n + L] != RAW)
			r->dedup += nr * row - uniq[n] * row - ib[n];
	}

	/* D: the per-node sums in node order; this node's and unreduced ones formed here */
	memset(sum, 0, (size_t)nkeys * row);
	for (int n = 0; n < N; n++) {
		if (n != mynode && meta[M * n + L] != RAW) {
			add_node(sum, w.haveK, rp + rpo[n], uniq[n], w.ukey + first[n], row, esz);
			continue;
		}
		for (size_t j = 0, o = 0; j < (size_t)L; j++) {
			size_t nr = meta[M * n + j], at = r2o[j];
			if (n == mynode) { /* this node's rows follow those forwarded for the nodes before it */
				for (int aa = 0; aa < mynode; aa++)
					at += rmeta[M * aa + j] * row;
				w.sg[j] = (struct seg){ r2 + at, NULL, nr };
			} else {
				w.sg[j] = (struct seg){ rp + rpo[n] + o, NULL, nr };
				o += nr * row;
			}
		}
		node_sums(w.P, w.have, w.sg, L, w.uidx + first[n], uniq[n], row, esz);
		add_node(sum, w.haveK, w.P, uniq[n], w.ukey + first[n], row, esz);
	}
	free(blk);
	rc = 0;
	goto out;
oom:
	rc = tr_comm_fail(c, "out of memory for the combine");
	goto out;
subfail:
	rc = tr_comm_adopt_error(c, tr_comm_is_broken(r->rail) ? r->rail : r->intra);
out:
	free(meta), free(z);
	work_free(&w);
	return rc;
}
