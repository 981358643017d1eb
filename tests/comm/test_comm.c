/* test_comm.c - the transports with real processes and sockets: the test plays moe-launch (listen
 * sockets + MOE_COMM_* env, or the MOE_MASTER_* rendezvous), forks the ranks, and every rank checks
 * each collective against values it computes itself.  Ranks report each check through a pipe; a
 * check passes when every rank passed it.  Then the failure paths: a rank killed with SIGKILL, a
 * silent rank, and a size mismatch must each give the others a clear error naming that rank.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <netinet/in.h>
#include <unistd.h>

#include "tap.h"
#include "comm.h"
#include "comm_internal.h"
#include "pretend_world.h"

static int report_fd;
/* Pretend nodes: rank r's host in the peer table is "node" + fake_nodes[r] (NULL: the real host), and
 * the transport the suite expects then. */
static const char *fake_nodes, *want_override;
static int rail_local;             /* M_RAIL: ranks per pretend node */
static const char *want_init_error; /* tr_comm_init must fail with this text */
static bool stall_last; /* the last rank stops itself before the failing call (see run_case) */
static size_t big_len = (5u << 20) + 12345; /* bigger than an shm ring (wraps and streams, so pieces land
					       unaligned) and than what shm receives with non-temporal stores */
static const char *cur_case;
static int cur_rank;

/* One line per rank and check: "case|check|ok|message". */
static void check(int ok, const char *name, const char *fmt, ...)
{
	char msg[300] = "", line[512];
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	int n = snprintf(line, sizeof(line), "%s|%s|%d|rank %d: %s\n", cur_case, name, ok ? 1 : 0, cur_rank, msg);
	if (write(report_fd, line, n) != n)
		_exit(99);
}

static unsigned char pat(int src, int dst, size_t i)
{
	return (unsigned char)(src * 31 + dst * 17 + i * 7 + (i >> 9));
}

static size_t a2a_len(int src, int dst, int size)
{
	if ((src + dst) % 3 == 2)
		return 0; /* some pairs send nothing */
	if (src == 0 && dst == size - 1)
		return big_len;
	return 1000u * (src + 1) + 10u * dst + 1;
}

static float fval(int r, size_t i)
{
	return (float)((r + 1) * 0.37) + (float)(i % 1000) * 1e-3f + (float)(i / 1000) * 1e-7f;
}

/* Pseudo-random per-peer sizes, the same on every rank: empty, 1 byte, odd lengths and messages of
 * several times a transport's window (MOE_IB_WINDOW in the verbs cases), different each round. */
static size_t rand_len(int src, int dst, int round)
{
	uint64_t h = ((uint64_t)src * 1000003u + dst * 7919u + round * 104729u + 12345) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	static const size_t pick[] = { 0, 1, 3, 4095, 65537, 3 * 65536 + 7 };
	return (h >> 8) % 3 ? pick[(h >> 16) % 6] : (size_t)((h >> 20) % 200000);
}

static void random_sizes(struct tr_comm *c)
{
	int me = tr_comm_rank(c), n = tr_comm_size(c), rc = 0, bad = -1, round;
	size_t *sb = calloc(n, sizeof(size_t)), *so = calloc(n, sizeof(size_t));
	size_t *rb = calloc(n, sizeof(size_t)), *ro = calloc(n, sizeof(size_t));
	for (round = 0; round < 6 && rc == 0 && bad < 0; round++) {
		size_t st = 0, rt = 0;
		for (int p = 0; p < n; p++) {
			sb[p] = rand_len(me, p, round);
			rb[p] = rand_len(p, me, round);
			so[p] = st + 1; /* unaligned offsets in both buffers */
			st += sb[p] + 1;
			ro[p] = rt + 3;
			rt += rb[p] + 3;
		}
		unsigned char *sbuf = malloc(st + 1), *rbuf = malloc(rt + 1);
		for (int p = 0; p < n; p++)
			for (size_t i = 0; i < sb[p]; i++)
				sbuf[so[p] + i] = pat(me, p, i + round);
		memset(rbuf, 0xee, rt + 1);
		rc = tr_alltoallv(c, sbuf, sb, so, rbuf, rb, ro);
		for (int p = 0; p < n && bad < 0 && rc == 0; p++)
			for (size_t i = 0; i < rb[p]; i++)
				if (rbuf[ro[p] + i] != pat(p, me, i + round)) {
					bad = p;
					break;
				}
		free(sbuf);
		free(rbuf);
	}
	check(rc == 0 && bad < 0, "alltoallv with random sizes per peer (0, 1 byte, unaligned, several windows)",
	      "round %d: rc %d (%s), first bad source %d", round - 1, rc, tr_comm_error(c), bad);
	free(sb);
	free(so);
	free(rb);
	free(ro);
}

