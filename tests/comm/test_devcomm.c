/* test_devcomm.c - the device communicators (devcomm.h) with real processes and sockets.
 *
 * On any machine: the combine's order plan (tr_dsum_plan) on a hand-computed case where the order
 * changes the result, and against tr_alltoallv_sum_f32 itself bit for bit - one node over shm, two and
 * three pretend nodes over shm+tcp in direct and rail mode - with a control showing that another order
 * gives other bits; and tr_devcomm_open's one-line errors (unknown kind, not built, cuda-ipc across
 * hosts, which needs no GPU to be found).
 * With a GPU (CUDA builds): cuda-ipc between 2, 3 and 4 processes on one GPU, and nccl at world 1 (NCCL
 * refuses two ranks on one GPU): alltoallv, the summed combine and the all-reduce on device buffers
 * against the host transports' results, bit for bit, with growing sizes, and the a2a byte counters
 * moving as the host path's do.  Without a GPU these cases report themselves skipped ("no GPU").
 * `test_devcomm bench [MIB]` (tests/bench/devcomm.sh): cuda-ipc all-to-all bandwidth between 2 and 4
 * processes on one GPU against cudaMemcpy device to device and against staging through pinned host
 * memory and shm, all measured in the same run; one JSON line per size.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "comm.h"
#include "comm_internal.h"
#include "pretend_world.h"
#include "devcomm.h"
#ifdef TR_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

static int report_fd, cur_rank, gpu_found;
static size_t bench_mib = 64; /* bench: MiB per rank */

/* one line per rank and check: "check|ok|rank r: message" */
static void check(int ok, const char *name, const char *fmt, ...)
{
	char msg[300] = "", line[512];
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	int n = snprintf(line, sizeof(line), "%s|%d|rank %d: %s\n", name, ok ? 1 : 0, cur_rank, msg);
	if (write(report_fd, line, n) != n)
		_exit(99);
}

static uint64_t hash(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	uint64_t h = (a * 1000003u + b * 7919u + c * 104729u + d * 15485863u + 12345) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 29;
	return h * 0xbf58476d1ce4e5b9ull ^ (h >> 31);
}

/* rows rank s sends rank r in round t (some pairs none), and the key r gives row i of them */
static size_t nrows(int s, int r, int t)
{
	return hash(s, r, t, 1) % 5 == 0 ? 0 : 1 + hash(s, r, t, 2) % (t < 2 ? 4 : 60);
}
static int rkey(int s, int r, int t, size_t i, int nkeys)
{
	return (int)(hash(s, r, t, 100 + i) % (uint64_t)nkeys);
}
/* values of widely different sizes and signs: their sums depend on the order of the additions */
static float val(int s, size_t i, size_t d, int t)
{
	uint64_t h = hash(s, i, d, 1000 + t);
	float m = 1.0f + (float)(h % 4096) / 4096.0f;
	return ((h >> 12) & 1 ? -m : m) * ldexpf(1.0f, (int)((h >> 13) % 41) - 20);
}

struct layout {
	int P, me, nkeys;
	size_t D, row, *sb, *so, *rb, *ro, stot, rtot;
	float *send;
	int *key; /* of every received row */
};

static void layout_make(struct layout *L, int P, int me, int t, size_t D, int nkeys)
{
	L->P = P, L->me = me, L->D = D, L->row = D * sizeof(float), L->nkeys = nkeys;
	L->sb = calloc(4 * (size_t)P, sizeof(size_t));
	L->so = L->sb + P, L->rb = L->so + P, L->ro = L->rb + P;
	size_t so = 0, ro = 0;
	for (int p = 0; p < P; p++) {
		L->sb[p] = nrows(me, p, t) * L->row, L->so[p] = so, so += L->sb[p];
		L->rb[p] = nrows(p, me, t) * L->row, L->ro[p] = ro, ro += L->rb[p];
	}
	L->stot = so, L->rtot = ro;
	L->send = malloc(so + 4);
	L->key = malloc(sizeof(int) * (ro / L->row + 1));
	for (size_t i = 0; i < so / L->row; i++)
		for (size_t d = 0; d < D; d++)
			L->send[i * D + d] = val(me, i, d, t);
	for (int p = 0; p < P; p++)
		for (size_t i = 0; i < L->rb[p] / L->row; i++)
			L->key[L->ro[p] / L->row + i] = rkey(p, me, t, i, nkeys);
}

