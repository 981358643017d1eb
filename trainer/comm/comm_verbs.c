/* comm_verbs.c - the verbs transport: one RC queue pair per pair of ranks, RDMA WRITE into the
 * peer's registered receive window (RoCE v2 or InfiniBand).
 *
 * Per peer, the receiver owns a window of W bytes (MOE_IB_WINDOW, a power of two) and the sender a
 * staging ring of the same size, both in one memory region registered at open (never per call).  A
 * byte stream runs through them: the sender copies what comm.c hands it to stream position s into
 * staging at s mod W and writes it to the same offset of the peer's window, the last piece of each
 * write as RDMA WRITE_WITH_IMM whose immediate is the length, so the receiver learns what arrived
 * from its completion queue.  The receiver copies bytes out and returns credits (SEND_WITH_IMM, top
 * bit set) once a quarter window is free, so messages larger than the window pipeline through it.
 * comm.c frames messages on this stream as on tcp's, so headers, abort notices and every check
 * stay the same.  The TCP connections that carried the connection setup (QPN, PSN, GID/LID, window
 * address and rkey) stay open only to see a dead peer at once; no data goes over them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm_internal.h"
#include "comm_verbs.h"

#define SQ_DEPTH 128     /* send work requests in flight per peer */
#define RQ_DEPTH 256     /* receive work requests posted per peer (immediates and credits) */
#define CREDIT_BIT 0x80000000u
#define CONN_MAGIC 0x4d4f4556u /* "MOEV" */
#define ACK_EVENTS 64    /* completion events acknowledged in batches */

enum wr_kind { WR_DATA = 0, WR_CREDIT = 1, WR_RECV = 2 };
#define WR_ID(peer, kind) (((uint64_t)(peer) << 2) | (kind))

struct vpeer {
	struct ibv_qp *qp;
	char *stage, *win;          /* our staging ring for this peer, our window it writes into */
	uint64_t raddr;             /* its window for us */
	uint32_t rkey;
	uint64_t sent, credited;    /* stream bytes posted / freed by the peer */
	uint64_t arrived, consumed, returned;
	int sq_out;                 /* send work requests not completed yet */
	int sock;                   /* setup connection, kept to notice a dead peer */
	bool closed;
};

struct verbs {
	struct tr_transport t;
	struct tr_ib_opts o;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_comp_channel *chan;
	struct ibv_cq *cq;
	struct ibv_mr *mr;
	char *mem;
	size_t mem_len;
	struct vpeer *p;            /* p[peer]; self unused */
	struct pollfd *pfd;
	int *pfd_peer;              /* the peer of each pfd entry after the channel's */
	uint64_t completions;       /* wait token */
	unsigned unacked;           /* CQ events not yet acknowledged */
	bool failed;                /* a completion error: t->err names it */
	struct ibv_wc wc[32];
};

/* What one side tells the other about the QP that connects them. */
struct conn_info {
	uint32_t magic, rank, qpn, psn;
	uint16_t lid;
	uint8_t gid[16];
	uint8_t mtu, is_ib;
	uint64_t win_addr, win_len;
	uint32_t rkey, pad;
};

static const char *status_name(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_LOC_LEN_ERR: return "IBV_WC_LOC_LEN_ERR";
	case IBV_WC_LOC_QP_OP_ERR: return "IBV_WC_LOC_QP_OP_ERR";
	case IBV_WC_LOC_PROT_ERR: return "IBV_WC_LOC_PROT_ERR";
	case IBV_WC_WR_FLUSH_ERR: return "IBV_WC_WR_FLUSH_ERR";
	case IBV_WC_REM_INV_REQ_ERR: return "IBV_WC_REM_INV_REQ_ERR";
	case IBV_WC_REM_ACCESS_ERR: return "IBV_WC_REM_ACCESS_ERR";
	case IBV_WC_REM_OP_ERR: return "IBV_WC_REM_OP_ERR";
	case IBV_WC_RETRY_EXC_ERR: return "IBV_WC_RETRY_EXC_ERR";
	case IBV_WC_RNR_RETRY_EXC_ERR: return "IBV_WC_RNR_RETRY_EXC_ERR";
	case IBV_WC_REM_ABORT_ERR: return "IBV_WC_REM_ABORT_ERR";
	case IBV_WC_FATAL_ERR: return "IBV_WC_FATAL_ERR";
	case IBV_WC_RESP_TIMEOUT_ERR: return "IBV_WC_RESP_TIMEOUT_ERR";
	default: return "IBV_WC_ERROR";
	}
}

