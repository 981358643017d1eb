/* rail_a2a.c - the rail-aligned all-to-all against direct mode on pretend nodes (ranks of this
 * machine given node names in the peer table: shm inside a "node", tcp between them), in one run:
 * an MoE dispatch of TOKENS tokens per rank, each routed to top-K distinct experts of E spread evenly
 * over the ranks, rows of DIM floats.  Prints the time of rail mode (rows keyed by token, so
 * deduplicated, and unkeyed) as a ratio to direct mode, and the bytes that crossed nodes per token in
 * each; then the same for the combine back (keyed runs: tr_alltoallv_sum_f32, summed per token and
 * node on the rail peer; unkeyed: every row back with tr_alltoallv).  On one machine "crossing" is loopback TCP, so the time ratio measures the cost of the extra
 * hop and the saving of deduplication, not a real network's.  Best of 3 interleaved rounds.
 * Usage: rail_a2a [NODES [PER_NODE [TOPK [TOKENS [DIM [ITERS]]]]]]
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "comm.h"
#include "comm_internal.h"

static int nodes = 4, per_node = 2, topk = 8, tokens = 512, dim = 256, iters = 20;
static int res_pipe[2];

struct result {
	double seconds;
	double cross_per_token, dedup_per_token;
	double c_seconds, c_cross_per_token, c_dedup_per_token; /* the combine back */
};

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s;
}

/* mode: "direct" or "rail"; keyed: pass the token keys */
static int run(const char *mode, int keyed, struct result *out)
{
	int n = nodes * per_node, E = 4 * n;
	pid_t *pids = calloc(n, sizeof(pid_t));
	int *lfd = calloc(n, sizeof(int));
	struct tr_peer *peers = calloc(n, sizeof(*peers));
	char err[512];
	for (int r = 0; r < n; r++) {
		if (tr_listen(AF_INET, 0, true, &lfd[r], &peers[r].port, err, sizeof(err)))
			return -1;
		snprintf(peers[r].host, sizeof(peers[r].host), "node%d", r / per_node);
		snprintf(peers[r].addr, sizeof(peers[r].addr), "127.0.0.1");
	}
	char *table = tr_peers_format(peers, n);
	for (int r = 0; r < n; r++) {
		if ((pids[r] = fork()) != 0)
			continue;
		char v[64];
		for (int q = 0; q < n; q++)
			if (q != r)
				close(lfd[q]);
		snprintf(v, sizeof(v), "%d", r);
		setenv("MOE_RANK", v, 1);
		snprintf(v, sizeof(v), "%d", n);
		setenv("MOE_WORLD_SIZE", v, 1);
		snprintf(v, sizeof(v), "%d", lfd[r]);
		setenv("MOE_COMM_FD", v, 1);
		setenv("MOE_COMM_PEERS", table, 1);
		setenv("MOE_A2A", mode, 1);
		snprintf(v, sizeof(v), "rail%d-%s%d", (int)getppid(), mode, keyed);
		setenv("MOE_COMM_JOB", v, 1);
		struct tr_comm *c;
		if (tr_comm_init("auto", &c, err, sizeof(err))) {
			fprintf(stderr, "rail_a2a: %s\n", err);
			_exit(1);
		}
		/* routing: top-K distinct experts per token, the same in every mode (seeded by rank) */
		uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)(r + 1) * 0x100000001b3ull;
		int *cnt = calloc(n, sizeof(int)), *dest = malloc(sizeof(int) * tokens * topk);
		for (int t = 0; t < tokens; t++)
			for (int k = 0; k < topk; k++) {
				int e, dup;
				do {
					e = (int)(rng(&s) % (uint64_t)E);
					dup = 0;
					for (int q = 0; q < k; q++)
						dup |= dest[t * topk + q] == e;
				} while (dup);
				dest[t * topk + k] = e;
				cnt[e / (E / n)]++;
			}
		size_t row = sizeof(float) * dim, nrows = (size_t)tokens * topk;
		size_t *sb = calloc(n, sizeof(size_t)), *so = calloc(n, sizeof(size_t));
		size_t *rb = calloc(n, sizeof(size_t)), *ro = calloc(n, sizeof(size_t));
		int *key = malloc(sizeof(int) * nrows), *fill = calloc(n, sizeof(int));
		uint64_t *sc = calloc(n, 8), *rc = calloc(n, 8);
		for (int p = 0, o = 0; p < n; p++)
			sc[p] = cnt[p], so[p] = (size_t)o * row, sb[p] = (size_t)cnt[p] * row, o += cnt[p];
		float *x = malloc(row * tokens), *send = malloc(row * nrows);
		for (size_t i = 0; i < (size_t)tokens * dim; i++)
			x[i] = (float)(rng(&s) % 1000) * 1e-3f;
		for (int t = 0; t < tokens; t++)
			for (int k = 0; k < topk; k++) {
				int p = dest[t * topk + k] / (E / n);
				size_t at = so[p] / row + fill[p]++;
				key[at] = t;
				memcpy((char *)send + at * row, x + (size_t)t * dim, row);
			}
		tr_alltoall(c, sc, rc, 8);
		size_t rt = 0;
		for (int p = 0; p < n; p++)
			rb[p] = rc[p] * row, ro[p] = rt, rt += rb[p];
		char *recv = malloc(rt + 1);
		float *sum = malloc(row * tokens);
		struct tr_a2a_stats a, b, ca, cb;
		int bad = 0;
#define A2A() (keyed ? tr_alltoallv_keyed(c, send, sb, so, recv, rb, ro, row, key, tokens) \
		     : tr_alltoallv(c, send, sb, so, recv, rb, ro))
		bad |= A2A(); /* warm-up: rings, buffers, rail sub-communicators */
		tr_comm_a2a_stats(c, &a);
		tr_barrier(c);
		double t0 = tr_now();
		for (int i = 0; i < iters && !bad; i++)
			bad |= A2A();
		tr_barrier(c);
		double t = tr_now() - t0;
		tr_comm_a2a_stats(c, &b);
		if (bad) {
			fprintf(stderr, "rail_a2a: %s\n", tr_comm_error(c));
			_exit(1);
		}
