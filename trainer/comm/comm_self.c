/* comm_self.c - the transport of a world of one rank: every collective is a local copy, done in
 * comm.c before a transport is asked, so these operations are never reached with a peer. */
#include <stdio.h>
#include <stdlib.h>

#include "comm_internal.h"

static ssize_t self_send(struct tr_transport *t, int peer, const struct iovec *iov, int iovcnt)
{
	snprintf(t->err, sizeof(t->err), "self: no rank %d in a world of one", peer);
	return -1;
}

static ssize_t self_recv(struct tr_transport *t, int peer, void *buf, size_t len)
{
	snprintf(t->err, sizeof(t->err), "self: no rank %d in a world of one", peer);
	return -1;
}

static uint64_t self_token(struct tr_transport *t)
{
	return 0;
}

static int self_wait(struct tr_transport *t, uint64_t token, const int *peers, const bool *sending,
		     const bool *receiving, int n, int ms)
{
	snprintf(t->err, sizeof(t->err), "self: nothing to wait for");
	return -1;
}

static void self_destroy(struct tr_transport *t)
{
	free(t);
}

static const struct tr_transport_ops self_ops = {
	.kind = "self",
	.send_some = self_send,
	.recv_some = self_recv,
	.wait_token = self_token,
	.wait = self_wait,
	.destroy = self_destroy,
};

int tr_self_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen)
{
	struct tr_transport *t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	t->ops = &self_ops;
	*out = t;
	return 0;
}