static void suite(struct tr_comm *c, const char *want_kind)
{
	int me = tr_comm_rank(c), n = tr_comm_size(c);
	if (want_override)
		want_kind = want_override;
	else if (!strcmp(want_kind, "auto"))
		want_kind = "shm"; /* every rank of these tests is on this node */
	check(!strcmp(tr_comm_kind(c), want_kind), "kind", "kind %s, want %s", tr_comm_kind(c), want_kind);

	/* alltoallv: sizes and contents from the formula, including empty and multi-MiB messages */
	size_t *sb = calloc(n, sizeof(size_t)), *so = calloc(n, sizeof(size_t));
	size_t *rb = calloc(n, sizeof(size_t)), *ro = calloc(n, sizeof(size_t));
	size_t st = 0, rt = 0;
	for (int p = 0; p < n; p++) {
		sb[p] = a2a_len(me, p, n);
		so[p] = st;
		st += sb[p];
		rb[p] = a2a_len(p, me, n);
		ro[p] = rt;
		rt += rb[p];
	}
	unsigned char *sbuf = malloc(st + 1), *rbuf = malloc(rt + 1);
	for (int p = 0; p < n; p++)
		for (size_t i = 0; i < sb[p]; i++)
			sbuf[so[p] + i] = pat(me, p, i);
	memset(rbuf, 0xee, rt + 1);
	int rc = 0, bad = -1;
	for (int it = 0; it < 3 && rc == 0; it++)
		rc = tr_alltoallv(c, sbuf, sb, so, rbuf, rb, ro);
	for (int p = 0; p < n && bad < 0; p++)
		for (size_t i = 0; i < rb[p]; i++)
			if (rbuf[ro[p] + i] != pat(p, me, i)) {
				bad = p;
				break;
			}
	check(rc == 0 && bad < 0, "alltoallv delivers every byte to its place", "rc %d (%s), first bad source %d", rc,
	      tr_comm_error(c), bad);
	uint64_t want_bytes = 3 * (st - sb[me]);
	check(tr_comm_alltoall_bytes(c) == want_bytes, "alltoall_bytes counts bytes sent to others", "%llu, want %llu",
	      (unsigned long long)tr_comm_alltoall_bytes(c), (unsigned long long)want_bytes);
	free(sbuf);
	free(rbuf);
	random_sizes(c);

	/* alltoall of fixed records */
	uint64_t *s64 = malloc(n * 8), *r64 = malloc(n * 8);
	for (int p = 0; p < n; p++)
		s64[p] = (uint64_t)me * 1000 + p;
	rc = tr_alltoall(c, s64, r64, 8);
	bad = -1;
	for (int p = 0; p < n; p++)
		if (r64[p] != (uint64_t)p * 1000 + me)
			bad = p;
	check(rc == 0 && bad < 0, "alltoall", "rc %d bad %d", rc, bad);

	/* allgather */
	uint64_t mine = 0xabc000 + me;
	rc = tr_allgather(c, &mine, r64, 8);
	bad = -1;
	for (int p = 0; p < n; p++)
		if (r64[p] != 0xabc000u + p)
			bad = p;
	check(rc == 0 && bad < 0, "allgather", "rc %d bad %d", rc, bad);

	/* allreduce f32: bit-identical to the sum in rank order, on every rank */
	size_t nf = 300007;
	float *x = malloc(nf * sizeof(float));
	for (size_t i = 0; i < nf; i++)
		x[i] = fval(me, i);
	rc = tr_allreduce_f32(c, x, nf);
	size_t badi = SIZE_MAX;
	for (size_t i = 0; i < nf && badi == SIZE_MAX; i++) {
		float acc = fval(0, i);
		for (int r = 1; r < n; r++)
			acc += fval(r, i);
		if (memcmp(&acc, &x[i], sizeof(float)))
			badi = i;
	}
	check(rc == 0 && badi == SIZE_MAX, "allreduce_f32 equals the rank-order sum bit for bit", "rc %d (%s) bad index %zu",
	      rc, tr_comm_error(c), badi);
	/* every rank holds the same bits: compare a checksum of the result across ranks */
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < nf; i++) {
		uint32_t b;
		memcpy(&b, &x[i], 4);
		h = (h ^ b) * 1099511628211ull;
	}
	rc = tr_allgather(c, &h, r64, 8);
	bad = -1;
	for (int p = 0; p < n; p++)
		if (r64[p] != h)
			bad = p;
	check(rc == 0 && bad < 0, "allreduce_f32 result identical on all ranks", "rank %d differs", bad);
	free(x);

	/* allreduce f64 with fewer elements than ranks (empty chunks) */
	double d[2] = { me + 0.5, -me };
	rc = tr_allreduce_f64(c, d, 2);
	double w0 = 0, w1 = 0;
	for (int r = 0; r < n; r++) {
		w0 += r + 0.5;
		w1 += -r;
	}
	check(rc == 0 && d[0] == w0 && d[1] == w1, "allreduce_f64 with fewer elements than ranks", "%g %g want %g %g",
	      d[0], d[1], w0, w1);

	/* split: parity colors, reversed keys */
	struct tr_comm *sub = NULL;
	rc = tr_comm_split(c, me % 2, -me, &sub);
	int ok = rc == 0 && sub;
	if (ok) {
		int members = (n - me % 2 + 1) / 2, want_rank = 0;
		for (int r = me + 2; r < n; r += 2)
			want_rank++; /* higher ranks of my parity come first (key = -rank) */
		double v = me;
		ok = tr_comm_size(sub) == members && tr_comm_rank(sub) == want_rank && tr_allreduce_f64(sub, &v, 1) == 0;
		double want = 0;
		for (int r = me % 2; r < n; r += 2)
			want += r;
		ok = ok && v == want && tr_barrier(sub) == 0 && tr_barrier(c) == 0;
		check(ok, "split by color, ordered by key; sub and world interleave", "size %d rank %d sum %g want %g (%s)",
		      tr_comm_size(sub), tr_comm_rank(sub), v, want, tr_comm_error(sub));
		tr_comm_free(sub);
	} else {
		check(0, "split by color, ordered by key; sub and world interleave", "split failed: %s", tr_comm_error(c));
	}

	rc = 0;
	for (int i = 0; i < 200 && rc == 0; i++)
		rc = tr_barrier(c);
	check(rc == 0, "200 barriers", "%s", tr_comm_error(c));

	/* size mismatch: rank 0 expects one byte fewer from rank 1 than rank 1 sends */
	for (int p = 0; p < n; p++) {
		sb[p] = rb[p] = 16;
		so[p] = ro[p] = 16 * p;
	}
	if (me == 0)
		rb[1] = 15;
	if (stall_last && me == n - 1)
		raise(SIGSTOP); /* as if descheduled on a loaded machine until every other rank exited */
	char *buf1 = calloc(n, 16), *buf2 = calloc(n, 16);
	rc = tr_alltoallv(c, buf1, sb, so, buf2, rb, ro);
	if (me == 0)
		check(rc != 0 && strstr(tr_comm_error(c), "rank 1") && strstr(tr_comm_error(c), "sent 16 bytes"),
		      "a size mismatch is reported naming the sender", "rc %d: %s", rc, tr_comm_error(c));
	else /* rank 0's abort notice reaches everyone: they report its cause, not a hang or a timeout */
		check((rc != 0 || tr_barrier(c) != 0) && strstr(tr_comm_error(c), "rank 0 failed: ") &&
		      strstr(tr_comm_error(c), "sent 16 bytes"), "the other ranks learn why rank 0 gave up", "%s",
		      tr_comm_error(c));
	free(buf1);
	free(buf2);
	free(s64);
	free(r64);
	free(sb);
	free(so);
	free(rb);
	free(ro);
}

