/* comm_hybrid.c - "shm+tcp" and "shm+verbs": for worlds spread over several nodes with several
 * ranks on a node, the ranks of one node talk through shm and ranks of different nodes through tcp
 * or verbs.  Each half is the ordinary transport; this one routes every call by peer and waits on
 * whichever half the operation still needs (on both at once with short slices, checking the shm
 * ranks' liveness as the shm transport itself would).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"

#define MIXED_SLICE_MS 1      /* poll slice while waiting on both halves */
#define LIVENESS_EVERY 100    /* mixed slices between liveness checks of the shm ranks */

struct hybrid {
	struct tr_transport t;
	struct tr_transport *shm; /* NULL when this rank is alone on its node */
	struct tr_transport *tcp; /* the remote half: tcp or verbs */
	int *local;               /* world rank -> index in the shm half, -1 on another node */
	int *node_ranks;          /* shm index -> world rank */
	struct tr_peer *node_peers;
	int *lp, *rp;             /* scratch for wait: peers of each half */
	bool *ls, *lr, *rs, *rr;
	unsigned slices;
	uint64_t rtoken;          /* the remote half's wait token, taken with ours */
};

static struct tr_transport *half(struct hybrid *h, int peer, int *idx)
{
	if (h->local[peer] >= 0) {
		*idx = h->local[peer];
		return h->shm;
	}
	*idx = peer;
	return h->tcp;
}

static ssize_t hy_send(struct tr_transport *t, int peer, const struct iovec *iov, int iovcnt)
{
	struct hybrid *h = (struct hybrid *)t;
	int i;
	struct tr_transport *u = half(h, peer, &i);
	ssize_t k = u->ops->send_some(u, i, iov, iovcnt);
	if (k < 0)
		snprintf(t->err, sizeof(t->err), "%s", u->err);
	return k;
}

static ssize_t hy_recv(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct hybrid *h = (struct hybrid *)t;
	int i;
	struct tr_transport *u = half(h, peer, &i);
	ssize_t k = u->ops->recv_some(u, i, buf, len);
	if (k < 0)
		snprintf(t->err, sizeof(t->err), "%s", u->err);
	return k;
}

static ssize_t hy_peek(struct tr_transport *t, int peer, void *buf, size_t len)
{
	int i;
	struct tr_transport *u = half((struct hybrid *)t, peer, &i);
	return u->ops->peek ? u->ops->peek(u, i, buf, len) : 0;
}

static uint64_t hy_token(struct tr_transport *t)
{
	struct hybrid *h = (struct hybrid *)t;
	h->rtoken = h->tcp->ops->wait_token(h->tcp);
	return h->shm ? h->shm->ops->wait_token(h->shm) : 0;
}

static int hy_wait(struct tr_transport *t, uint64_t token, const int *peers, const bool *sending,
		   const bool *receiving, int n, int ms)
{
	struct hybrid *h = (struct hybrid *)t;
	int nl = 0, nr = 0;
	for (int i = 0; i < n; i++) {
		if (h->local[peers[i]] >= 0) {
			h->lp[nl] = h->local[peers[i]];
			h->ls[nl] = sending[i];
			h->lr[nl++] = receiving[i];
		} else {
			h->rp[nr] = peers[i];
			h->rs[nr] = sending[i];
			h->rr[nr++] = receiving[i];
		}
	}
	struct tr_transport *u;
	int rc;
	if (nr == 0) {
		u = h->shm;
		rc = u->ops->wait(u, token, h->lp, h->ls, h->lr, nl, ms);
	} else if (nl == 0) {
		u = h->tcp;
		rc = u->ops->wait(u, h->rtoken, h->rp, h->rs, h->rr, nr, ms);
	} else {
		/* both: the sockets in short slices, and now and then the shm ranks' liveness (a zero
		 * wait that times out at once runs the same check the shm transport does) */
		u = h->tcp;
		rc = u->ops->wait(u, h->rtoken, h->rp, h->rs, h->rr, nr, ms < MIXED_SLICE_MS ? ms : MIXED_SLICE_MS);
		if (rc == 0 && ++h->slices % LIVENESS_EVERY == 0) {
			u = h->shm;
			rc = u->ops->wait(u, u->ops->wait_token(u), h->lp, h->ls, h->lr, nl, 0);
		}
	}
	if (rc < 0)
		snprintf(t->err, sizeof(t->err), "%s", u->err);
	return rc;
}

