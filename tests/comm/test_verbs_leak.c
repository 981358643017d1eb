/* test_verbs_leak.c - the verbs transport frees everything on every path: in one process, a world
 * of two ranks (two threads, each with its own listen socket, as moe-launch would give two
 * processes) is set up, moves a message each way and is torn down 200 times, and a bad
 * MOE_IB_GID_INDEX fails setup 200 times; the kernel's count of this device's queue pairs, memory
 * regions, protection domains, completion queues and contexts, and this process's open files, must
 * end where they started.  Needs a verbs device (run inside the Soft-RoCE guest by verbs_guest.sh).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm_internal.h"

#define ROUNDS 200

static struct tr_peer peers[2];
static int lfd[2];

struct arg {
	int rank, rc;
	char err[TR_ERRLEN];
};

/* One rank's life: open, one 5000-byte message each way (several pieces of a 4 KiB window), close. */
static void *rank_main(void *p)
{
	struct arg *a = p;
	struct tr_world w = { .rank = a->rank, .size = 2, .peers = peers, .listen_fd = lfd[a->rank], .timeout = 20 };
	snprintf(w.job, sizeof(w.job), "leak%d", (int)getpid());
	struct tr_transport *t;
	a->rc = tr_verbs_open(&w, &t, a->err, sizeof(a->err));
	if (a->rc != 0)
		return NULL;
	t->peers = peers;
	t->rank = a->rank;
	t->size = 2;
	t->timeout = 20;
	static char out[2][5000], in[2][5000];
	int other = 1 - a->rank;
	memset(out[a->rank], 'a' + a->rank, sizeof(out[0]));
	size_t sent = 0, got = 0;
	double deadline = tr_now() + 20;
	while ((sent < sizeof(out[0]) || got < sizeof(in[0])) && tr_now() < deadline) {
		uint64_t tok = t->ops->wait_token(t);
		struct iovec iov = { out[a->rank] + sent, sizeof(out[0]) - sent };
		ssize_t k = sent < sizeof(out[0]) ? t->ops->send_some(t, other, &iov, 1) : 0;
		ssize_t r = got < sizeof(in[0]) ? t->ops->recv_some(t, other, in[a->rank] + got, sizeof(in[0]) - got) : 0;
		if (k < 0 || r < 0) {
			snprintf(a->err, sizeof(a->err), "%s", t->err);
			a->rc = -1;
			break;
		}
		sent += k;
		got += r;
		if (k == 0 && r == 0) {
			int peer = other;
			bool s = sent < sizeof(out[0]), rv = got < sizeof(in[0]);
			t->ops->wait(t, tok, &peer, &s, &rv, 1, 50);
		}
	}
	if (a->rc == 0 && (got != sizeof(in[0]) || in[a->rank][4999] != 'a' + other)) {
		snprintf(a->err, sizeof(a->err), "message not delivered (%zu bytes)", got);
		a->rc = -1;
	}
	t->ops->destroy(t);
	return NULL;
}

static int round_trip(char *err, size_t len)
{
	char e[256];
	for (int r = 0; r < 2; r++) {
		if (tr_listen(AF_INET, 0, true, &lfd[r], &peers[r].port, e, sizeof(e)) != 0) {
			snprintf(err, len, "%s", e);
			return -1;
		}
		snprintf(peers[r].host, sizeof(peers[r].host), "node%d", r);
		snprintf(peers[r].addr, sizeof(peers[r].addr), "127.0.0.1");
	}
	struct arg a[2] = { { .rank = 0 }, { .rank = 1 } };
	pthread_t th[2];
	for (int r = 0; r < 2; r++)
		pthread_create(&th[r], NULL, rank_main, &a[r]);
	for (int r = 0; r < 2; r++)
		pthread_join(th[r], NULL);
	for (int r = 0; r < 2; r++)
		close(lfd[r]);
	for (int r = 0; r < 2; r++)
		if (a[r].rc != 0) {
			snprintf(err, len, "rank %d: %s", r, a[r].err);
			return -1;
		}
	return 0;
}

/* "pd N cq N qp N cm_id N mr N ctx N" of the verbs devices, and our open files. */
static void counts(char *buf, size_t len)
{
	FILE *p = popen("rdma res show 2>/dev/null | sed 's/^[0-9]*: [^:]*: //'", "r");
	size_t n = p ? fread(buf, 1, len - 64, p) : 0;
	if (p)
		pclose(p);
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	int fds = 0;
	DIR *d = opendir("/proc/self/fd");
	for (struct dirent *e; d && (e = readdir(d));)
		fds += e->d_name[0] != '.';
	if (d)
		closedir(d);
	snprintf(buf + strlen(buf), 64, ", %d open files", fds);
}

int main(void)
{
	char before[512], after[512], err[TR_ERRLEN];
	if (round_trip(err, sizeof(err)) != 0) { /* warm up: libraries load their providers once */
		printf("first setup failed: %s\n", err);
		return 1;
	}
	counts(before, sizeof(before));
	for (int i = 0; i < ROUNDS; i++)
		if (round_trip(err, sizeof(err)) != 0) {
			printf("round %d: %s\n", i, err);
			return 1;
		}
	setenv("MOE_IB_GID_INDEX", "999", 1);
	for (int i = 0; i < ROUNDS; i++)
		if (round_trip(err, sizeof(err)) == 0 || !strstr(err, "MOE_IB_GID_INDEX=999")) {
			printf("bad GID index round %d: %s\n", i, err);
			return 1;
		}
	counts(after, sizeof(after));
	printf("before: %s\nafter:  %s\n", before, after);
	if (strcmp(before, after) != 0) {
		printf("resources leaked\n");
		return 1;
	}
	printf("%s, unchanged\n", after);
	return 0;
}