enum mode { M_SUITE, M_KILL, M_SILENT, M_RAIL, M_CHAIN };

/* Keys of the rows src sends dst in the keyed case: to the other node's local rank 0 a token twice
 * and another once, to its local rank 1 that other token again and a third; inside the node two
 * distinct ones (they never cross). */
static int rail_keys(int src, int dst, int L, int *k)
{
	if (src / L == dst / L)
		return k[0] = 0, k[1] = 3, 2;
	if (dst % L == 0)
		return k[0] = 0, k[1] = 1, k[2] = 0, 3;
	return k[0] = 1, k[1] = 2, 2;
}

static unsigned char key_pat(int src, int key, size_t i)
{
	return (unsigned char)(src * 13 + key * 101 + i * 3);
}

/* A combine row's float d from src to dst, the i-th row of key: full mantissas, magnitudes 2^-12 .. 2^12
 * of both signs, so the order of the additions shows in the bits. */
static float sum_val(int src, int dst, int key, int i, int d)
{
	uint32_t h = (uint32_t)(src * 73856093 ^ dst * 19349663 ^ key * 83492791 ^ i * 2654435761u ^ d * 40503);
	h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
	float v = ldexpf(1.0f + (float)(h & 0x7fffff) / 8388608.0f, (int)(h >> 23) % 25 - 12);
	return h & 0x40000000u ? v : -v;
}

/* tr_alltoallv_sum_f32, the combine, on the keyed layout (rows back to where the keyed rows came
 * from): the sums against the order written in comm.h computed here by hand, and the bytes.  Per other
 * node a receiver's 2L + 1 rows there hold 3 keys: in rail mode the rail peer sends 3 sums (48 bytes)
 * for the receiver's (L + 1)-word metadata and 4-byte row indexes. */