static void peer_err(struct verbs *v, int peer, const char *what)
{
	snprintf(v->t.err, sizeof(v->t.err), "verbs: rank %d on node %s: %s", peer, v->t.peers[peer].host, what);
}

/* Reaps completions: arrivals, credits, finished sends.  -1 on a completion error (t->err). */
static int progress(struct verbs *v)
{
	if (v->failed)
		return -1;
	for (;;) {
		int n = ibv_poll_cq(v->cq, 32, v->wc);
		if (n < 0) {
			snprintf(v->t.err, sizeof(v->t.err), "verbs: polling the completion queue failed");
			v->failed = true;
			return -1;
		}
		if (n == 0)
			return 0;
		v->completions += n;
		for (int i = 0; i < n; i++) {
			struct ibv_wc *wc = &v->wc[i];
			int peer = (int)(wc->wr_id >> 2), kind = (int)(wc->wr_id & 3);
			struct vpeer *p = &v->p[peer];
			if (wc->status != IBV_WC_SUCCESS) {
				char what[256];
				snprintf(what, sizeof(what), "%s %s (%s, vendor error 0x%x)",
					 kind == WR_RECV ? "receive" : kind == WR_CREDIT ? "credit send" : "RDMA WRITE",
					 status_name(wc->status), ibv_wc_status_str(wc->status), wc->vendor_err);
				peer_err(v, peer, what);
				v->failed = true;
				return -1;
			}
			if (kind != WR_RECV) {
				p->sq_out--;
				continue;
			}
			if (wc->wc_flags & IBV_WC_WITH_IMM) {
				uint32_t imm = ntohl(wc->imm_data);
				if (imm & CREDIT_BIT)
					p->credited += imm & ~CREDIT_BIT;
				else
					p->arrived += imm;
			}
			struct ibv_recv_wr rw = { .wr_id = WR_ID(peer, WR_RECV) }, *bad;
			if (ibv_post_recv(p->qp, &rw, &bad) != 0) {
				peer_err(v, peer, "cannot repost a receive request");
				v->failed = true;
				return -1;
			}
		}
	}
}