static void layout_free(struct layout *L)
{
	free(L->sb), free(L->send), free(L->key);
}

/* the plan applied to the rows tr_alltoallv delivers gives tr_alltoallv_sum_f32's bits */
static void plan_case(struct tr_comm *c)
{
	int P = tr_comm_size(c), me = tr_comm_rank(c), nodes = 0, *node = malloc(sizeof(int) * P), *flat = calloc(P, sizeof(int));
	for (int p = 0; p < P; p++)
		node[p] = tr_comm_node_of(c, p), nodes = node[p] + 1 > nodes ? node[p] + 1 : nodes;
	int same = 1, differs = 0, rc = 0;
	size_t sums = 0;
	struct tr_dsum_plan pl = { 0 };
	for (int t = 0; t < 6 && rc == 0; t++) {
		struct layout L;
		layout_make(&L, P, me, t, 24, t < 2 ? 3 : 40);
		size_t out = (size_t)L.nkeys * L.row;
		float *ref = malloc(out + 4), *got = malloc(out + 4), *alt = malloc(out + 4), *recv = malloc(L.rtot + 4);
		rc = tr_alltoallv_sum_f32(c, L.send, L.sb, L.so, ref, L.rb, L.ro, L.row, L.key, L.nkeys) ||
		     tr_alltoallv(c, L.send, L.sb, L.so, recv, L.rb, L.ro) ||
		     tr_dsum_plan_build(&pl, node, P, L.rb, L.ro, L.row, L.key, L.nkeys);
		if (rc == 0) {
			tr_dsum_plan_apply(&pl, recv, got, L.D);
			same &= memcmp(ref, got, out) == 0;
			/* control: all ranks as one node (plain source-rank order) */
			struct tr_dsum_plan fp = { 0 };
			if (nodes > 1 && tr_dsum_plan_build(&fp, flat, P, L.rb, L.ro, L.row, L.key, L.nkeys) == 0) {
				tr_dsum_plan_apply(&fp, recv, alt, L.D);
				differs |= memcmp(ref, alt, out) != 0;
			}
			tr_dsum_plan_free(&fp);
			sums += (size_t)L.nkeys;
		}
		free(ref), free(got), free(alt), free(recv);
		layout_free(&L);
	}
	check(rc == 0, "the host transports ran", "%s", tr_comm_error(c));
	check(same, "the plan's sums equal tr_alltoallv_sum_f32 bit for bit", "%zu key rows over %d nodes", sums, nodes);
	if (nodes > 1) { /* every rank's order across nodes differs somewhere: the check above can fail */
		double d = differs;
		tr_allreduce_f64(c, &d, 1);
		check(d > 0, "control: summing in plain rank order gives other bits (the order is tested)", NULL);
	}
	tr_dsum_plan_free(&pl);
	free(node), free(flat);
}

/* tr_devcomm_open's refusals, on any machine */
static void open_case(struct tr_comm *c)
{
	char err[512] = "";
	struct tr_devcomm *d = NULL;
	int rc = tr_devcomm_open(c, "shm", &d, err, sizeof(err));
	check(rc == -1 && !d && strstr(err, "--device-comm 'shm'") && strstr(err, "cuda-ipc, nccl"),
	      "an unknown kind: one line naming it and the valid kinds", "%s", err);
	const char *unbuilt = tr_devcomm_unbuilt("nccl");
	if (unbuilt) {
		rc = tr_devcomm_open(c, "nccl", &d, err, sizeof(err));
		check(rc == -1 && strstr(err, "--device-comm nccl: not in this build") && strstr(err, "valid here: staged"),
		      "not built: one line naming the kind and what is valid here", "%s", err);
		return;
	}
	rc = tr_devcomm_open(c, "cuda-ipc", &d, err, sizeof(err));
	check(rc == -1 && !d && strstr(err, "--device-comm cuda-ipc: ranks 0 (nodeA) and 2 (nodeB) of the group are on "
					 "different hosts") && strstr(err, "valid across nodes: nccl, staged"),
	      "cuda-ipc across hosts: one line naming two ranks and their hosts, before any CUDA call", "%s", err);
	check(!tr_devcomm_serves(c, "cuda-ipc") && tr_devcomm_serves(c, "nccl"), "cuda-ipc serves one host, nccl any",
	      NULL);
	if (gpu_found)
		return;
	/* no GPU: CUDA fails on every rank; each gets one line, its own, and nobody waits for another */
	char own[64];
	snprintf(own, sizeof(own), "--device-comm nccl: rank %d: cannot create a CUDA stream: ", tr_comm_rank(c));
	rc = tr_devcomm_open(c, "nccl", &d, err, sizeof(err));
	check(rc == -1 && !d && strstr(err, own), "nccl without a GPU: one line from CUDA on every rank", "%s", err);
}