static void sum_case(struct tr_comm *c, int rail, int L)
{
	enum { F = 4, ROW = F * sizeof(float) };
	int me = tr_comm_rank(c), n = tr_comm_size(c), N = n / L, k[3], keys[64], nk = 0;
	size_t sb[16], so[16], rb[16], ro[16], st = 0, rt = 0;
	float snd[64 * F], sum[4 * F], want[4 * F], flat[4 * F];
	for (int p = 0; p < n; p++) {
		int m = rail_keys(p, me, L, k); /* what I send p: the rows p sent me, keyed by p */
		sb[p] = (size_t)m * ROW, so[p] = st;
		for (int i = 0; i < m; i++)
			for (int d = 0; d < F; d++)
				snd[st / sizeof(float) + (size_t)i * F + d] = sum_val(me, p, k[i], i, d);
		st += sb[p];
		m = rail_keys(me, p, L, k); /* what p sends me, on my keys */
		rb[p] = (size_t)m * ROW, ro[p] = rt, rt += rb[p];
		for (int i = 0; i < m; i++)
			keys[nk++] = k[i];
	}
	/* by hand: per node the rows in rank and row order, first one copied; then the nodes in order */
	unsigned char got[4] = { 0 }, gotn[4], gotf[4] = { 0 };
	float part[4 * F];
	for (int nd = 0; nd < N; nd++) {
		memset(gotn, 0, sizeof(gotn));
		for (int p = nd * L; p < (nd + 1) * L; p++) {
			int m = rail_keys(me, p, L, k);
			for (int i = 0; i < m; i++)
				for (int d = 0; d < F; d++) {
					float v = sum_val(p, me, k[i], i, d);
					part[k[i] * F + d] = gotn[k[i]] ? part[k[i] * F + d] + v : v;
					flat[k[i] * F + d] = gotf[k[i]] ? flat[k[i] * F + d] + v : v;
					if (d == F - 1)
						gotn[k[i]] = gotf[k[i]] = 1;
				}
		}
		for (int q = 0; q < 4; q++)
			for (int d = 0; d < F && gotn[q]; d++)
				want[q * F + d] = got[q] ? want[q * F + d] + part[q * F + d] : part[q * F + d];
		for (int q = 0; q < 4; q++)
			got[q] |= gotn[q];
	}
	for (int q = 0; q < 4; q++)
		if (!got[q])
			memset(want + q * F, 0, ROW);
	check(memcmp(want, flat, sizeof(want)) != 0, "combine case: a flat order would give other bits", "");
	struct tr_a2a_stats before, st2;
	tr_comm_a2a_stats(c, &before);
	memset(sum, 0xee, sizeof(sum));
	int rc = tr_alltoallv_sum_f32(c, snd, sb, so, sum, rb, ro, ROW, keys, 4);
	check(rc == 0 && !memcmp(sum, want, sizeof(sum)), "combine: per-key sums, node by node, bit for bit",
	      "rc %d (%s), key 0: %a want %a", rc, tr_comm_error(c), sum[0], want[0]);
	tr_comm_a2a_stats(c, &st2);
	uint64_t saved = st2.dedup_bytes - before.dedup_bytes, crossed = st2.cross_bytes - before.cross_bytes;
	uint64_t rows = 2 * (uint64_t)L + 1; /* per other node: 3 from its local rank 0, 2 from each other */
	uint64_t want_saved = rail ? (uint64_t)(N - 1) * (rows * ROW - 3 * ROW - rows * 4) : 0;
	uint64_t want_cross = rail ? (uint64_t)(N - 1) * ((L + 1) * 8 + rows * 4 + 3 * ROW)
				   : (uint64_t)(N - 1) * L * (me % L ? 2 : 3) * ROW;
	check(saved == want_saved && crossed == want_cross, "combine: the hand-computed bytes saved and sent",
	      "saved %llu want %llu, crossed %llu want %llu", (unsigned long long)saved, (unsigned long long)want_saved,
	      (unsigned long long)crossed, (unsigned long long)want_cross);
	/* a key out of range is refused before anything moves (on a world of one: c stays usable) */
	struct tr_comm *solo = NULL;
	char err[256];
	size_t one = ROW, zero = 0;
	keys[0] = 7;
	rc = tr_comm_init("self", &solo, err, sizeof(err));
	if (rc == 0)
		rc = tr_alltoallv_sum_f32(solo, snd, &one, &zero, sum, &one, &zero, ROW, keys, 4);
	check(rc != 0 && solo && strstr(tr_comm_error(solo), "key 7"), "combine: a key out of range is refused", "%s",
	      solo ? tr_comm_error(solo) : err);
	tr_comm_free(solo);
}

/* Rail mode on pretend nodes of L ranks each (rank r on node r / L): where every cross-node byte went,
 * and deduplication of keyed rows against hand-computed figures.  want_mode: what MOE_A2A gives. */