static int post_write(struct verbs *v, int peer, size_t off, size_t len, bool imm, uint32_t total)
{
	struct vpeer *p = &v->p[peer];
	struct ibv_sge sge = { .addr = (uintptr_t)(p->stage + off), .length = (uint32_t)len, .lkey = v->mr->lkey };
	struct ibv_send_wr wr = { .wr_id = WR_ID(peer, WR_DATA), .sg_list = &sge, .num_sge = 1,
				  .opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;
	wr.imm_data = htonl(total);
	wr.wr.rdma.remote_addr = p->raddr + off;
	wr.wr.rdma.rkey = p->rkey;
	int e = ibv_post_send(p->qp, &wr, &bad);
	if (e) {
		char what[128];
		snprintf(what, sizeof(what), "posting an RDMA WRITE failed: %s", strerror(e));
		peer_err(v, peer, what);
		return -1;
	}
	p->sq_out++;
	return 0;
}

static ssize_t vb_send(struct tr_transport *t, int peer, const struct iovec *iov, int iovcnt)
{
	struct verbs *v = (struct verbs *)t;
	struct vpeer *p = &v->p[peer];
	size_t W = v->o.window;
	if (progress(v) < 0)
		return -1;
	if (p->closed) {
		peer_err(v, peer, "exited (its connection closed)");
		return -1;
	}
	size_t want = 0;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	size_t room = W - (size_t)(p->sent - p->credited), n = want;
	if (n > room)
		n = room;
	if (n > W / 4)
		n = W / 4; /* pieces of a quarter window: the receiver frees and credits while the rest flies */
	if (n == 0 || p->sq_out + 2 > SQ_DEPTH)
		return 0;
	size_t pos = p->sent & (W - 1), done = 0;
	for (int i = 0; i < iovcnt && done < n; i++) {
		const char *src = iov[i].iov_base;
		size_t k = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
		while (k > 0) {
			size_t at = (pos + done) & (W - 1), c = k < W - at ? k : W - at;
			memcpy(p->stage + at, src, c);
			src += c;
			done += c;
			k -= c;
		}
	}
	/* the part up to the window's end as a plain write, the rest (or all) with the immediate:
	 * RC delivers in order, so the receiver sees the bytes before the completion that counts them */
	size_t first = n < W - pos ? n : W - pos;
	if (first < n && post_write(v, peer, pos, first, false, 0) != 0)
		return -1;
	if (first < n ? post_write(v, peer, 0, n - first, true, (uint32_t)n) : post_write(v, peer, pos, n, true, (uint32_t)n))
		return -1;
	p->sent += n;
	return (ssize_t)n;
}

static int return_credit(struct verbs *v, int peer)
{
	struct vpeer *p = &v->p[peer];
	uint64_t owed = p->consumed - p->returned;
	if (owed < v->o.window / 4 || p->sq_out + 1 > SQ_DEPTH || p->closed)
		return 0;
	struct ibv_send_wr wr = { .wr_id = WR_ID(peer, WR_CREDIT), .opcode = IBV_WR_SEND_WITH_IMM,
				  .send_flags = IBV_SEND_SIGNALED }, *bad;
	wr.imm_data = htonl(CREDIT_BIT | (uint32_t)owed);
	if (ibv_post_send(p->qp, &wr, &bad) != 0) {
		peer_err(v, peer, "posting a credit failed");
		return -1;
	}
	p->sq_out++;
	p->returned = p->consumed;
	return 0;
}

static size_t copy_out(struct verbs *v, int peer, void *buf, size_t len, bool consume)
{
	struct vpeer *p = &v->p[peer];
	size_t W = v->o.window, avail = (size_t)(p->arrived - p->consumed), n = len < avail ? len : avail;
	size_t pos = p->consumed & (W - 1), first = n < W - pos ? n : W - pos;
	memcpy(buf, p->win + pos, first);
	memcpy((char *)buf + first, p->win, n - first);
	if (consume)
		p->consumed += n;
	return n;
}

static ssize_t vb_recv(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct verbs *v = (struct verbs *)t;
	struct vpeer *p = &v->p[peer];
	if (progress(v) < 0)
		return -1;
	size_t n = copy_out(v, peer, buf, len, true);
	if (n == 0 && p->closed) {
		peer_err(v, peer, "exited (its connection closed)");
		return -1;
	}
	if (n > 0 && return_credit(v, peer) != 0)
		return -1;
	return (ssize_t)n;
}

static ssize_t vb_peek(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct verbs *v = (struct verbs *)t;
	if (progress(v) < 0)
		return 0;
	return (ssize_t)copy_out(v, peer, buf, len, false);
}

static uint64_t vb_token(struct tr_transport *t)
{
	struct verbs *v = (struct verbs *)t;
	progress(v);
	return v->completions;
}

/* A setup connection that became readable: its peer exited (nothing else is ever sent on it). */
static void check_socks(struct verbs *v, const int *peers, int n)
{
	for (int i = 1; i < n; i++) {
		if (!v->pfd[i].revents)
			continue;
		char c;
		ssize_t k = recv(v->pfd[i].fd, &c, 1, MSG_DONTWAIT);
		if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR) || (v->pfd[i].revents & (POLLHUP | POLLERR)))
			v->p[peers[i]].closed = true;
	}
}

