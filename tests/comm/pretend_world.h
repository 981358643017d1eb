/* pretend_world.h - n ranks as forked processes of this machine, wired as moe-launch wires a job: one
 * listening socket per rank and the peer table (MOE_COMM_PEERS) naming each rank's host, "node" + fake[r]
 * to pretend several nodes (fake NULL: this host); in each child, the environment tr_comm_init reads.
 * Shared by the transport tests (test_comm.c) and the device communicator tests (test_devcomm.c).
 */
#ifndef TEST_PRETEND_WORLD_H
#define TEST_PRETEND_WORLD_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm_internal.h"

struct pretend_world {
	int n;
	int *lfd;
	struct tr_peer *peers;
	char *table;
};

/* the sockets and the table; bails out of the test when a socket cannot listen */
static void pw_open(struct pretend_world *w, int n, const char *fake)
{
	char host[TR_HOST_LEN] = "", err[512];
	gethostname(host, sizeof(host) - 1);
	w->n = n;
	w->lfd = calloc(n, sizeof(int));
	w->peers = calloc(n, sizeof(*w->peers));
	for (int r = 0; r < n; r++) {
		if (tr_listen(AF_INET, 0, true, &w->lfd[r], &w->peers[r].port, err, sizeof(err)) != 0) {
			printf("Bail out! %s\n", err);
			exit(1);
		}
		if (fake)
			snprintf(w->peers[r].host, sizeof(w->peers[r].host), "node%c", fake[r]);
		else
			snprintf(w->peers[r].host, sizeof(w->peers[r].host), "%s", host);
		snprintf(w->peers[r].addr, sizeof(w->peers[r].addr), "127.0.0.1");
	}
	w->table = tr_peers_format(w->peers, n);
}

/* in rank r's child: its socket, the table and the job name in the environment; the others' sockets closed */
static void pw_enter(const struct pretend_world *w, int r, const char *job)
{
	char v[32];
	for (int q = 0; q < w->n; q++)
		if (q != r)
			close(w->lfd[q]);
	snprintf(v, sizeof(v), "%d", w->lfd[r]);
	setenv("MOE_COMM_FD", v, 1);
	setenv("MOE_COMM_PEERS", w->table, 1);
	setenv("MOE_COMM_JOB", job, 1);
}

/* in the parent once the ranks are forked */
static void pw_close(struct pretend_world *w)
{
	for (int r = 0; r < w->n; r++)
		close(w->lfd[r]);
	free(w->lfd), free(w->peers), free(w->table);
}

#endif