static void rail_case(struct tr_comm *c, const char *want_mode, int L)
{
	int me = tr_comm_rank(c), n = tr_comm_size(c), N = n / L, rail = !strcmp(want_mode, "rail");
	check(!strcmp(tr_comm_a2a_mode(c), want_mode), "a2a mode", "mode %s, want %s", tr_comm_a2a_mode(c), want_mode);
	struct tr_a2a_stats st;
	tr_comm_a2a_stats(c, &st);
	check(st.nodes == N && st.local_rank == me % L && st.local_size == L, "node layout from the peer table",
	      "nodes %d local rank %d of %d", st.nodes, st.local_rank, st.local_size);
	/* plain rows: the suite's sizes and contents */
	size_t sb[16], so[16], rb[16], ro[16], st_ = 0, rt = 0;
	for (int p = 0; p < n; p++) {
		sb[p] = a2a_len(me, p, n), so[p] = st_, st_ += sb[p];
		rb[p] = a2a_len(p, me, n), ro[p] = rt, rt += rb[p];
	}
	unsigned char *sbuf = malloc(st_ + 1), *rbuf = malloc(rt + 1);
	for (int p = 0; p < n; p++)
		for (size_t i = 0; i < sb[p]; i++)
			sbuf[so[p] + i] = pat(me, p, i);
	memset(rbuf, 0xee, rt + 1);
	int rc = tr_alltoallv(c, sbuf, sb, so, rbuf, rb, ro), bad = -1;
	for (int p = 0; p < n && bad < 0; p++)
		for (size_t i = 0; i < rb[p]; i++)
			if (rbuf[ro[p] + i] != pat(p, me, i)) {
				bad = p;
				break;
			}
	check(rc == 0 && bad < 0, "every byte in its place", "rc %d (%s), first bad source %d", rc, tr_comm_error(c), bad);
	/* direct: each byte for (node m, local j) goes to local rank j; rail: all to my own local rank,
	 * plus per other node the row counts, (L + 1) 8-byte words */
	uint64_t want[16] = { 0 }, cross = 0;
	for (int p = 0; p < n; p++)
		if (p / L != me / L)
			want[rail ? me % L : p % L] += sb[p], cross += sb[p];
	if (rail)
		want[me % L] += (uint64_t)(N - 1) * (L + 1) * 8, cross += (uint64_t)(N - 1) * (L + 1) * 8;
	tr_comm_a2a_stats(c, &st);
	int badlr = -1;
	for (int lr = 0; lr < L; lr++)
		if (tr_comm_cross_bytes_to(c, lr) != want[lr])
			badlr = lr;
	check(badlr < 0 && st.cross_bytes == cross, rail ? "every cross-node byte went local rank i -> local rank i"
							 : "direct: cross-node bytes to every local rank",
	      "to local rank %d: %llu, want %llu; cross %llu want %llu", badlr < 0 ? 0 : badlr,
	      (unsigned long long)tr_comm_cross_bytes_to(c, badlr < 0 ? 0 : badlr),
	      (unsigned long long)want[badlr < 0 ? 0 : badlr], (unsigned long long)st.cross_bytes,
	      (unsigned long long)cross);
	check(st.rail_bytes == (rail ? cross : want[me % L]), "bytes on the rail", "%llu of %llu",
	      (unsigned long long)st.rail_bytes, (unsigned long long)st.cross_bytes);
	free(sbuf);
	free(rbuf);

	/* keyed rows of 64 bytes: to the other node 3 + 2 rows of which 3 distinct: 5 * 64 = 320 bytes
	 * become 3 * 64 + 5 * 4 (row indexes) = 212, so 108 saved per other node and call */
	enum { ROW = 64 };
	int keys[64], nk = 0, k[3];
	unsigned char ks[64 * ROW], kr[64 * ROW];
	st_ = rt = 0;
	for (int p = 0; p < n; p++) {
		int m = rail_keys(me, p, L, k);
		sb[p] = (size_t)m * ROW, so[p] = st_, st_ += sb[p];
		for (int i = 0; i < m; i++, nk++) {
			keys[nk] = k[i];
			for (size_t b = 0; b < ROW; b++)
				ks[(size_t)nk * ROW + b] = key_pat(me, k[i], b);
		}
		rb[p] = (size_t)rail_keys(p, me, L, k) * ROW, ro[p] = rt, rt += rb[p];
	}
	struct tr_a2a_stats before;
	tr_comm_a2a_stats(c, &before);
	rc = 0;
	for (int it = 0; it < 2 && rc == 0; it++)
		rc = tr_alltoallv_keyed(c, ks, sb, so, kr, rb, ro, ROW, keys, 4);
	bad = -1;
	for (int p = 0; p < n && bad < 0; p++) {
		int m = rail_keys(p, me, L, k);
		for (int i = 0; i < m && bad < 0; i++)
			for (size_t b = 0; b < ROW; b++)
				if (kr[ro[p] + (size_t)i * ROW + b] != key_pat(p, k[i], b)) {
					bad = p;
					break;
				}
	}
	check(rc == 0 && bad < 0, "keyed rows: every row in its place", "rc %d (%s), first bad source %d", rc,
	      tr_comm_error(c), bad);
	tr_comm_a2a_stats(c, &st);
	uint64_t saved = st.dedup_bytes - before.dedup_bytes, crossed = st.cross_bytes - before.cross_bytes;
	uint64_t want_saved = rail ? 2 * (uint64_t)(N - 1) * 108 : 0;
	uint64_t want_cross = rail ? 2 * (uint64_t)(N - 1) * (212 + (L + 1) * 8) : 2 * (uint64_t)(N - 1) * 320;
	check(saved == want_saved && crossed == want_cross, "deduplication: the hand-computed bytes saved and sent",
	      "saved %llu want %llu, crossed %llu want %llu", (unsigned long long)saved, (unsigned long long)want_saved,
	      (unsigned long long)crossed, (unsigned long long)want_cross);
	sum_case(c, rail, L);
	/* a key out of range is refused before anything moves */
	keys[0] = 99;
	rc = tr_alltoallv_keyed(c, ks, sb, so, kr, rb, ro, ROW, keys, 4);
	check(rc != 0 && strstr(tr_comm_error(c), "key 99"), "a key out of range is refused", "%s", tr_comm_error(c));
}

/* The failure cases: the last rank dies (SIGKILL) or goes silent after one barrier; the others
 * must fail their next collective with an error naming it. */
static void fail_case(struct tr_comm *c, enum mode m, const char *want)
{
	int me = tr_comm_rank(c), n = tr_comm_size(c);
	int rc = tr_barrier(c);
	if (me == n - 1) {
		if (m == M_KILL)
			raise(SIGKILL);
		pause(); /* silent: the parent kills it */
		_exit(0);
	}
	double t0 = tr_now();
	float v[4096] = { 0 };
	for (int i = 0; i < 50 && rc == 0; i++)
		rc = tr_allreduce_f32(c, v, 4096);
	char who[32];
	snprintf(who, sizeof(who), "rank %d", n - 1);
	const char *e = tr_comm_error(c);
	check(rc != 0 && strstr(e, who) && strstr(e, want), m == M_KILL ? "a killed rank is named" : "a silent rank times out",
	      "rc %d after %.1f s: %s", rc, tr_now() - t0, e);
	/* later calls keep failing with the first cause instead of hanging */
	check(tr_barrier(c) != 0 && tr_comm_error(c) == e, "the communicator stays failed", "%s", tr_comm_error(c));
	/* exit at once, as a trainer would: the abort notice must let the other survivors name the
	 * rank that actually died (not this one closing its connections) */
}