static int vb_wait(struct tr_transport *t, uint64_t token, const int *peers, const bool *sending,
		   const bool *receiving, int n, int ms)
{
	struct verbs *v = (struct verbs *)t;
	(void)sending;
	(void)receiving;
	if (progress(v) < 0)
		return -1;
	/* credits that could not go out when earned (send queue full): a sender may be waiting on them */
	for (int i = 0; i < n; i++)
		if (return_credit(v, peers[i]) != 0)
			return -1;
	if (v->completions != token)
		return 0;
	/* arm, then look again: a completion between the last poll and the arming is not lost */
	if (ibv_req_notify_cq(v->cq, 0) != 0) {
		snprintf(t->err, sizeof(t->err), "verbs: cannot arm the completion queue");
		return -1;
	}
	if (progress(v) < 0)
		return -1;
	if (v->completions != token)
		return 0;
	int np = 0;
	v->pfd[np++] = (struct pollfd){ .fd = v->chan->fd, .events = POLLIN };
	for (int i = 0; i < n; i++)
		if (!v->p[peers[i]].closed) {
			v->pfd_peer[np] = peers[i];
			v->pfd[np++] = (struct pollfd){ .fd = v->p[peers[i]].sock, .events = POLLIN };
		}
	int r = poll(v->pfd, np, ms);
	if (r < 0 && errno != EINTR) {
		snprintf(t->err, sizeof(t->err), "verbs: poll: %s", strerror(errno));
		return -1;
	}
	if (r > 0 && v->pfd[0].revents) {
		struct ibv_cq *cq;
		void *ctx;
		if (ibv_get_cq_event(v->chan, &cq, &ctx) == 0 && ++v->unacked >= ACK_EVENTS) {
			ibv_ack_cq_events(v->cq, v->unacked);
			v->unacked = 0;
		}
	}
	if (r > 0)
		check_socks(v, v->pfd_peer, np);
	/* a peer that closed may have left its last words (an abort notice) in our window: recv
	 * returns them first, and only then the closed connection */
	return progress(v) < 0 ? -1 : 0;
}

/* Waits (briefly) until what we posted has left: an abort notice must arrive before we go. */
static void drain_sends(struct verbs *v, double secs)
{
	double deadline = tr_now() + secs;
	for (;;) {
		bool busy = false;
		for (int q = 0; q < v->t.size; q++)
			busy |= v->p && v->p[q].qp && v->p[q].sq_out > 0 && !v->p[q].closed;
		if (!busy || progress(v) < 0 || tr_now() > deadline)
			return;
		usleep(200);
	}
}

static void vb_abandon(struct tr_transport *t)
{
	drain_sends((struct verbs *)t, 0.5);
}

static void vb_free(struct verbs *v)
{
	for (int q = 0; v->p && q < v->t.size; q++) {
		if (v->p[q].qp)
			ibv_destroy_qp(v->p[q].qp);
		if (v->p[q].sock >= 0)
			close(v->p[q].sock);
	}
	if (v->mr)
		ibv_dereg_mr(v->mr);
	if (v->cq) {
		if (v->unacked)
			ibv_ack_cq_events(v->cq, v->unacked);
		ibv_destroy_cq(v->cq);
	}
	if (v->chan)
		ibv_destroy_comp_channel(v->chan);
	if (v->pd)
		ibv_dealloc_pd(v->pd);
	if (v->ctx)
		ibv_close_device(v->ctx);
	free(v->mem);
	free(v->p);
	free(v->pfd);
	free(v->pfd_peer);
	free(v);
}

static void vb_destroy(struct tr_transport *t)
{
	struct verbs *v = (struct verbs *)t;
	drain_sends(v, 2);
	vb_free(v);
}

static const struct tr_transport_ops verbs_ops = {
	.kind = "verbs",
	.send_some = vb_send,
	.recv_some = vb_recv,
	.wait_token = vb_token,
	.wait = vb_wait,
	.destroy = vb_destroy,
	.abandon = vb_abandon,
	.peek = vb_peek,
};