static void hy_abandon(struct tr_transport *t)
{
	struct hybrid *h = (struct hybrid *)t;
	h->tcp->ops->abandon(h->tcp);
}

static void hy_destroy(struct tr_transport *t)
{
	struct hybrid *h = (struct hybrid *)t;
	if (h->shm)
		h->shm->ops->destroy(h->shm);
	if (h->tcp)
		h->tcp->ops->destroy(h->tcp);
	free(h->local);
	free(h->node_ranks);
	free(h->node_peers);
	free(h->lp);
	free(h->rp);
	free(h->ls);
	free(h->lr);
	free(h->rs);
	free(h->rr);
	free(h);
}

/* the same calls under the name of the remote half: [0] tcp, [1] verbs */
#define HYBRID_OPS(name) { .kind = name, .send_some = hy_send, .recv_some = hy_recv, .wait_token = hy_token, \
			   .wait = hy_wait, .destroy = hy_destroy, .abandon = hy_abandon, .peek = hy_peek }
static const struct tr_transport_ops hybrid_ops[2] = { HYBRID_OPS("shm+tcp"), HYBRID_OPS("shm+verbs") };

int tr_hybrid_open(const struct tr_world *w, const char *remote, struct tr_transport **out, char *err, size_t errlen)
{
	int n = w->size;
	struct hybrid *h = calloc(1, sizeof(*h));
	if (!h || !(h->local = malloc(n * sizeof(int))) || !(h->node_ranks = malloc(n * sizeof(int))) ||
	    !(h->node_peers = calloc(n, sizeof(struct tr_peer))) || !(h->lp = malloc(n * sizeof(int))) ||
	    !(h->rp = malloc(n * sizeof(int))) || !(h->ls = malloc(n)) || !(h->lr = malloc(n)) || !(h->rs = malloc(n)) ||
	    !(h->rr = malloc(n))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	bool verbs = !strcmp(remote, "verbs");
	h->t.ops = &hybrid_ops[verbs];
	h->t.size = n;
	int nl = 0;
	for (int r = 0; r < n; r++) {
		h->local[r] = -1;
		if (!strcmp(w->peers[r].host, w->peers[w->rank].host)) {
			h->local[r] = nl;
			h->node_ranks[nl] = r;
			h->node_peers[nl++] = w->peers[r];
		}
	}
	/* every node's shm half first (a node-local barrier), then the world's sockets */
	if (nl > 1) {
		struct tr_world sw = { .rank = h->local[w->rank], .size = nl, .peers = h->node_peers, .listen_fd = -1,
				       .timeout = w->timeout };
		snprintf(sw.job, sizeof(sw.job), "%.48s-n%d", w->job, h->node_ranks[0]);
		if (tr_shm_open(&sw, &h->shm, err, errlen) != 0)
			goto fail;
		h->shm->rank = sw.rank;
		h->shm->size = nl;
		h->shm->timeout = w->timeout;
		h->shm->peers = h->node_peers;
		h->shm->rank_map = h->node_ranks;
	} else {
		h->local[w->rank] = -1; /* alone on this node: everything goes over tcp */
	}
#ifdef HAVE_VERBS
	if ((verbs ? tr_verbs_open(w, &h->tcp, err, errlen) : tr_tcp_open(w, &h->tcp, err, errlen)) != 0)
		goto fail;
#else /* comm.c refuses shm+verbs in builds without verbs; no reference to it then */
	if (tr_tcp_open(w, &h->tcp, err, errlen) != 0)
		goto fail;
#endif
	h->tcp->rank = w->rank;
	h->tcp->size = n;
	h->tcp->timeout = w->timeout;
	h->tcp->peers = w->peers;
	*out = &h->t;
	return 0;
fail:
	if (h)
		hy_destroy(&h->t);
	return -1;
}