/* Ranks stuck behind a chain of live ranks, the last one stuck on a silent rank, as behind a lost
 * node: rank r waits for rank r+1 (communicator {r, r+1}) from delay[r] on; the last rank, n-1, is
 * silent.  Every rank must end naming rank n-1, learnt from rank n-2, whoever timed out first.
 *  - 3 ranks: rank 0 times out first, before rank 1 (its reason would name rank 1).
 *  - 4 ranks: rank 1 times out first, and rank 0, which waits for it, takes its reason (naming rank
 *    2); rank 2 times out later, and rank 1 then passes on the better reason to rank 0. */
static void chain_case(struct tr_comm *c, int n)
{
	static const double delay3[] = { 0, 0.3 }, delay4[] = { 0.5, 0, 1.0 };
	const double *delay = n == 3 ? delay3 : delay4;
	int me = tr_comm_rank(c);
	struct tr_comm *even = NULL, *odd = NULL; /* {0,1} {2,3} and {0} {1,2} {3} */
	int rc = tr_comm_split(c, me / 2, me, &even);
	if (rc == 0)
		rc = tr_comm_split(c, (me + 1) / 2, me, &odd);
	check(rc == 0, "chain: split", "%s", tr_comm_error(c));
	if (me == n - 1) {
		pause(); /* silent: the parent kills it */
		_exit(0);
	}
	usleep((useconds_t)(delay[me] * 1e6));
	struct tr_comm *w = me % 2 ? odd : even;
	rc = tr_barrier(w);
	const char *e = tr_comm_error(w);
	char end[32], via[32];
	snprintf(end, sizeof(end), "waiting for rank %d ", n - 1);
	snprintf(via, sizeof(via), "rank %d failed: ", n - 2);
	if (me < n - 2)
		check(rc != 0 && strstr(e, via) && strstr(e, end),
		      "a rank stuck behind stuck ranks names the rank at the chain's end", "%s", e);
	else
		check(rc != 0 && strstr(e, "timed out") && strstr(e, end), "the rank stuck on the silent one names it",
		      "%s", e);
	tr_comm_free(even);
	tr_comm_free(odd);
}

static const char *only; /* argv[1]: run only the cases whose name starts with it */

/* Forks n ranks for one case; returns after all exit.  master_port > 0: rendezvous through env. */
static void run_case(const char *name, const char *kind, int n, enum mode m, const char *want, int master_port,
		     const char *timeout)
{
	if (only ? strncmp(name, only, strlen(only)) != 0 : !strncmp(name, "verbs", 5))
		return; /* the verbs cases need a device: verbs_guest.sh runs them in the Soft-RoCE guest */
	struct pretend_world w = {0};
	char err[512];
	if (!master_port)
		pw_open(&w, n, fake_nodes);
	pid_t *pids = calloc(n, sizeof(pid_t));
	for (int r = 0; r < n; r++) {
		pids[r] = fork();
		if (pids[r] != 0)
			continue;
		char v[64];
		cur_case = name;
		cur_rank = r;
		snprintf(v, sizeof(v), "%d", r);
		setenv("MOE_RANK", v, 1);
		snprintf(v, sizeof(v), "%d", n);
		setenv("MOE_WORLD_SIZE", v, 1);
		setenv("MOE_COMM_TIMEOUT", timeout, 1);
		if (master_port) {
			setenv("MOE_MASTER_ADDR", "127.0.0.1", 1);
			snprintf(v, sizeof(v), "%d", master_port);
			setenv("MOE_MASTER_PORT", v, 1);
			unsetenv("MOE_COMM_PEERS");
		} else {
			snprintf(v, sizeof(v), "test%d-%s", (int)getppid(), name);
			pw_enter(&w, r, v);
		}
		struct tr_comm *c;
		if (tr_comm_init(kind, &c, err, sizeof(err)) != 0) {
			check(want_init_error && strstr(err, want_init_error), "init", "%s", err);
			_exit(1);
		}
		if (want_init_error) {
			check(0, "init", "init succeeded, want an error with '%s'", want_init_error);
			_exit(1);
		}
		check(1, "init", NULL);
		if (m == M_SUITE)
			suite(c, kind);
		else if (m == M_RAIL)
			rail_case(c, want, rail_local);
		else if (m == M_CHAIN)
			chain_case(c, n);
		else
			fail_case(c, m, want);
		tr_comm_free(c);
		_exit(0);
	}
	if (!master_port)
		pw_close(&w);
	/* the stalled rank resumes once it stopped and every other rank exited: they must not wait for
	 * it to learn rank 0's reason, and it then meets closed (or reset) connections and must still
	 * find the abort notices left for it */
	if (stall_last)
		waitpid(pids[n - 1], NULL, WUNTRACED);
	/* the silent rank never exits by itself: stop it once the others are done */
	for (int r = 0; r < n; r++) {
		if ((m == M_SILENT || m == M_CHAIN || stall_last) && r == n - 1)
			continue;
		waitpid(pids[r], NULL, 0);
	}
	if (stall_last) {
		kill(pids[n - 1], SIGCONT);
		waitpid(pids[n - 1], NULL, 0);
	}
	if (m == M_KILL || m == M_SILENT || m == M_CHAIN) {
		kill(pids[n - 1], SIGKILL);
		waitpid(pids[n - 1], NULL, 0);
	}
	free(pids);
}