static int mtu_bytes(enum ibv_mtu m)
{
	return 128 << m; /* IBV_MTU_256 = 1 */
}

static int open_device(struct verbs *v, struct ibv_port_attr *pa, union ibv_gid *gid, int *gid_index, char *err,
		       size_t errlen)
{
	struct tr_ib_opts *o = &v->o;
	if (tr_ib_choose_port(TR_IB_SYSFS, o, err, errlen) != 0)
		return -1;
	int n;
	struct ibv_device **list = ibv_get_device_list(&n);
	for (int i = 0; list && i < n && !v->ctx; i++)
		if (!strcmp(ibv_get_device_name(list[i]), o->dev))
			v->ctx = ibv_open_device(list[i]);
	if (list)
		ibv_free_device_list(list);
	if (!v->ctx) {
		snprintf(err, errlen, "cannot open RDMA device '%s': %s (is its verbs provider installed?)", o->dev,
			 strerror(errno ? errno : ENODEV));
		return -1;
	}
	if (ibv_query_port(v->ctx, (uint8_t)o->port, pa) != 0) {
		snprintf(err, errlen, "RDMA device '%s' has no port %d", o->dev, o->port);
		return -1;
	}
	*gid_index = 0;
	memset(gid, 0, sizeof(*gid));
	bool ib = pa->link_layer == IBV_LINK_LAYER_INFINIBAND;
	if (!ib || o->gid_index >= 0) { /* InfiniBand: the LID, and GID 0 unless told */
		char dir[300];
		struct tr_ib_gid g;
		snprintf(dir, sizeof(dir), "%s/%s", TR_IB_SYSFS, o->dev);
		if (tr_ib_gid_pick(dir, o->dev, o->port, o->family, o->gid_index, &g, err, errlen) != 0)
			return -1;
		*gid_index = g.index;
		memcpy(gid->raw, g.raw, 16);
	}
	return 0;
}

static int qp_connect(struct verbs *v, int peer, const struct conn_info *me, const struct conn_info *them, int gid_index,
		      char *err, size_t errlen)
{
	struct ibv_qp *qp = v->p[peer].qp;
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_RTR, .path_mtu = me->mtu < them->mtu ? me->mtu : them->mtu,
				 .dest_qp_num = them->qpn, .rq_psn = them->psn, .max_dest_rd_atomic = 1,
				 .min_rnr_timer = 12 };
	a.ah_attr.port_num = (uint8_t)v->o.port;
	a.ah_attr.sl = (uint8_t)v->o.sl;
	if (them->is_ib && v->o.gid_index < 0) {
		a.ah_attr.dlid = them->lid;
	} else {
		a.ah_attr.is_global = 1;
		memcpy(a.ah_attr.grh.dgid.raw, them->gid, 16);
		a.ah_attr.grh.sgid_index = (uint8_t)gid_index;
		a.ah_attr.grh.hop_limit = 255;
		a.ah_attr.grh.traffic_class = (uint8_t)v->o.tc;
		a.ah_attr.dlid = them->lid;
	}
	int e = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
				  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (e == 0) {
		memset(&a, 0, sizeof(a));
		a.qp_state = IBV_QPS_RTS;
		a.timeout = (uint8_t)v->o.timeout;
		a.retry_cnt = 7;
		a.rnr_retry = 7; /* "infinite": a receiver busy computing is not an error */
		a.sq_psn = me->psn;
		a.max_rd_atomic = 1;
		e = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
					  IBV_QP_MAX_QP_RD_ATOMIC);
	}
	if (e) {
		snprintf(err, errlen, "verbs: cannot connect the queue pair to rank %d on node %s: %s", peer,
			 v->t.peers[peer].host, strerror(e));
		return -1;
	}
	return 0;
}

