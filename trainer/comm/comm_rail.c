/* comm_rail.c - the rail-aligned two-stage all-to-all-v and the per-communicator node layout and
 * cross-node byte counters behind it (doc/launcher.md, "Rail-aligned all-to-all").
 *
 * The plan puts local rank i of every node on rail i.  In rail mode a row from (node a, local i) to
 * (node n, local j) goes first across the network to the rail peer (n, i) - the same local rank - and
 * that peer forwards it inside node n to j; rows for this node go straight over the node's transport.
 * Cross-node traffic then never leaves its rail.  Keyed rows (tr_alltoallv_keyed: one token bound for
 * several experts) cross to a node once, with the list of places they go; the rail peer expands them
 * before forwarding, so the receiver gets exactly the bytes tr_alltoallv would give it, in the same
 * places.  Both stages are ordinary collectives on two sub-communicators (same local rank; same
 * node), so this works over any transport pair.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_rail.h"

int tr_a2a_mode_parse(const char *v, enum tr_a2a_mode *m, char *err, size_t errlen)
{
	if (!v || !*v || !strcmp(v, "auto"))
		*m = TR_A2A_AUTO;
	else if (!strcmp(v, "direct"))
		*m = TR_A2A_DIRECT;
	else if (!strcmp(v, "rail"))
		*m = TR_A2A_RAIL;
	else {
		snprintf(err, errlen, "MOE_A2A='%s' is not an all-to-all mode (valid: direct, rail, auto)", v);
		return -1;
	}
	return 0;
}

struct tr_rail *tr_rail_new(const struct tr_comm *c)
{
	int n = tr_comm_size(c);
	struct tr_rail *r = calloc(1, sizeof(*r));
	if (!r || !(r->node = malloc(n * sizeof(int))) || !(r->lrank = malloc(n * sizeof(int)))) {
		tr_rail_free(r);
		return NULL;
	}
	int *count = calloc(n, sizeof(int)), *first = malloc(n * sizeof(int));
	if (!count || !first) {
		free(count), free(first);
		tr_rail_free(r);
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		const char *h = tr_comm_member_host(c, i);
		int k = 0;
		while (k < r->nodes && strcmp(tr_comm_member_host(c, first[k]), h))
			k++;
		if (k == r->nodes)
			first[r->nodes++] = i;
		r->node[i] = k;
		r->lrank[i] = count[k]++;
		if (count[k] > r->max_local)
			r->max_local = count[k];
	}
	r->local_size = r->max_local;
	for (int k = 0; k < r->nodes; k++)
		if (count[k] != r->max_local)
			r->local_size = 0;
	free(count), free(first);
	r->to_local = calloc(r->max_local, sizeof(uint64_t));
	if (!r->to_local || (r->local_size && !(r->rank_of = malloc((size_t)n * sizeof(int))))) {
		tr_rail_free(r);
		return NULL;
	}
	for (int i = 0; r->local_size && i < n; i++)
		r->rank_of[r->node[i] * r->local_size + r->lrank[i]] = i;
	return r;
}

void tr_rail_free(struct tr_rail *r)
{
	if (!r)
		return;
	tr_comm_free(r->intra);
	tr_comm_free(r->rail);
	for (int i = 0; i < TR_RAIL_BUFS; i++)
		free(r->buf[i]);
	free(r->node), free(r->lrank), free(r->rank_of), free(r->to_local);
	free(r);
}

bool tr_rail_possible(const struct tr_rail *r)
{
	return r->nodes > 1 && r->local_size > 0;
}

const char *tr_rail_layout_error(const struct tr_rail *r, const struct tr_comm *c, char *buf, size_t len)
{
	int a = 0, b = -1;
	for (int i = 0; i < tr_comm_size(c); i++)
		if (r->node[i] != r->node[a] && b < 0)
			b = i;
	int ca = 0, cb = 0;
	for (int i = 0; i < tr_comm_size(c); i++)
		ca += r->node[i] == r->node[a], cb += b >= 0 && r->node[i] == r->node[b];
	snprintf(buf, len, "MOE_A2A=rail needs the same number of ranks on every node, but %s runs %d and %s runs %d "
		 "(use MOE_A2A=direct)", tr_comm_member_host(c, a), ca, tr_comm_member_host(c, b < 0 ? a : b), cb);
	return buf;
}

int tr_rail_node(const struct tr_rail *r, int i)
{
	return r->node[i];
}

void tr_rail_count_direct(struct tr_rail *r, int me, const size_t *send_bytes, int size)
{
	for (int p = 0; p < size; p++) {
		if (r->node[p] == r->node[me])
			continue;
		r->to_local[r->lrank[p]] += send_bytes[p];
		r->cross += send_bytes[p];
		if (r->lrank[p] == r->lrank[me])
			r->on_rail += send_bytes[p];
	}
}

char *tr_rail_grow(struct tr_rail *r, int i, size_t len)
{
	if (r->cap[i] < len || !r->buf[i]) {
		char *p = realloc(r->buf[i], len + 1);
		if (!p)
			return NULL;
		r->buf[i] = p;
		r->cap[i] = len;
	}
	return r->buf[i];
}
/* collective: every member gets here in the same call */
int tr_rail_subs(struct tr_comm *c, struct tr_rail *r)
{
	int me = tr_comm_rank(c);
	if (r->rail)
		return 0;
	if (tr_comm_split(c, r->lrank[me], r->node[me], &r->rail) || tr_comm_split(c, r->node[me], r->lrank[me], &r->intra))
		return -1;
	tr_comm_set_direct(r->rail);
	tr_comm_set_direct(r->intra);
	return 0;
}