#ifdef TR_WITH_CUDA
static void *dev_put(const void *h, size_t n)
{
	void *p = NULL;
	if (cudaMalloc(&p, n + 16) != cudaSuccess)
		return NULL;
	cudaMemcpy(p, h, n, cudaMemcpyHostToDevice);
	return p;
}

/* the device collectives against the host transports, bit for bit, growing sizes */
static void gpu_case(struct tr_comm *c, const char *kind)
{
	int P = tr_comm_size(c), me = tr_comm_rank(c);
	char err[512] = "";
	struct tr_devcomm *d = NULL;
	if (cudaSetDevice(0) != cudaSuccess || tr_devcomm_open(c, kind, &d, err, sizeof(err))) {
		check(0, "opened", "%s", err);
		return;
	}
	check(1, "opened", NULL);
	int a2a_same = 1, sum_same = 1, ar_same = 1, counted = 1, rc = 0;
	size_t moved = 0;
	for (int t = 0; t < 6 && rc == 0; t++) {
		struct layout L;
		layout_make(&L, P, me, t, t < 3 ? 16 : 1024, t < 2 ? 3 : 500);
		size_t out = (size_t)L.nkeys * L.row, n = 1000 + (size_t)t * 300000;
		float *href = malloc(L.rtot + 4), *hgot = malloc(L.rtot + 4), *sref = malloc(out + 4), *sgot = malloc(out + 4);
		float *aref = malloc(n * 4), *agot = malloc(n * 4);
		for (size_t i = 0; i < n; i++)
			aref[i] = val(me, i, 7, t);
		float *dsend = dev_put(L.send, L.stot), *drecv = dev_put(href, L.rtot), *dsum = dev_put(sgot, out),
		      *dbuf = dev_put(aref, n * 4);
		uint64_t b0 = tr_comm_alltoall_bytes(c);
		rc = !dsend || !drecv || !dsum || !dbuf;
		rc = rc || tr_alltoallv(c, L.send, L.sb, L.so, href, L.rb, L.ro) ||
		     tr_alltoallv_sum_f32(c, L.send, L.sb, L.so, sref, L.rb, L.ro, L.row, L.key, L.nkeys) ||
		     tr_allreduce_f32(c, aref, n);
		uint64_t b1 = tr_comm_alltoall_bytes(c);
		if (rc == 0 && (tr_devcomm_alltoallv(d, dsend, L.sb, L.so, drecv, L.rb, L.ro) ||
				tr_devcomm_alltoallv_sum_f32(d, dsend, L.sb, L.so, dsum, L.rb, L.ro, L.row, L.key, L.nkeys) ||
				tr_devcomm_allreduce_f32(d, dbuf, n)))
			rc = 2;
		if (rc == 0) {
			counted &= tr_comm_alltoall_bytes(c) - b1 == b1 - b0;
			cudaMemcpy(hgot, drecv, L.rtot, cudaMemcpyDeviceToHost);
			cudaMemcpy(sgot, dsum, out, cudaMemcpyDeviceToHost);
			cudaMemcpy(agot, dbuf, n * 4, cudaMemcpyDeviceToHost);
			a2a_same &= memcmp(href, hgot, L.rtot) == 0;
			sum_same &= memcmp(sref, sgot, out) == 0;
			ar_same &= memcmp(aref, agot, n * 4) == 0;
			moved += L.stot;
		}
		cudaFree(dsend), cudaFree(drecv), cudaFree(dsum), cudaFree(dbuf);
		free(href), free(hgot), free(sref), free(sgot), free(aref), free(agot);
		layout_free(&L);
	}
	check(rc == 0, "six rounds of device collectives ran", "%s", rc == 2 ? tr_devcomm_error(d) : tr_comm_error(c));
	check(a2a_same, "alltoallv: the rows of the host transport, byte for byte", "%zu bytes sent", moved);
	check(sum_same, "combine: tr_alltoallv_sum_f32's sums bit for bit", NULL);
	check(ar_same, "all-reduce: tr_allreduce_f32's bits (rank order)", NULL);
	check(counted, "the a2a byte counter moves as the host path's", NULL);
	tr_devcomm_free(d);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* GB/s of the bytes a rank sends other ranks, best of 5 rounds of 10 all-to-alls of bench_mib MiB per
 * rank (split evenly); rank 0 prints the JSON line.  Baselines in the same processes: one cudaMemcpy
 * device to device of the same bytes, and the staged path (down to pinned memory, shm, up). */
static void bench_case(struct tr_comm *c)
{
	int P = tr_comm_size(c), me = tr_comm_rank(c);
	size_t tot = bench_mib << 20, per = tot / (size_t)P, sb[P], so[P];
	for (int p = 0; p < P; p++)
		sb[p] = per, so[p] = (size_t)p * per;
	char err[512] = "";
	struct tr_devcomm *d = NULL;
	void *ds = NULL, *dr = NULL, *hs = NULL, *hr = NULL;
	if (cudaSetDevice(0) != cudaSuccess || tr_devcomm_open(c, "cuda-ipc", &d, err, sizeof(err)) ||
	    cudaMalloc(&ds, tot) != cudaSuccess || cudaMalloc(&dr, tot) != cudaSuccess ||
	    cudaMallocHost(&hs, tot) != cudaSuccess || cudaMallocHost(&hr, tot) != cudaSuccess) {
		check(0, "bench setup", "%s", err[0] ? err : "out of GPU or pinned memory");
		return;
	}
	cudaMemset(ds, 1, tot);
	double best[3] = { 1e30, 1e30, 1e30 };
	int rc = 0;
	for (int round = 0; round < 6 && rc == 0; round++) { /* round 0 warms up */
		double t[3];
		for (int m = 0; m < 3 && rc == 0; m++) {
			tr_barrier(c);
			double t0 = now_s();
			for (int i = 0; i < 10 && rc == 0; i++) {
				if (m == 0)
					rc = tr_devcomm_alltoallv(d, ds, sb, so, dr, sb, so);
				else if (m == 1)
					rc = cudaMemcpy(dr, ds, tot - per, cudaMemcpyDeviceToDevice) != cudaSuccess;
				else
					rc = cudaMemcpy(hs, ds, tot, cudaMemcpyDeviceToHost) != cudaSuccess ||
					     tr_alltoallv(c, hs, sb, so, hr, sb, so) ||
					     cudaMemcpy(dr, hr, tot, cudaMemcpyHostToDevice) != cudaSuccess;
			}
			cudaDeviceSynchronize();
			double dt = now_s() - t0;
			tr_allreduce_f64(c, &dt, 1);
			t[m] = dt / P; /* the mean over the ranks */
		}
		for (int m = 0; round > 0 && m < 3; m++)
			best[m] = t[m] < best[m] ? t[m] : best[m];
	}
	double moved = 10.0 * (double)(tot - per) / 1e9; /* bytes to other ranks per rank */
	if (me == 0 && rc == 0)
		printf("{\"bench\":\"devcomm_a2a\",\"transport\":\"cuda-ipc\",\"ranks\":%d,\"mib_per_rank\":%zu,"
		       "\"cuda_ipc_gbs\":%.2f,\"memcpy_d2d_gbs\":%.2f,\"staged_gbs\":%.2f,\"ipc_vs_memcpy\":%.3f,"
		       "\"ipc_vs_staged\":%.2f}\n", P, bench_mib, moved / best[0], moved / best[1], moved / best[2],
		       best[1] / best[0], best[2] / best[0]);
	fflush(stdout);
	check(rc == 0, "bench ran", "%s", rc ? tr_devcomm_error(d) : "");
	cudaFree(ds), cudaFree(dr), cudaFreeHost(hs), cudaFreeHost(hr);
	tr_devcomm_free(d);
}
#endif

enum what { PLAN, OPEN, GPU, BENCH };

/* forks n ranks over kind (pretend hosts "node" + fake[r], NULL = this host); a check passes when every
 * rank passed it and all exited 0 */
static void run(const char *name, const char *kind, int n, const char *fake, const char *a2a, enum what w,
		const char *dkind)
{
	char err[512];
	int pfd[2];
	struct pretend_world pw;
	pw_open(&pw, n, fake);
	if (pipe(pfd))
		exit(1);
	pid_t *pids = calloc(n, sizeof(pid_t));
	for (int r = 0; r < n; r++) {
		if ((pids[r] = fork()) != 0)
			continue;
		close(pfd[0]);
		report_fd = pfd[1];
		cur_rank = r;
		char v[96];
		snprintf(v, sizeof(v), "%d", r), setenv("MOE_RANK", v, 1);
		snprintf(v, sizeof(v), "%d", n), setenv("MOE_WORLD_SIZE", v, 1);
		snprintf(v, sizeof(v), "devtest%d-%s", (int)getppid(), name);
		pw_enter(&pw, r, v);
		setenv("MOE_COMM_TIMEOUT", "30", 1);
		if (a2a)
			setenv("MOE_A2A", a2a, 1);
		struct tr_comm *c;
		if (tr_comm_init(kind, &c, err, sizeof(err)) != 0) {
			check(0, "init", "%s", err);
			_exit(1);
		}
		if (w == PLAN)
			plan_case(c);
		else if (w == OPEN)
			open_case(c);
#ifdef TR_WITH_CUDA
		else if (w == GPU)
			gpu_case(c, dkind);
		else
			bench_case(c);
#endif
		tr_comm_free(c);
		_exit(0);
	}
	close(pfd[1]);
	pw_close(&pw);
	/* read every line, then one test point per check name in first-seen order */
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	ssize_t k;
	while ((k = read(pfd[0], buf + len, cap - len - 1)) > 0)
		if ((len += (size_t)k) + 1 >= cap)
			buf = realloc(buf, cap *= 2);
	buf[len] = 0;
	close(pfd[0]);
	int bad_exit = 0;
	for (int r = 0; r < n; r++) {
		int st = 0;
		waitpid(pids[r], &st, 0);
		bad_exit |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	char names[32][128];
	int nn = 0;
	for (char *l = buf; *l;) {
		char *e = strchr(l, '\n'), *b1 = strchr(l, '|');
		if (!e || !b1)
			break;
		int i;
		for (i = 0; i < nn && (strncmp(names[i], l, (size_t)(b1 - l)) || names[i][b1 - l]); i++)
			;
		if (i == nn && nn < 32)
			snprintf(names[nn++], sizeof(names[0]), "%.*s", (int)(b1 - l), l);
		l = e + 1;
	}
	for (int i = 0; i < nn; i++) {
		int ranks = 0, fails = 0;
		char first_bad[400] = "", last_msg[400] = "";
		size_t ln = strlen(names[i]);
		for (char *l = buf; *l;) {
			char *e = strchr(l, '\n');
			if (!e)
				break;
			if (!strncmp(l, names[i], ln) && l[ln] == '|') {
				ranks++;
				int okv = l[ln + 1] == '1';
				snprintf(last_msg, sizeof(last_msg), "%.*s", (int)(e - l - ln - 3), l + ln + 3);
				if (!okv && !fails++)
					snprintf(first_bad, sizeof(first_bad), "%s", last_msg);
			}
			l = e + 1;
		}
		tap_ok(fails == 0 && ranks == n, "%s: %s (%d ranks) - %s", name, names[i], ranks, fails ? first_bad : last_msg);
	}
	tap_ok(!bad_exit, "%s: every rank exited 0", name);
	free(buf), free(pids);
}

/* the hand-computed case: node order first, then rank order inside a node */
static void plan_by_hand(void)
{
	/* sources 0, 1, 2 on nodes 0, 1, 0; rows 2, 1, 2; keys 1 0 | 1 | 1 1 */
	int node[3] = { 0, 1, 0 }, key[5] = { 1, 0, 1, 1, 1 };
	size_t rb[3] = { 8, 4, 8 }, ro[3] = { 0, 8, 12 };
	struct tr_dsum_plan pl = { 0 };
	int rc = tr_dsum_plan_build(&pl, node, 3, rb, ro, 4, key, 2);
	char got[128];
	int n = 0;
	for (int k = 0; rc == 0 && k < 2; k++) {
		n += snprintf(got + n, sizeof(got) - n, "%s%d:", k ? " " : "", k);
		for (int j = pl.start[k]; j < pl.start[k + 1]; j++)
			n += snprintf(got + n, sizeof(got) - n, "%s%d", pl.first[j] ? "|" : ",", pl.row[j]);
	}
	TAP_STR(rc == 0 ? got : "build failed", "0:|1 1:|0,3,4|2",
		"plan by hand: key 1 sums rows 0, 3, 4 (node 0: ranks 0 and 2) then row 2 (node 1)");
	/* 1e8 + 1 rounds back to 1e8 in fp32: the node order gives 0.5, plain rank order 0 */
	float recv[5] = { 1e8f, 7.0f, 0.5f, 1.0f, -1e8f }, sum[2];
	tr_dsum_plan_apply(&pl, recv, sum, 1);
	tap_ok(sum[0] == 7.0f && sum[1] == 0.5f, "plan by hand: ((1e8 + 1) + -1e8) + 0.5 = 0.5, a lone row as it is (got %g, %g)",
	       sum[1], sum[0]);
	int badkey[5] = { 1, 0, 2, 1, 1 };
	tap_ok(tr_dsum_plan_build(&pl, node, 3, rb, ro, 4, badkey, 2) == -1, "plan: a key outside 0..nkeys-1 is refused");
	tr_dsum_plan_free(&pl);
}

/* a GPU this process tree may use (probed in a child: CUDA must not start before the forks) */
static int have_gpu(char *why, size_t len)
{
#ifdef TR_WITH_CUDA
	pid_t p = fork();
	if (p == 0) {
		int n = 0;
		_exit(cudaGetDeviceCount(&n) == cudaSuccess && n > 0 ? 0 : 1);
	}
	int st = 0;
	waitpid(p, &st, 0);
	snprintf(why, len, "no GPU (cudaGetDeviceCount found none)");
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
#else
	snprintf(why, len, "no GPU code: the CUDA backend is not built");
	return 0;
#endif
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : "";
	char why[128];
	if (!strcmp(only, "bench")) {
		if (argc > 2)
			bench_mib = (size_t)atol(argv[2]);
		if (!have_gpu(why, sizeof(why)) || bench_mib < 1) {
			printf("devcomm bench: not run: %s\n", bench_mib < 1 ? "MIB must be >= 1" : why);
			return 0;
		}
		run("bench-2", "shm", 2, NULL, NULL, BENCH, NULL);
		run("bench-4", "shm", 4, NULL, NULL, BENCH, NULL);
		return tap_done();
	}
	if (!*only || !strncmp(only, "plan", 4)) {
		plan_by_hand();
		run("plan-1node", "shm", 3, NULL, NULL, PLAN, NULL);
		run("plan-2nodes-direct", "shm+tcp", 4, "AABB", "direct", PLAN, NULL);
		run("plan-2nodes-rail", "shm+tcp", 4, "AABB", "rail", PLAN, NULL);
		run("plan-3nodes-rail", "shm+tcp", 6, "AABBCC", "rail", PLAN, NULL);
	}
	int gpu = gpu_found = have_gpu(why, sizeof(why));
	if (!*only || !strncmp(only, "open", 4))
		run("open-errors", "shm+tcp", 4, "AABB", NULL, OPEN, NULL);
	if (!*only || !strncmp(only, "gpu", 3)) {
		static const char *const cases[][3] = { { "gpu-cuda-ipc-2", "cuda-ipc", "2" }, { "gpu-cuda-ipc-3", "cuda-ipc", "3" },
						       { "gpu-cuda-ipc-4", "cuda-ipc", "4" }, { "gpu-nccl-1", "nccl", "1" } };
		for (int i = 0; i < 4; i++) {
			if (!gpu) {
				printf("ok %d # SKIP %s: %s\n", ++tap_n, cases[i][0], why);
				continue;
			}
			int n = atoi(cases[i][2]);
			run(cases[i][0], n == 1 ? "self" : "shm", n, NULL, NULL, GPU, cases[i][1]);
		}
	}
	return tap_done();
}