static int make_qp(struct verbs *v, int peer, char *err, size_t errlen)
{
	struct ibv_qp_init_attr ia = { .send_cq = v->cq, .recv_cq = v->cq, .qp_type = IBV_QPT_RC,
				       .cap = { .max_send_wr = SQ_DEPTH, .max_recv_wr = RQ_DEPTH, .max_send_sge = 1,
						.max_recv_sge = 1 } };
	struct ibv_qp *qp = ibv_create_qp(v->pd, &ia);
	if (!qp) {
		snprintf(err, errlen, "verbs: cannot create a queue pair on %s: %s", v->o.dev, strerror(errno));
		return -1;
	}
	v->p[peer].qp = qp;
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = (uint8_t)v->o.port,
				 .qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE };
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) != 0) {
		snprintf(err, errlen, "verbs: cannot initialise a queue pair on %s port %d", v->o.dev, v->o.port);
		return -1;
	}
	for (int i = 0; i < RQ_DEPTH; i++) {
		struct ibv_recv_wr rw = { .wr_id = WR_ID(peer, WR_RECV) }, *bad;
		if (ibv_post_recv(qp, &rw, &bad) != 0) {
			snprintf(err, errlen, "verbs: cannot post receive requests on %s", v->o.dev);
			return -1;
		}
	}
	return 0;
}

static void log_choice(const struct verbs *v, const struct ibv_port_attr *pa, int gid_index, const union ibv_gid *gid)
{
	char g[64];
	tr_ib_gid_format(gid->raw, g, sizeof(g));
	if (pa->link_layer == IBV_LINK_LAYER_INFINIBAND && v->o.gid_index < 0)
		fprintf(stderr, "rank %d: verbs: %s port %d (InfiniBand, LID %u), MTU %d, window %zu KiB per peer, "
			"GPU memory: %s\n", v->t.rank, v->o.dev, v->o.port, pa->lid, mtu_bytes(pa->active_mtu),
			v->o.window >> 10, tr_ib_gpu_mode());
	else
		fprintf(stderr, "rank %d: verbs: %s port %d, GID index %d (%s), TC %d SL %d, MTU %d, window %zu KiB "
			"per peer, GPU memory: %s\n", v->t.rank, v->o.dev, v->o.port, gid_index, g, v->o.tc, v->o.sl,
			mtu_bytes(pa->active_mtu), v->o.window >> 10, tr_ib_gpu_mode());
}