/* Stage-1 metadata per (source, destination node): the bytes for each local rank there, or with
 * keys the rows for each local rank and the distinct rows sent (RAW: no deduplication, which is
 * chosen when the index would cost more than the duplicates save). */
#define RAW UINT64_MAX

/* Builds the stage-1 block for node n at out (NULL: only sizes it); returns its length. */
static size_t pack_node(const struct tr_rail *r, int n, const char *send, const size_t *sb, const size_t *so,
			size_t row, const int *key, uint64_t *meta, char *out, int *seen_at, int *uidx)
{
	int L = r->local_size;
	size_t logical = 0, rows = 0;
	for (int j = 0; j < L; j++) {
		int d = r->rank_of[n * L + j];
		meta[j] = key ? sb[d] / row : sb[d];
		logical += sb[d];
		rows += key ? sb[d] / row : 0;
	}
	meta[L] = RAW;
	if (key && rows > 0) {
		/* distinct keys in order of first appearance; seen_at[k] holds the last block index */
		size_t uniq = 0, q = 0;
		for (int j = 0; j < L; j++) {
			int d = r->rank_of[n * L + j];
			for (size_t i = 0; i < sb[d] / row; i++, q++) {
				size_t ri = so[d] / row + i;
				int k = key[ri];
				int u = seen_at[2 * k] == n + 1 ? seen_at[2 * k + 1] : -1;
				if (u < 0) {
					u = (int)uniq++;
					seen_at[2 * k] = n + 1;
					seen_at[2 * k + 1] = u;
					if (out)
						memcpy(out + (size_t)u * row, send + ri * row, row);
				}
				uidx[q] = u;
			}
		}
		size_t packed = uniq * row + rows * sizeof(uint32_t);
		if (packed < logical) {
			meta[L] = uniq;
			if (out)
				for (size_t i = 0; i < rows; i++) {
					uint32_t v = (uint32_t)uidx[i];
					memcpy(out + uniq * row + i * sizeof(v), &v, sizeof(v));
				}
			return packed;
		}
	}
	if (out)
		for (int j = 0, o = 0; j < L; j++) {
			int d = r->rank_of[n * L + j];
			tr_rail_copy(out + o, send + so[d], sb[d]);
			o += sb[d];
		}
	return logical;
}