#define COMBINE() (keyed ? tr_alltoallv_sum_f32(c, (const float *)recv, rb, ro, sum, sb, so, row, key, tokens) \
			 : tr_alltoallv(c, recv, rb, ro, send, sb, so))
		bad |= COMBINE();
		tr_comm_a2a_stats(c, &ca);
		tr_barrier(c);
		t0 = tr_now();
		for (int i = 0; i < iters && !bad; i++)
			bad |= COMBINE();
		tr_barrier(c);
		double tc = tr_now() - t0;
		tr_comm_a2a_stats(c, &cb);
		if (bad) {
			fprintf(stderr, "rail_a2a: %s\n", tr_comm_error(c));
			_exit(1);
		}
		double fig[6] = { t, (double)(b.cross_bytes - a.cross_bytes) / iters / tokens,
				(double)(b.dedup_bytes - a.dedup_bytes) / iters / tokens, tc,
				(double)(cb.cross_bytes - ca.cross_bytes) / iters / tokens,
				(double)(cb.dedup_bytes - ca.dedup_bytes) / iters / tokens };
		tr_allreduce_f64(c, fig, 6);
		if (r == 0 && write(res_pipe[1], fig, sizeof(fig)) != sizeof(fig))
			_exit(3);
		tr_comm_free(c);
		_exit(0);
	}
	for (int r = 0; r < n; r++)
		close(lfd[r]);
	double v[6];
	int got = read(res_pipe[0], v, sizeof(v)) == sizeof(v), failed = 0;
	for (int r = 0; r < n; r++) {
		int st;
		waitpid(pids[r], &st, 0);
		failed |= !WIFEXITED(st) || WEXITSTATUS(st);
	}
	free(pids), free(lfd), free(peers), free(table);
	if (!got || failed)
		return -1;
	out->seconds = v[0] / n;
	out->cross_per_token = v[1] / n;
	out->dedup_per_token = v[2] / n;
	out->c_seconds = v[3] / n;
	out->c_cross_per_token = v[4] / n;
	out->c_dedup_per_token = v[5] / n;
	return 0;
}

int main(int argc, char **argv)
{
	int *vals[] = { &nodes, &per_node, &topk, &tokens, &dim, &iters };
	for (int i = 1; i < argc && i <= 6; i++)
		*vals[i - 1] = atoi(argv[i]);
	if (nodes < 2 || per_node < 1 || topk < 1 || topk > 4 * nodes * per_node || tokens < 1 || dim < 1 || iters < 1) {
		fprintf(stderr, "usage: rail_a2a [NODES>=2 [PER_NODE [TOPK<=4*ranks [TOKENS [DIM [ITERS]]]]]]\n");
		return 2;
	}
	if (pipe(res_pipe))
		return 1;
	/* best of 3 interleaved rounds: a burst of load from other processes hits every mode alike */
	struct result d, rp, rk;
	for (int round = 0; round < 3; round++) {
		struct result x[3];
		if (run("direct", 1, &x[0]) || run("rail", 0, &x[1]) || run("rail", 1, &x[2])) {
			fprintf(stderr, "rail_a2a: a run failed\n");
			return 1;
		}
		if (round == 0 || x[0].seconds < d.seconds)
			d = x[0];
		if (round == 0 || x[1].seconds < rp.seconds)
			rp = x[1];
		if (round == 0 || x[2].seconds < rk.seconds)
			rk = x[2];
	}
	printf("rail_a2a: %d pretend nodes x %d ranks, top-%d of %d experts, %d tokens/rank, rows of %d floats, %d iterations\n",
	       nodes, per_node, topk, 4 * nodes * per_node, tokens, dim, iters);
	printf("  direct          %8.2f ms/a2a  cross-node %8.0f B/token\n", d.seconds / iters * 1e3, d.cross_per_token);
	printf("  rail            %8.2f ms/a2a  cross-node %8.0f B/token  time %.2f x direct\n", rp.seconds / iters * 1e3,
	       rp.cross_per_token, rp.seconds / d.seconds);
	printf("  rail + dedup    %8.2f ms/a2a  cross-node %8.0f B/token  time %.2f x direct, bytes %.2f x direct "
	       "(dedup saved %.0f B/token)\n", rk.seconds / iters * 1e3, rk.cross_per_token, rk.seconds / d.seconds,
	       rk.cross_per_token / d.cross_per_token, rk.dedup_per_token);
	printf("combine (direct: every row back, summed by the receiver; rail: summed per node on the rail peer)\n");
	printf("  direct          %8.2f ms/a2a  cross-node %8.0f B/token\n", d.c_seconds / iters * 1e3, d.c_cross_per_token);
	printf("  rail, unsummed  %8.2f ms/a2a  cross-node %8.0f B/token  time %.2f x direct\n", rp.c_seconds / iters * 1e3,
	       rp.c_cross_per_token, rp.c_seconds / d.c_seconds);
	printf("  rail + sums     %8.2f ms/a2a  cross-node %8.0f B/token  time %.2f x direct, bytes %.2f x direct "
	       "(sums saved %.0f B/token)\n", rk.c_seconds / iters * 1e3, rk.c_cross_per_token, rk.c_seconds / d.c_seconds,
	       rk.c_cross_per_token / d.c_cross_per_token, rk.c_dedup_per_token);
	return 0;
}