int tr_verbs_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen)
{
	struct verbs *v = calloc(1, sizeof(*v));
	if (!v) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	v->t.ops = &verbs_ops;
	v->t.rank = w->rank;
	v->t.size = w->size;
	v->t.peers = w->peers; /* for messages; tr_comm_init hands over the same table */
	if (tr_ib_opts_read(&v->o, err, errlen) != 0) {
		free(v);
		return -1;
	}
	v->p = calloc(w->size, sizeof(*v->p));
	v->pfd = calloc(w->size + 1, sizeof(*v->pfd));
	v->pfd_peer = calloc(w->size + 1, sizeof(int));
	if (!v->p || !v->pfd || !v->pfd_peer) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int q = 0; q < w->size; q++)
		v->p[q].sock = -1;
	struct ibv_port_attr pa;
	union ibv_gid gid;
	int gid_index;
	char why[TR_ERRLEN];
	if (open_device(v, &pa, &gid, &gid_index, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "verbs: %s", why);
		goto fail;
	}
	size_t W = v->o.window;
	v->mem_len = 2 * W * (size_t)(w->size > 1 ? w->size - 1 : 1);
	if (posix_memalign((void **)&v->mem, 4096, v->mem_len) != 0) {
		v->mem = NULL;
		snprintf(err, errlen, "verbs: cannot allocate %zu bytes of windows", v->mem_len);
		goto fail;
	}
	memset(v->mem, 0, v->mem_len);
	bool staged;
	int cqe = (SQ_DEPTH + RQ_DEPTH) * (w->size > 1 ? w->size - 1 : 1);
	if (!(v->pd = ibv_alloc_pd(v->ctx)) || !(v->chan = ibv_create_comp_channel(v->ctx)) ||
	    !(v->cq = ibv_create_cq(v->ctx, cqe, NULL, v->chan, 0)) ||
	    !(v->mr = tr_ib_reg(v->pd, v->mem, v->mem_len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, &staged))) {
		snprintf(err, errlen, "verbs: cannot set up %s (protection domain, completion queue of %d or %zu-byte "
			 "memory region): %s", v->o.dev, cqe, v->mem_len, strerror(errno));
		goto fail;
	}
	for (int q = 0, k = 0; q < w->size; q++) {
		if (q == w->rank)
			continue;
		v->p[q].stage = v->mem + (2 * k) * W;
		v->p[q].win = v->mem + (2 * k + 1) * W;
		k++;
		if (make_qp(v, q, err, errlen) != 0)
			goto fail;
	}
	/* the setup connections: the same pairwise sockets tcp uses */
	int *fds = calloc(w->size, sizeof(int));
	if (!fds || tr_tcp_mesh(w, fds, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "verbs: connection setup: %s", fds ? why : "out of memory");
		free(fds);
		goto fail;
	}
	for (int q = 0; q < w->size; q++)
		v->p[q].sock = q == w->rank ? -1 : fds[q];
	free(fds);
	double deadline = tr_now() + w->timeout;
	struct conn_info *mine = calloc(w->size, sizeof(*mine));
	if (!mine) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int q = 0; q < w->size; q++) {
		if (q == w->rank)
			continue;
		struct conn_info *ci = &mine[q];
		*ci = (struct conn_info){ .magic = CONN_MAGIC, .rank = (uint32_t)w->rank, .qpn = v->p[q].qp->qp_num,
					  .psn = (uint32_t)(tr_random64() & 0xffffff), .lid = pa.lid,
					  .mtu = (uint8_t)pa.active_mtu,
					  .is_ib = pa.link_layer == IBV_LINK_LAYER_INFINIBAND,
					  .win_addr = (uintptr_t)v->p[q].win, .win_len = W, .rkey = v->mr->rkey };
		memcpy(ci->gid, gid.raw, 16);
		if (tr_sock_full(v->p[q].sock, ci, sizeof(*ci), true, deadline) != 0) {
			snprintf(err, errlen, "verbs: rank %d on node %s went away during connection setup", q,
				 w->peers[q].host);
			free(mine);
			goto fail;
		}
	}
	for (int q = 0; q < w->size; q++) {
		if (q == w->rank)
			continue;
		struct conn_info them;
		if (tr_sock_full(v->p[q].sock, &them, sizeof(them), false, deadline) != 0 || them.magic != CONN_MAGIC ||
		    them.rank != (uint32_t)q || them.win_len != W) {
			snprintf(err, errlen, "verbs: rank %d on node %s: connection setup failed (%s)", q, w->peers[q].host,
				 them.magic == CONN_MAGIC && them.win_len != W ? "MOE_IB_WINDOW differs between ranks"
									 : "went away or timed out");
			free(mine);
			goto fail;
		}
		v->p[q].raddr = them.win_addr;
		v->p[q].rkey = them.rkey;
		if (qp_connect(v, q, &mine[q], &them, gid_index, err, errlen) != 0) {
			free(mine);
			goto fail;
		}
	}
	free(mine);
	/* everyone's queue pairs are ready to receive before anyone writes */
	for (int q = 0; q < w->size; q++) {
		char c = 'R';
		if (q != w->rank && tr_sock_full(v->p[q].sock, &c, 1, true, deadline) != 0) {
			snprintf(err, errlen, "verbs: rank %d on node %s went away during connection setup", q, w->peers[q].host);
			goto fail;
		}
	}
	for (int q = 0; q < w->size; q++) {
		char c;
		if (q != w->rank && (tr_sock_full(v->p[q].sock, &c, 1, false, deadline) != 0 || c != 'R')) {
			snprintf(err, errlen, "verbs: rank %d on node %s went away during connection setup", q, w->peers[q].host);
			goto fail;
		}
	}
	if (v->o.verbose)
		log_choice(v, &pa, gid_index, &gid);
	*out = &v->t;
	return 0;
fail:
	vb_free(v);
	return -1;
}