int tr_rail_alltoallv(struct tr_comm *c, struct tr_rail *r, const void *sendv, const size_t *sb, const size_t *so,
		      void *recvv, const size_t *rb, const size_t *ro, size_t row, const int *key, int nkeys)
{
	const char *send = sendv;
	char *recv = recvv;
	int me = tr_comm_rank(c), L = r->local_size, N = r->nodes, mynode = r->node[me], mine = r->lrank[me];
	if (tr_rail_subs(c, r))
		return -1;
	size_t M = (size_t)L + 1; /* metadata words per node */
	uint64_t *meta = calloc(2 * M * N + 2 * (size_t)L * N, sizeof(uint64_t)), *rmeta = meta + M * N;
	uint64_t *cnt = rmeta + M * N, *rcnt = cnt + (size_t)L * N;
	size_t *s1b = calloc(4 * (size_t)N + 4 * (size_t)L, sizeof(size_t));
	size_t rowsout = 0;
	if (key)
		for (int p = 0; p < tr_comm_size(c); p++)
			rowsout += sb[p] / row;
	int *seen_at = key ? malloc(2 * (size_t)(nkeys > 0 ? nkeys : 1) * sizeof(int)) : NULL;
	int *uidx = key ? malloc((rowsout + 1) * sizeof(int)) : NULL;
	int rc = -1;
	if (!meta || !s1b || (key && (!seen_at || !uidx))) {
		rc = tr_comm_fail(c, "out of memory for the rail all-to-all");
		goto out;
	}
	if (key)
		for (int k = 0; k < 2 * nkeys; k++)
			seen_at[k] = 0;
	size_t *s1o = s1b + N, *r1b = s1o + N, *r1o = r1b + N;
	/* stage 1: to the rail peer on every other node */
	size_t tot = 0;
	for (int n = 0; n < N; n++) {
		s1b[n] = n == mynode ? 0 : pack_node(r, n, send, sb, so, row, key, meta + M * n, NULL, seen_at, uidx);
		if (n == mynode)
			meta[M * n + L] = RAW;
		s1o[n] = tot;
		tot += s1b[n];
	}
	char *s1 = tr_rail_grow(r, 0, tot);
	if (!s1) {
		rc = tr_comm_fail(c, "out of memory for the rail all-to-all");
		goto out;
	}
	if (key)
		for (int k = 0; k < 2 * nkeys; k++)
			seen_at[k] = 0;
	for (int n = 0; n < N; n++)
		if (n != mynode)
			pack_node(r, n, send, sb, so, row, key, meta + M * n, s1 + s1o[n], seen_at, uidx);
	if (tr_alltoall(r->rail, meta, rmeta, M * sizeof(uint64_t)))
		goto subfail;
	size_t rtot = 0;
	for (int n = 0; n < N; n++) {
		const uint64_t *m = rmeta + M * n;
		size_t b = 0;
		if (n != mynode) {
			for (int j = 0; j < L; j++)
				b += m[L] == RAW ? (key ? m[j] * row : m[j]) : m[j] * sizeof(uint32_t);
			if (m[L] != RAW)
				b += m[L] * row;
		}
		r1b[n] = b;
		r1o[n] = rtot;
		rtot += b;
	}
	char *r1 = tr_rail_grow(r, 1, rtot);
	if (!r1) {
		rc = tr_comm_fail(c, "out of memory for the rail all-to-all");
		goto out;
	}
	if (tr_alltoallv(r->rail, s1, s1b, s1o, r1, r1b, r1o))
		goto subfail;
	for (int n = 0; n < N; n++) {
		if (n == mynode)
			continue;
		size_t b = s1b[n] + M * sizeof(uint64_t);
		r->cross += b, r->on_rail += b, r->to_local[mine] += b;
		size_t logical = 0;
		for (int j = 0; j < L; j++)
			logical += sb[r->rank_of[n * L + j]];
		r->dedup += logical - s1b[n];
	}

	/* stage 2: inside the node, to local rank j: what every node's rail-i rank sent j, in node order
	 * (this rank's own rows straight from the send buffer) */
	size_t *s2b = r1o + N, *s2o = s2b + L, *r2b = s2o + L, *r2o = r2b + L;
	tot = 0;
	size_t rt2 = 0;
	for (int j = 0; j < L; j++) {
		size_t b = 0, rbj = 0;
		for (int n = 0; n < N; n++) {
			b += n == mynode ? sb[r->rank_of[mynode * L + j]]
					 : (key ? rmeta[M * n + j] * row : rmeta[M * n + j]);
			rbj += rb[r->rank_of[n * L + j]];
		}
		s2b[j] = b, s2o[j] = tot, tot += b;
		r2b[j] = rbj, r2o[j] = rt2, rt2 += rbj;
	}
	/* every source's byte count first: a size mismatch is reported naming the sender, as direct
	 * mode does, instead of as a mismatch of some forwarded aggregate */
	for (int j = 0; j < L; j++)
		for (int n = 0; n < N; n++)
			cnt[j * N + n] = n == mynode ? sb[r->rank_of[mynode * L + j]]
						     : (key ? rmeta[M * n + j] * row : rmeta[M * n + j]);
	if (tr_alltoall(r->intra, cnt, rcnt, (size_t)N * sizeof(uint64_t)))
		goto subfail;
	for (int i = 0; i < L; i++)
		for (int n = 0; n < N; n++) {
			int src = r->rank_of[n * L + i];
			if (rcnt[i * N + n] != rb[src]) {
				rc = tr_comm_fail(c, "alltoallv: rank %d sent %llu bytes (via rank %d), rank %d expected %zu",
						  tr_comm_world_rank(c, src), (unsigned long long)rcnt[i * N + n],
						  tr_comm_world_rank(c, r->rank_of[mynode * L + i]), tr_comm_world_rank(c, me),
						  rb[src]);
				goto out;
			}
		}
	char *s2 = tr_rail_grow(r, 2, tot + rt2);
	if (!s2) {
		rc = tr_comm_fail(c, "out of memory for the rail all-to-all");
		goto out;
	}
	char *r2 = s2 + tot;
	/* walk every node's block: its part for local rank j follows the parts for 0..j-1 */
	for (int n = 0; n < N; n++) {
		const uint64_t *m = rmeta + M * n;
		const char *blk = r1 + r1o[n];
		size_t part = 0, uniq = m[L] == RAW ? 0 : m[L];
		const char *idxs = blk + uniq * row;
		for (int j = 0; j < L; j++) {
			size_t at = s2o[j];
			for (int nn = 0; nn < n; nn++)
				at += nn == mynode ? sb[r->rank_of[mynode * L + j]]
						   : (key ? rmeta[M * nn + j] * row : rmeta[M * nn + j]);
			if (n == mynode) {
				int d = r->rank_of[mynode * L + j];
				tr_rail_copy(s2 + at, send + so[d], sb[d]);
				continue;
			}
			if (m[L] == RAW) {
				size_t b = key ? m[j] * row : m[j];
				memcpy(s2 + at, blk + part, b);
				part += b;
			} else {
				for (uint64_t i = 0; i < m[j]; i++, part++) {
					uint32_t u;
					memcpy(&u, idxs + part * sizeof(u), sizeof(u));
					if (u >= uniq) {
						rc = tr_comm_fail(c, "rail all-to-all: rank %d sent a row index %u of %zu",
								  r->rank_of[n * L + mine], u, uniq);
						goto out;
					}
					memcpy(s2 + at + i * row, blk + (size_t)u * row, row);
				}
			}
		}
	}
	if (tr_alltoallv(r->intra, s2, s2b, s2o, r2, r2b, r2o))
		goto subfail;
	/* from local rank i: the rows of every node's rank i, in node order */
	for (int i = 0; i < L; i++)
		for (size_t n = 0, at = 0; n < (size_t)N; n++) {
			int src = r->rank_of[n * L + i];
			tr_rail_copy(recv + ro[src], r2 + r2o[i] + at, rb[src]);
			at += rb[src];
		}
	rc = 0;
	goto out;
subfail:
	rc = tr_comm_adopt_error(c, tr_comm_is_broken(r->rail) ? r->rail : r->intra);
out:
	free(meta), free(s1b), free(seen_at), free(uidx);
	return rc;
}

void tr_rail_stats(const struct tr_rail *r, int me, struct tr_a2a_stats *st)
{
	st->cross_bytes = r->cross;
	st->rail_bytes = r->on_rail;
	st->dedup_bytes = r->dedup;
	st->nodes = r->nodes;
	st->local_rank = r->lrank[me];
	st->local_size = r->max_local;
}

uint64_t tr_rail_to_local(const struct tr_rail *r, int lr)
{
	return lr >= 0 && lr < r->max_local ? r->to_local[lr] : 0;
}