/* Aggregates the children's lines: a check passes when every rank that ran it passed. */
static void summarize(FILE *in)
{
	static char names[256][160], fails[256][512];
	int ok[256], seen[256], count = 0;
	char line[1024];
	while (fgets(line, sizeof(line), in)) {
		char *c1 = strchr(line, '|'), *c2 = c1 ? strchr(c1 + 1, '|') : NULL, *c3 = c2 ? strchr(c2 + 1, '|') : NULL;
		if (!c3)
			continue;
		char key[160];
		snprintf(key, sizeof(key), "%.*s: %.*s", (int)(c1 - line), line, (int)(c2 - c1 - 1), c1 + 1);
		int i;
		for (i = 0; i < count; i++)
			if (!strcmp(names[i], key))
				break;
		if (i == count) {
			if (count == 256)
				continue;
			snprintf(names[count], sizeof(names[count]), "%s", key);
			ok[count] = 1;
			seen[count] = 0;
			fails[count][0] = 0;
			count++;
		}
		seen[i]++;
		if (c2[1] != '1') {
			if (ok[i])
				snprintf(fails[i], sizeof(fails[i]), "%s", c3 + 1);
			ok[i] = 0;
		}
	}
	for (int i = 0; i < count; i++) {
		tap_ok(ok[i], "%s (%d ranks)", names[i], seen[i]);
		if (!ok[i])
			printf("#   %s", fails[i]);
	}
}

static int free_port(void)
{
	int fd, port;
	char err[256];
	if (tr_listen(AF_INET, 0, true, &fd, &port, err, sizeof(err)) != 0)
		return 0;
	close(fd);
	return port;
}

static int shm_leftovers(void)
{
	int n = 0;
	DIR *d = opendir("/dev/shm");
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "moe-test%d-", (int)getpid());
	for (struct dirent *e; d && (e = readdir(d));)
		if (!strncmp(e->d_name, prefix, strlen(prefix)))
			n++;
	if (d)
		closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	only = argc > 1 ? argv[1] : NULL;
	/* ranks append their results to one file (small O_APPEND writes do not interleave) */
	FILE *tf = tmpfile();
	report_fd = tf ? fileno(tf) : -1;
	if (report_fd < 0 || fcntl(report_fd, F_SETFL, O_APPEND) != 0) {
		printf("Bail out! cannot create a temporary file\n");
		return 1;
	}
	unsetenv("MOE_TRANSPORT");
	if (only)
		goto cases;

	/* a world of one needs no launcher */
	unsetenv("MOE_WORLD_SIZE");
	unsetenv("WORLD_SIZE");
	struct tr_comm *c;
	char err[512];
	int rc = tr_comm_init(NULL, &c, err, sizeof(err));
	tap_ok(rc == 0 && !strcmp(tr_comm_kind(c), "self") && tr_comm_size(c) == 1, "no world size: self transport");
	if (rc == 0) {
		float v[3] = { 1, 2, 3 };
		tap_ok(tr_allreduce_f32(c, v, 3) == 0 && v[2] == 3 && tr_barrier(c) == 0, "self: collectives are local");
		tr_comm_free(c);
	}
	setenv("MOE_WORLD_SIZE", "4", 1);
	setenv("MOE_RANK", "2", 1);
	rc = tr_comm_init("self", &c, err, sizeof(err));
	tap_ok(rc == 0 && tr_comm_size(c) == 1 && tr_comm_rank(c) == 0, "kind self: a world of one even inside a launch");
	if (rc == 0)
		tr_comm_free(c);
	unsetenv("MOE_WORLD_SIZE");
	unsetenv("MOE_RANK");
	rc = tr_comm_init("carrier-pigeon", &c, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "carrier-pigeon") && strstr(err, "valid: auto, shm, tcp"),
	       "unknown transport named with the valid choices: %s", err);
	setenv("MOE_WORLD_SIZE", "2", 1);
	setenv("MOE_RANK", "0", 1);
	unsetenv("MOE_COMM_PEERS");
	unsetenv("MOE_MASTER_ADDR");
	unsetenv("MASTER_ADDR");
	rc = tr_comm_init("tcp", &c, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "moe-launch"), "world of 2 without a launcher: %s", err);
	setenv("MOE_COMM_PEERS", "a@127.0.0.1:1", 1);
	rc = tr_comm_init("tcp", &c, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "MOE_COMM_PEERS"), "peer table shorter than the world: %s", err);

	unsetenv("MOE_COMM_PEERS");
	setenv("MOE_A2A", "sideways", 1);
	rc = tr_comm_init(NULL, &c, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "MOE_A2A='sideways'") && strstr(err, "valid: direct, rail"),
	       "unknown all-to-all mode named with the valid choices: %s", err);
	unsetenv("MOE_A2A");

