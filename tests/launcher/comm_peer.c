/* comm_peer.c - a tiny rank program for the launcher tests: joins the world through comm.h, checks
 * an allreduce and an alltoallv, and prints one line per rank with what a test needs to verify
 * (rank, size, transport, the sum, its CPU affinity and contract variables).  Options make it fail
 * on purpose: --die R (rank R kills itself with SIGKILL), --exit R:CODE, --wait-signal (block in
 * barriers until SIGTERM, then report it and exit 0), --sleep SEC before init.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	got_term = sig;
}

static void affinity(char *buf, size_t len)
{
	cpu_set_t set;
	size_t o = 0;
	buf[0] = 0;
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	for (int i = 0; i < CPU_SETSIZE && o + 8 < len; i++) {
		if (!CPU_ISSET(i, &set))
			continue;
		int j = i;
		while (j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, &set))
			j++;
		o += snprintf(buf + o, len - o, o ? ",%d" : "%d", i);
		if (j > i)
			o += snprintf(buf + o, len - o, "-%d", j);
		i = j;
	}
}

int main(int argc, char **argv)
{
	int die = -1, exit_rank = -1, exit_code = 0, wait_sig = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--die") && i + 1 < argc)
			die = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--exit") && i + 1 < argc)
			sscanf(argv[++i], "%d:%d", &exit_rank, &exit_code);
		else if (!strcmp(argv[i], "--wait-signal"))
			wait_sig = 1;
		else if (!strcmp(argv[i], "--sleep") && i + 1 < argc)
			usleep((useconds_t)(atof(argv[++i]) * 1e6));
		else {
			fprintf(stderr, "comm_peer: unknown argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (wait_sig) {
		signal(SIGTERM, on_term);
		signal(SIGUSR1, on_term);
	}
	char err[512];
	struct tr_comm *c;
	if (tr_comm_init(NULL, &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "comm_peer: %s\n", err);
		return 1;
	}
	int me = tr_comm_rank(c), n = tr_comm_size(c);
	double v = me + 1;
	if (tr_allreduce_f64(c, &v, 1) != 0) {
		fprintf(stderr, "comm_peer: rank %d: %s\n", me, tr_comm_error(c));
		_exit(1); /* as a trainer would: no cleanup on a failed world */
	}
	/* each rank sends rank+1 bytes of its rank id to every peer */
	size_t *sb = calloc(n, sizeof(size_t)), *so = calloc(n, sizeof(size_t));
	size_t *rb = calloc(n, sizeof(size_t)), *ro = calloc(n, sizeof(size_t)), rt = 0;
	char *sbuf = malloc((size_t)n * (me + 1)), *rbuf;
	for (int p = 0; p < n; p++) {
		sb[p] = me + 1;
		so[p] = (size_t)p * (me + 1);
		rb[p] = p + 1;
		ro[p] = rt;
		rt += p + 1;
	}
	memset(sbuf, 'A' + me, (size_t)n * (me + 1));
	rbuf = malloc(rt);
	int a2a_ok = tr_alltoallv(c, sbuf, sb, so, rbuf, rb, ro) == 0;
	for (int p = 0; p < n && a2a_ok; p++)
		for (size_t i = 0; i < rb[p]; i++)
			a2a_ok &= rbuf[ro[p] + i] == 'A' + p;
	char aff[256];
	affinity(aff, sizeof(aff));
	const char *cpus = getenv("MOE_CPUS");
	printf("rank %d size %d kind %s sum %g a2a %s cpus %s moe_cpus %s ep %s/%s\n", me, n, tr_comm_kind(c), v,
	       a2a_ok ? "ok" : "bad", aff, cpus && *cpus ? cpus : "-", getenv("MOE_EP_RANK") ? getenv("MOE_EP_RANK") : "-",
	       getenv("MOE_EP_SIZE") ? getenv("MOE_EP_SIZE") : "-");
	fflush(stdout);
	if (me == die)
		raise(SIGKILL);
	if (me == exit_rank)
		_exit(exit_code);
	int rc = 0;
	if (wait_sig) {
		while (!got_term)
			pause();
		printf("rank %d got signal %d\n", me, (int)got_term);
		fflush(stdout);
	} else {
		for (int i = 0; i < 20 && rc == 0; i++)
			rc = tr_barrier(c);
	}
	if (rc != 0) {
		fprintf(stderr, "comm_peer: rank %d: %s\n", me, tr_comm_error(c));
		_exit(1);
	}
	tr_comm_free(c);
	free(sb);
	free(so);
	free(rb);
	free(ro);
	free(sbuf);
	free(rbuf);
	return 0;
}