cases:
	run_case("tcp-2", "tcp", 2, M_SUITE, NULL, 0, "20");
	run_case("tcp-4", "tcp", 4, M_SUITE, NULL, 0, "20");
	stall_last = true; /* rank 3 stalled past every deadline of the others: the notices still arrive */
	run_case("tcp-4-stalled", "tcp", 4, M_SUITE, NULL, 0, "20");
	run_case("shm-4-stalled", "shm", 4, M_SUITE, NULL, 0, "20");
	stall_last = false;
	run_case("shm-2", "shm", 2, M_SUITE, NULL, 0, "20");
	run_case("shm-3", "shm", 3, M_SUITE, NULL, 0, "20");
	run_case("shm-6", "shm", 6, M_SUITE, NULL, 0, "20"); /* more ranks than cores: sleeping waits */
	run_case("tcp-6", "tcp", 6, M_SUITE, NULL, 0, "20");
	/* the same with large payloads read straight from the sender (single copy, opt-in) */
	setenv("MOE_SHM_SINGLE_COPY_BYTES", "262144", 1);
	run_case("shm-3-single-copy", "shm", 3, M_SUITE, NULL, 0, "20");
	unsetenv("MOE_SHM_SINGLE_COPY_BYTES");
	/* two pretend nodes, AAB B: shm inside a node, tcp between them */
	fake_nodes = "AABB";
	want_override = "shm+tcp";
	run_case("nodes-AABB", "auto", 4, M_SUITE, NULL, 0, "20");
	fake_nodes = "AAB";
	run_case("nodes-AAB", "auto", 3, M_SUITE, NULL, 0, "20");
	run_case("nodes-AAB-kill", "auto", 3, M_KILL, "rank 2", 0, "10"); /* rank 2: alone on node B */
	fake_nodes = "ABB";
	run_case("nodes-ABB-kill", "auto", 3, M_KILL, "rank 2", 0, "10"); /* rank 2 shares node B with rank 1 */
	/* rail mode (on by default for AABB: same local layout on every node) against direct */
	fake_nodes = "AABB";
	rail_local = 2;
	run_case("rail-AABB-auto", "auto", 4, M_RAIL, "rail", 0, "20");
	setenv("MOE_A2A", "direct", 1);
	run_case("rail-AABB-direct", "auto", 4, M_RAIL, "direct", 0, "20");
	setenv("MOE_A2A", "rail", 1);
	fake_nodes = "AABBCC";
	run_case("rail-AABBCC", "auto", 6, M_RAIL, "rail", 0, "20");
	fake_nodes = "AAB"; /* asked for by name where the nodes differ: refused at init, on every rank */
	want_init_error = "MOE_A2A=rail needs the same number of ranks on every node";
	run_case("rail-AAB-refused", "auto", 3, M_SUITE, NULL, 0, "20");
	want_init_error = NULL;
	unsetenv("MOE_A2A");
	fake_nodes = NULL;
	want_override = NULL;
	run_case("rendezvous-tcp-3", "tcp", 3, M_SUITE, NULL, free_port(), "20");
	run_case("rendezvous-auto-3", "auto", 3, M_SUITE, NULL, free_port(), "20");
	run_case("tcp-kill", "tcp", 3, M_KILL, "closed the connection", 0, "10");
	run_case("shm-kill", "shm", 3, M_KILL, "died", 0, "10");
	run_case("tcp-silent", "tcp", 3, M_SILENT, "timed out", 0, "1");
	run_case("shm-silent", "shm", 3, M_SILENT, "timed out", 0, "1");
	run_case("tcp-chain", "tcp", 3, M_CHAIN, NULL, 0, "2");
	run_case("shm-chain", "shm", 3, M_CHAIN, NULL, 0, "2");
	run_case("tcp-chain-relay", "tcp", 4, M_CHAIN, NULL, 0, "4");
	run_case("shm-chain-relay", "shm", 4, M_CHAIN, NULL, 0, "4");
	/* verbs (in the Soft-RoCE guest): a 64 KiB window, so the 5 MiB messages pipeline through it
	 * 80 times over and the random sizes reach several windows */
	setenv("MOE_IB_WINDOW", "65536", 1);
	big_len = 5 * 65536 + 12345; /* emulated RoCE moves ~50 MB/s: five windows are enough */
	run_case("verbs-2", "verbs", 2, M_SUITE, NULL, 0, "60");
	run_case("verbs-3", "verbs", 3, M_SUITE, NULL, 0, "60");
	run_case("verbs-4", "verbs", 4, M_SUITE, NULL, 0, "60");
	fake_nodes = "AABB";
	want_override = "shm+verbs";
	run_case("verbs-nodes-AABB", "shm+verbs", 4, M_SUITE, NULL, 0, "60");
	/* rail mode over shm+verbs: the per-rank counters, the dispatch's and the combine's bytes */
	rail_local = 2;
	run_case("verbs-rail-AABB", "shm+verbs", 4, M_RAIL, "rail", 0, "60");
	setenv("MOE_A2A", "direct", 1);
	run_case("verbs-rail-AABB-direct", "shm+verbs", 4, M_RAIL, "direct", 0, "60");
	unsetenv("MOE_A2A");
	setenv("MOE_NET_DEVICES", getenv("MOE_IB_DEVICE") ? getenv("MOE_IB_DEVICE") : "rxe0:1", 1);
	fake_nodes = "AAB";
	run_case("verbs-nodes-AAB-auto", "auto", 3, M_SUITE, NULL, 0, "60"); /* auto: the rail is RDMA */
	run_case("verbs-nodes-AAB-kill", "auto", 3, M_KILL, "rank 2", 0, "20");
	unsetenv("MOE_NET_DEVICES");
	fake_nodes = NULL;
	want_override = NULL;
	run_case("verbs-kill", "verbs", 3, M_KILL, "exited", 0, "20");
	run_case("verbs-silent", "verbs", 3, M_SILENT, "timed out", 0, "2");
	unsetenv("MOE_IB_WINDOW");

	lseek(report_fd, 0, SEEK_SET);
	summarize(tf);
	fclose(tf);
	tap_ok(shm_leftovers() == 0, "no shared memory segment left in /dev/shm");
	return tap_done();
}
