/* comm.c - the transport-independent half of comm.h: init from the environment moe-launch leaves,
 * transport choice, communicators and split, and every collective built on one engine that moves
 * framed messages to and from all peers of an operation at once.
 *
 * Each message carries a header (communicator tag, operation, sequence number, length) so a peer
 * that called collectives in a different order, or sent a different size, is reported by rank
 * instead of corrupting data.  Every wait is bounded by the timeout, which restarts on progress.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

#define HDR_MAGIC 0x4d4f4531u /* "MOE1" */
#define ABORT_MAGIC 0x4d4f4541u /* "MOEA": a failing rank's last word, followed by its error text */
#define WAIT_SLICE_MS 100     /* longest sleep between liveness checks */

enum op { OP_ALLTOALLV = 1, OP_ALLTOALL, OP_ALLREDUCE_RS, OP_ALLREDUCE_AG, OP_ALLGATHER, OP_BARRIER, OP_SPLIT };
static const char *op_name(uint32_t op)
{
	static const char *names[] = { "?", "alltoallv", "alltoall", "allreduce", "allreduce", "allgather",
				       "barrier", "split" };
	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

struct hdr {
	uint32_t magic, tag, op, seq;
	uint64_t len;
};

struct tr_comm {
	struct tr_transport *t;
	int rank, size;
	int *world;          /* world[i]: transport rank of member i */
	uint32_t tag;        /* same on every member: checks messages belong to this communicator */
	uint32_t seq;        /* collectives issued so far */
	uint32_t splits;
	uint64_t a2a_bytes;
	bool broken;         /* after a failure the streams are out of step: every later call fails */
	bool notified;       /* an abort notice went out */
	unsigned char *told; /* per transport rank: TOLD_WHOLE, TOLD_CUT (a notice cut off mid-frame) or 0 */
	int blame;           /* transport rank the reason in hand blames (-1: none), in the notice */
	int via;             /* transport rank whose reason this one passes on while it lingers (-1: its own) */
	int relays;          /* reasons taken over while lingering (bounds the linger) */
	double since;        /* last progress of the operation in flight */
	double linger_until; /* > 0: gave up at a timeout, still listening for the waited-for peers' reasons */
	char mine[TR_ERRLEN]; /* the reason in hand while it lingers */
	struct xfer *cur;    /* the operation in flight (for abort notices), NULL between operations */
	int cur_n;
	char err[TR_ERRLEN];
	void *scratch;
	size_t scratch_len;
	enum tr_a2a_mode a2a_mode;
	struct tr_rail *rail; /* node layout, counters, rail-mode sub-communicators */
};

/* One peer's part of an operation: at most one message each way. */
struct xfer {
	int peer;            /* communicator rank */
	bool sending, receiving;
	const char *sbuf;
	size_t slen, sdone;  /* sdone counts header bytes too */
	char *rbuf;
	size_t rlen, rdone;
	struct hdr shdr, rhdr;
};

double tr_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void tr_peer_name(const struct tr_transport *t, int peer, char *buf, size_t len)
{
	const struct tr_peer *p = &t->peers[peer];
	/* the host names the node in a failure message (a lost node is what users look for) */
	if (p->port > 0 && p->host[0])
		snprintf(buf, len, "%s at %s:%d", p->host, p->addr, p->port);
	else if (p->port > 0)
		snprintf(buf, len, "%s:%d", p->addr, p->port);
	else
		snprintf(buf, len, "%s", p->host);
}

enum { TOLD_WHOLE = 1, TOLD_CUT };

/* Tells every peer whose stream is at a message boundary why this rank gives up, so that ranks
 * further away report the cause instead of "rank R closed the connection".  Best effort: a short
 * deadline; peers in the middle of a message are skipped (the frame would corrupt it), and so are
 * peers an earlier notice reached only in part.  A told peer gets nothing more of this operation, so
 * a lingering rank that learns a better reason can tell it again on the same streams.  The header's
 * op field carries 1 + the rank the reason blames (0: none), so that rank can tell it is being blamed
 * and report what it waits for itself. */
static void notify_abort(struct tr_comm *c, const char *why)
{
	struct tr_transport *t = c->t;
	struct hdr h = { ABORT_MAGIC, c->tag, (uint32_t)(c->blame + 1), c->seq, strlen(why) };
	c->notified = true;
	if (!c->told && !(c->told = calloc(t->size, 1)))
		return;
	double deadline = tr_now() + 0.2;
	for (int p = 0; p < t->size; p++) {
		if (p == t->rank || c->told[p] == TOLD_CUT)
			continue;
		struct xfer *to = NULL;
		for (int i = 0; i < c->cur_n; i++)
			if (c->world[c->cur[i].peer] == p && c->cur[i].sending)
				to = &c->cur[i];
		if (to && to->sdone > 0)
			continue;
		size_t done = 0, total = sizeof(h) + h.len;
		/* at least one try per peer, however late: a rank descheduled past the deadline (a loaded
		 * machine) must still leave its notice in every socket buffer with room */
		for (bool first = true; done < total && (first || tr_now() < deadline); first = false) {
			struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)why, h.len } };
			struct iovec rest[2];
			int cnt = 0;
			size_t skip = done;
			for (int k = 0; k < 2; k++) {
				if (skip >= iov[k].iov_len) {
					skip -= iov[k].iov_len;
					continue;
				}
				rest[cnt].iov_base = (char *)iov[k].iov_base + skip;
				rest[cnt++].iov_len = iov[k].iov_len - skip;
				skip = 0;
			}
			ssize_t k = t->ops->send_some(t, p, rest, cnt);
			if (k < 0)
				break; /* that peer is gone too */
			done += k;
		}
		if (done > 0) {
			c->told[p] = done == total ? TOLD_WHOLE : TOLD_CUT;
			if (to)
				to->sending = false; /* the notice took its message's place */
		}
	}
}

static int fail(struct tr_comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct tr_comm *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
	bool first = !c->broken;
	c->broken = true;
	/* pass it on even when it came from a peer: ranks that only wait on this one learn the cause too */
	if (first && c->t->size > 1) {
		if (!c->notified)
			notify_abort(c, c->err);
		if (c->t->ops->abandon)
			c->t->ops->abandon(c->t);
	}
	return -1;
}

/* How long a rank that timed out keeps listening to the peers it waited for.  On a lost node the
 * ranks stuck behind a live rank (itself stuck on the lost one) time out at about the same moment as
 * that rank; its reason names the lost node, ours would name the live rank. */
static double linger_s(const struct tr_transport *t)
{
	return t->timeout / 2 < 5 ? t->timeout / 2 : 5;
}

#define MAX_RELAYS 8 /* better reasons a lingering rank takes over: hops of a chain of stuck ranks */

/* Gives up on the operation in flight without closing it yet: every peer is told now, and the
 * operation fails with `why` once linger_s passed, unless a better reason comes first.  blame: the
 * transport rank `why` blames; via: the rank it came from (-1: this rank's own wait). */
static void give_up(struct tr_comm *c, const char *why, int blame, int via)
{
	snprintf(c->mine, sizeof(c->mine), "%s", why);
	c->blame = blame;
	c->via = via;
	notify_abort(c, c->mine);
	c->linger_until = tr_now() + linger_s(c->t);
}

/* A peer's abort notice (its error text follows the header) during the operation in flight, op.
 * An error (no rank blamed) is the cause: adopt it.  A timeout is a lead, which its sender may still
 * replace while it lingers: take it over, lingering in turn, when this rank waits for the sender's
 * message, or when the reason in hand blames the sender or came from it (the sender's better
 * reason).  So every rank behind a chain of stuck ranks ends naming the rank at its end.  When the
 * sender timed out only waiting for this rank, or its message had already come, this rank's own
 * wait is the better lead: give up naming the rank it waits for.
 * Returns -1 (failed) or 1 (the sender's part is to be dropped; the operation lingers). */
static int peer_aborted(struct tr_comm *c, const struct xfer *x, uint32_t op)
{
	struct tr_transport *t = c->t;
	int wr = c->world[x->peer], blamed = (int)x->rhdr.op - 1;
	char why[TR_ERRLEN] = "", theirs[TR_ERRLEN];
	size_t len = x->rhdr.len < sizeof(why) - 1 ? x->rhdr.len : sizeof(why) - 1, got = 0;
	double deadline = tr_now() + 0.5;
	for (bool first = true; got < len && (first || tr_now() < deadline); first = false) {
		ssize_t k = t->ops->recv_some(t, wr, why + got, len - got);
		if (k < 0)
			break;
		got += k;
	}
	why[got] = 0;
	if (!strncmp(why, "rank ", 5) && strstr(why, " failed: "))
		snprintf(theirs, sizeof(theirs), "%s", why); /* passed on: keep the rank where it started */
	else
		snprintf(theirs, sizeof(theirs), "rank %d failed: %s", wr, got ? why : "(no reason given)");
	bool lead = blamed >= 0 && blamed != t->rank && (x->receiving || wr == c->blame || wr == c->via);
	if (lead && c->relays < MAX_RELAYS) {
		c->relays += c->linger_until > 0;
		give_up(c, theirs, blamed, wr);
		return 1;
	}
	if (blamed >= 0 && c->linger_until > 0)
		return 1; /* the lead in hand is at least as good */
	int other = -1;
	for (int i = 0; i < c->cur_n && other < 0; i++)
		if (&c->cur[i] != x && (c->cur[i].sending || c->cur[i].receiving))
			other = c->world[c->cur[i].peer];
	if (blamed >= 0 && other >= 0) {
		char who[TR_HOST_LEN + TR_ADDR_LEN + 16], mine[TR_ERRLEN];
		tr_peer_name(t, other, who, sizeof(who));
		snprintf(mine, sizeof(mine), "%s: waited %.1f s for rank %d (%s) in %s #%u when rank %d gave up: %s",
			 t->ops->kind, tr_now() - c->since, other, who, op_name(op), c->seq, wr,
			 got ? why : "(no reason given)");
		give_up(c, mine, other, -1);
		return 1;
	}
	c->blame = blamed; /* passed on as it came: an error stays one */
	return fail(c, "%s", theirs);
}

/* This rank no longer exchanges with x's peer in this operation. */
static void drop(struct xfer *x)
{
	x->sending = x->receiving = false;
}

static int pending_of(const struct xfer *xs, int n)
{
	int pending = 0;
	for (int i = 0; i < n; i++)
		pending += xs[i].sending + xs[i].receiving;
	return pending;
}

static int check_hdr(struct tr_comm *c, const struct xfer *x, uint32_t op)
{
	const struct hdr *h = &x->rhdr;
	int wr = c->world[x->peer];
	char who[TR_HOST_LEN + TR_ADDR_LEN + 16];
	tr_peer_name(c->t, wr, who, sizeof(who));
	if (h->magic == ABORT_MAGIC)
		return peer_aborted(c, x, op);
	if (h->magic != HDR_MAGIC)
		return fail(c, "%s: rank %d (%s) sent garbage (bad message header)", c->t->ops->kind, wr, who);
	if (h->tag != c->tag || h->op != op || h->seq != c->seq)
		return fail(c, "%s: rank %d (%s) is in %s #%u of communicator %08x while rank %d is in %s #%u of "
			    "%08x (collectives called in a different order)", c->t->ops->kind, wr, who,
			    op_name(h->op), h->seq, h->tag, c->t->rank, op_name(op), c->seq, c->tag);
	if (h->len != x->rlen)
		return fail(c, "%s: rank %d (%s) sent %llu bytes in %s #%u, rank %d expected %zu", c->t->ops->kind,
			    wr, who, (unsigned long long)h->len, op_name(op), c->seq, c->t->rank, x->rlen);
	return 0;
}

/* A send to x's peer failed.  A peer that gave up sent its abort notice, half-closed and closed;
 * our later send then meets its reset, while the notice still waits unread in our receive queue
 * (a reset does not discard received data).  Read it before blaming the closed connection. */
static int send_failed(struct tr_comm *c, struct xfer *x, uint32_t op)
{
	struct tr_transport *t = c->t;
	const size_t H = sizeof(struct hdr);
	char err[TR_ERRLEN];
	snprintf(err, sizeof(err), "%s", t->err);
	while (x->receiving && x->rdone < H) {
		ssize_t k = t->ops->recv_some(t, c->world[x->peer], (char *)&x->rhdr + x->rdone, H - x->rdone);
		if (k <= 0)
			break;
		x->rdone += k;
	}
	if (x->receiving && x->rdone == H && x->rhdr.magic == ABORT_MAGIC)
		return check_hdr(c, x, op);
	return fail(c, "%s", err);
}

/* While stuck waiting for some peers: has a peer whose message for this operation already arrived
 * given up since, or has a peer that gave up a better reason now?  Its abort notice then waits at the
 * head of its stream (the next operation's place, or after its first notice); without looking, this
 * rank would wait on a stalled third rank until that one moves. */
static int aborted_meanwhile(struct tr_comm *c, struct xfer *xs, int n, uint32_t op)
{
	struct tr_transport *t = c->t;
	for (int i = 0; i < n; i++) {
		struct xfer *x = &xs[i];
		struct hdr h;
		if (x->receiving || t->ops->peek(t, c->world[x->peer], &h, sizeof(h)) != sizeof(h) ||
		    h.magic != ABORT_MAGIC)
			continue;
		if (t->ops->recv_some(t, c->world[x->peer], &x->rhdr, sizeof(h)) != sizeof(h))
			continue;
		if (peer_aborted(c, x, op) < 0)
			return -1;
		drop(x);
	}
	return 0;
}

/* Moves every message of one operation; self-messages must not be in xs (callers memcpy them). */
static int run_xfers(struct tr_comm *c, struct xfer *xs, int n, uint32_t op)
{
	struct tr_transport *t = c->t;
	const size_t H = sizeof(struct hdr);
	for (int i = 0; i < n; i++) {
		struct xfer *x = &xs[i];
		x->sdone = x->rdone = 0;
		x->shdr = (struct hdr){ HDR_MAGIC, c->tag, op, c->seq, x->slen };
	}
	int *wpeers = NULL;
	bool *ws = NULL, *wr = NULL;
	c->cur = xs;
	c->cur_n = n;
	c->since = tr_now();
	double deadline = c->since + t->timeout;
	int rc = 0;
	for (;;) {
		uint64_t token = t->ops->wait_token(t);
		bool progressed = false;
		for (int i = 0; i < n && rc == 0; i++) {
			struct xfer *x = &xs[i];
			int peer = c->world[x->peer];
			if (x->sending) {
				ssize_t k;
				if (x->sdone < H) {
					struct iovec iov[2] = { { (char *)&x->shdr + x->sdone, H - x->sdone },
								{ (void *)x->sbuf, x->slen } };
					k = t->ops->send_some(t, peer, iov, x->slen ? 2 : 1);
				} else {
					struct iovec iov = { (void *)(x->sbuf + (x->sdone - H)), x->slen - (x->sdone - H) };
					k = t->ops->send_some(t, peer, &iov, 1);
				}
				if (k < 0) {
					if ((rc = send_failed(c, x, op)) > 0) {
						drop(x);
						rc = 0;
						continue;
					}
					break;
				}
				if (k > 0) {
					progressed = true;
					x->sdone += k;
					if (x->sdone == H + x->slen)
						x->sending = false;
				}
			}
			/* Drain the whole message while data is there: fewer trips round the loop. */
			while (x->receiving) {
				ssize_t k;
				if (x->rdone < H)
					k = t->ops->recv_some(t, peer, (char *)&x->rhdr + x->rdone, H - x->rdone);
				else
					k = t->ops->recv_some(t, peer, x->rbuf + (x->rdone - H), x->rlen - (x->rdone - H));
				if (k < 0) {
					rc = fail(c, "%s", t->err);
					break;
				}
				if (k == 0)
					break;
				progressed = true;
				x->rdone += k;
				if (x->rdone == H && (rc = check_hdr(c, x, op)) != 0) {
					if (rc > 0) {
						drop(x);
						rc = 0;
					}
					break;
				}
				if (x->rdone == H + x->rlen)
					x->receiving = false;
			}
		}
		/* a lingering rank listens on even when nothing is left to move: a better reason may still come */
		if (rc != 0 || (pending_of(xs, n) == 0 && c->linger_until == 0))
			break;
		double now = tr_now();
		if (progressed) {
			c->since = now;
			deadline = now + t->timeout;
			continue;
		}
		if (!wpeers) {
			wpeers = malloc(n * sizeof(*wpeers));
			ws = malloc(n * sizeof(*ws));
			wr = malloc(n * sizeof(*wr));
			if (!wpeers || !ws || !wr) {
				rc = fail(c, "out of memory");
				break;
			}
		}
		int m = 0;
		for (int i = 0; i < n; i++)
			if (xs[i].sending || xs[i].receiving) {
				wpeers[m] = c->world[xs[i].peer];
				ws[m] = xs[i].sending;
				wr[m++] = xs[i].receiving;
			}
		if (c->linger_until > 0 && now >= c->linger_until)
			break; /* fails below with the reason in hand */
		if (c->linger_until == 0 && now >= deadline) {
			char who[TR_HOST_LEN + TR_ADDR_LEN + 16], why[TR_ERRLEN];
			tr_peer_name(t, wpeers[0], who, sizeof(who));
			snprintf(why, sizeof(why), "%s: timed out after %g s waiting for rank %d (%s) in %s #%u (%d peer%s pending)",
				 t->ops->kind, t->timeout, wpeers[0], who, op_name(op), c->seq, m, m == 1 ? "" : "s");
			give_up(c, why, wpeers[0], -1);
			continue;
		}
		/* not in the fast path: only once a wait lasted a while */
		if (t->ops->peek && now > deadline - t->timeout + 0.05 &&
		    (rc = aborted_meanwhile(c, xs, n, op)) != 0)
			break;
		double until = c->linger_until > 0 ? c->linger_until : deadline;
		int ms = (int)((until - now) * 1000) + 1;
		if (ms > WAIT_SLICE_MS)
			ms = WAIT_SLICE_MS;
		if (t->ops->wait(t, token, wpeers, ws, wr, m, ms) < 0) {
			rc = fail(c, "%s", t->err);
			break;
		}
	}
	if (rc == 0 && c->linger_until > 0) /* the peers were told: fail whatever arrived since */
		rc = fail(c, "%s", c->mine);
	c->linger_until = 0;
	free(wpeers);
	free(ws);
	free(wr);
	c->cur = NULL;
	c->cur_n = 0;
	c->seq++;
	return rc;
}

static int usable(struct tr_comm *c)
{
	if (!c)
		return -1;
	if (c->broken) /* keep the first error: it names the cause */
		return -1;
	return 0;
}

static void *scratch(struct tr_comm *c, size_t len)
{
	if (c->scratch_len < len) {
		void *p = realloc(c->scratch, len);
		if (!p)
			return NULL;
		c->scratch = p;
		c->scratch_len = len;
	}
	return c->scratch;
}

static struct xfer *xfers(struct tr_comm *c)
{
	struct xfer *xs = calloc(c->size > 1 ? c->size - 1 : 1, sizeof(*xs));
	if (!xs)
		fail(c, "out of memory");
	return xs;
}

/* What each peer p gets and sends in one collective: per-peer counts and offsets (alltoallv), or
 * when those are NULL `bytes` each way at s + p * sstep and r + p * bytes.  s and r may be NULL when
 * nothing moves (barrier). */
struct msgs {
	const char *s;
	char *r;
	const size_t *sbytes, *soff, *rbytes, *roff;
	size_t bytes, sstep;
};

/* One message each way with every peer, starting with the next rank up (so that not every rank
 * hits rank 0 first). */
static int exchange(struct tr_comm *c, uint32_t op, const struct msgs *m)
{
	if (c->size == 1) {
		c->seq++;
		return 0;
	}
	struct xfer *xs = xfers(c);
	if (!xs)
		return -1;
	int n = 0;
	for (int k = 1; k < c->size; k++) {
		int p = (c->rank + k) % c->size;
		size_t so = m->soff ? m->soff[p] : (size_t)p * m->sstep, ro = m->roff ? m->roff[p] : (size_t)p * m->bytes;
		xs[n++] = (struct xfer){ .peer = p, .sending = true, .receiving = true,
					 .sbuf = m->s ? m->s + so : NULL, .slen = m->sbytes ? m->sbytes[p] : m->bytes,
					 .rbuf = m->r ? m->r + ro : NULL, .rlen = m->rbytes ? m->rbytes[p] : m->bytes };
	}
	int rc = run_xfers(c, xs, n, op);
	free(xs);
	return rc;
}

static bool rail_on(const struct tr_comm *c)
{
	return c->a2a_mode != TR_A2A_DIRECT && tr_rail_possible(c->rail);
}

static int alltoallv(struct tr_comm *c, const void *send, const size_t *send_bytes, const size_t *send_off,
		     void *recv, const size_t *recv_bytes, const size_t *recv_off, size_t row, const int *key, int nkeys)
{
	if (usable(c))
		return -1;
	const char *s = send;
	char *r = recv;
	if (send_bytes[c->rank] != recv_bytes[c->rank])
		return fail(c, "alltoallv: rank %d sends itself %zu bytes but expects %zu", c->rank,
			    send_bytes[c->rank], recv_bytes[c->rank]);
	int rc;
	if (rail_on(c)) {
		rc = tr_rail_alltoallv(c, c->rail, send, send_bytes, send_off, recv, recv_bytes, recv_off, row, key, nkeys);
	} else {
		if (send_bytes[c->rank])
			memmove(r + recv_off[c->rank], s + send_off[c->rank], send_bytes[c->rank]);
		struct msgs m = { .s = s, .sbytes = send_bytes, .soff = send_off, .r = r, .rbytes = recv_bytes, .roff = recv_off };
		rc = exchange(c, OP_ALLTOALLV, &m);
		if (rc == 0)
			tr_rail_count_direct(c->rail, c->rank, send_bytes, c->size);
	}
	if (rc == 0)
		for (int p = 0; p < c->size; p++)
			c->a2a_bytes += p == c->rank ? 0 : send_bytes[p];
	return rc;
}

int tr_alltoallv(struct tr_comm *c, const void *send, const size_t *send_bytes, const size_t *send_off,
		 void *recv, const size_t *recv_bytes, const size_t *recv_off)
{
	return alltoallv(c, send, send_bytes, send_off, recv, recv_bytes, recv_off, 0, NULL, 0);
}

int tr_alltoallv_keyed(struct tr_comm *c, const void *send, const size_t *send_bytes, const size_t *send_off,
		       void *recv, const size_t *recv_bytes, const size_t *recv_off, size_t row_bytes,
		       const int *key, int nkeys)
{
	if (usable(c))
		return -1;
	if (row_bytes == 0 || nkeys < 0 || !key)
		return fail(c, "alltoallv: rows of %zu bytes and %d keys", row_bytes, nkeys);
	for (int p = 0; p < c->size; p++) {
		if (send_bytes[p] % row_bytes || send_off[p] % row_bytes)
			return fail(c, "alltoallv: %zu bytes at offset %zu for rank %d are not rows of %zu bytes",
				    send_bytes[p], send_off[p], p, row_bytes);
		for (size_t i = send_off[p] / row_bytes; i < (send_off[p] + send_bytes[p]) / row_bytes; i++)
			if (key[i] < 0 || key[i] >= nkeys)
				return fail(c, "alltoallv: row %zu has key %d, outside 0..%d", i, key[i], nkeys - 1);
	}
	return alltoallv(c, send, send_bytes, send_off, recv, recv_bytes, recv_off, row_bytes, key, nkeys);
}

static int alltoallv_sum(struct tr_comm *c, size_t esz, const void *send, const size_t *send_bytes,
			 const size_t *send_off, void *sum, const size_t *recv_bytes, const size_t *recv_off,
			 size_t row_bytes, const int *key, int nkeys)
{
	if (usable(c))
		return -1;
	if (row_bytes == 0 || row_bytes % esz || nkeys < 0 || !key)
		return fail(c, "alltoallv_sum: rows of %zu bytes (whole %zu-byte numbers) and %d keys", row_bytes, esz,
			    nkeys);
	for (int p = 0; p < c->size; p++) {
		if (send_bytes[p] % row_bytes || send_off[p] % row_bytes || recv_bytes[p] % row_bytes ||
		    recv_off[p] % row_bytes)
			return fail(c, "alltoallv_sum: the bytes for or from rank %d are not rows of %zu bytes", p, row_bytes);
		for (size_t i = recv_off[p] / row_bytes; i < (recv_off[p] + recv_bytes[p]) / row_bytes; i++)
			if (key[i] < 0 || key[i] >= nkeys)
				return fail(c, "alltoallv_sum: row %zu has key %d, outside 0..%d", i, key[i], nkeys - 1);
	}
	if (send_bytes[c->rank] != recv_bytes[c->rank])
		return fail(c, "alltoallv: rank %d sends itself %zu bytes but expects %zu", c->rank,
			    send_bytes[c->rank], recv_bytes[c->rank]);
	bool rail = rail_on(c);
	int rc = tr_rail_sum(c, c->rail, rail, esz, send, send_bytes, send_off, sum, recv_bytes, recv_off, row_bytes,
			     key, nkeys);
	if (rc == 0 && rail) /* direct mode counted them in tr_alltoallv */
		for (int p = 0; p < c->size; p++)
			c->a2a_bytes += p == c->rank ? 0 : send_bytes[p];
	return rc;
}

int tr_alltoallv_sum_f32(struct tr_comm *c, const float *send, const size_t *send_bytes, const size_t *send_off,
			 float *sum, const size_t *recv_bytes, const size_t *recv_off, size_t row_bytes,
			 const int *key, int nkeys)
{
	return alltoallv_sum(c, sizeof(float), send, send_bytes, send_off, sum, recv_bytes, recv_off, row_bytes, key,
			     nkeys);
}

int tr_alltoallv_sum_f64(struct tr_comm *c, const double *send, const size_t *send_bytes, const size_t *send_off,
			 double *sum, const size_t *recv_bytes, const size_t *recv_off, size_t row_bytes,
			 const int *key, int nkeys)
{
	return alltoallv_sum(c, sizeof(double), send, send_bytes, send_off, sum, recv_bytes, recv_off, row_bytes, key,
			     nkeys);
}

int tr_alltoall(struct tr_comm *c, const void *send, void *recv, size_t bytes)
{
	if (usable(c))
		return -1;
	const char *s = send;
	char *r = recv;
	memmove(r + (size_t)c->rank * bytes, s + (size_t)c->rank * bytes, bytes);
	return exchange(c, OP_ALLTOALL, &(struct msgs){ .s = s, .r = r, .bytes = bytes, .sstep = bytes });
}

int tr_allgather(struct tr_comm *c, const void *send, void *recv, size_t bytes)
{
	if (usable(c))
		return -1;
	char *r = recv;
	memmove(r + (size_t)c->rank * bytes, send, bytes);
	return exchange(c, OP_ALLGATHER, &(struct msgs){ .s = send, .r = r, .bytes = bytes });
}

int tr_barrier(struct tr_comm *c)
{
	if (usable(c))
		return -1;
	return exchange(c, OP_BARRIER, &(struct msgs){ .bytes = 0 });
}

/* Chunk r of n elements: rank r reduces it.  Sizes differ by at most one element. */
static void chunk(size_t n, int size, int r, size_t *off, size_t *len)
{
	size_t base = n / size, rem = n % size;
	*off = base * r + ((size_t)r < rem ? (size_t)r : rem);
	*len = base + ((size_t)r < rem);
}

/* Reduce-scatter then allgather.  Rank r sums chunk r over ranks 0,1,..,size-1 in that order, so
 * every element is added in rank order exactly once and every rank ends with the same bits. */
static int allreduce(struct tr_comm *c, void *buf, size_t n, size_t esz,
		     void (*add)(void *acc, const void *x, size_t n))
{
	if (usable(c))
		return -1;
	if (c->size == 1 || n == 0) {
		c->seq += 2;
		return 0;
	}
	char *b = buf;
	size_t moff, mlen;
	chunk(n, c->size, c->rank, &moff, &mlen);
	char *stage = scratch(c, (size_t)c->size * mlen * esz + 1);
	struct xfer *xs = xfers(c);
	if (!stage || !xs) {
		free(xs);
		return stage ? -1 : fail(c, "out of memory");
	}
	int nx = 0;
	for (int k = 1; k < c->size; k++) {
		int p = (c->rank + k) % c->size;
		size_t poff, plen;
		chunk(n, c->size, p, &poff, &plen);
		xs[nx++] = (struct xfer){ .peer = p, .sending = true, .receiving = true, .sbuf = b + poff * esz,
					  .slen = plen * esz, .rbuf = stage + (size_t)p * mlen * esz, .rlen = mlen * esz };
	}
	memcpy(stage + (size_t)c->rank * mlen * esz, b + moff * esz, mlen * esz);
	int rc = run_xfers(c, xs, nx, OP_ALLREDUCE_RS);
	if (rc == 0) {
		char *acc = b + moff * esz;
		memcpy(acc, stage, mlen * esz);
		for (int p = 1; p < c->size; p++)
			add(acc, stage + (size_t)p * mlen * esz, mlen);
		nx = 0;
		for (int k = 1; k < c->size; k++) {
			int p = (c->rank + k) % c->size;
			size_t poff, plen;
			chunk(n, c->size, p, &poff, &plen);
			xs[nx++] = (struct xfer){ .peer = p, .sending = true, .receiving = true, .sbuf = acc,
						  .slen = mlen * esz, .rbuf = b + poff * esz, .rlen = plen * esz };
		}
		rc = run_xfers(c, xs, nx, OP_ALLREDUCE_AG);
	}
	free(xs);
	return rc;
}

static void add_f32(void *acc, const void *x, size_t n)
{
	float *a = acc;
	const float *v = x;
	for (size_t i = 0; i < n; i++)
		a[i] += v[i];
}

static void add_f64(void *acc, const void *x, size_t n)
{
	double *a = acc;
	const double *v = x;
	for (size_t i = 0; i < n; i++)
		a[i] += v[i];
}

int tr_allreduce_f32(struct tr_comm *c, float *buf, size_t n)
{
	return allreduce(c, buf, n, sizeof(float), add_f32);
}

int tr_allreduce_f64(struct tr_comm *c, double *buf, size_t n)
{
	return allreduce(c, buf, n, sizeof(double), add_f64);
}

/* ---- communicators */

static uint32_t mix(uint32_t h, uint32_t v)
{
	h ^= v;
	h *= 16777619u; /* FNV-1a step */
	return h ^ (h >> 15);
}

static struct tr_comm *comm_new(struct tr_transport *t, int size)
{
	struct tr_comm *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->world = calloc(size, sizeof(int));
	if (!c->world) {
		free(c);
		return NULL;
	}
	c->t = t;
	c->size = size;
	c->blame = c->via = -1;
	t->refs++;
	return c;
}

struct split_ent {
	int color, key, rank;
};

static int split_cmp(const void *a, const void *b)
{
	const struct split_ent *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->rank - y->rank;
}

int tr_comm_split(struct tr_comm *c, int color, int key, struct tr_comm **out)
{
	*out = NULL;
	if (usable(c))
		return -1;
	struct split_ent me = { color, key, c->rank };
	struct split_ent *all = calloc(c->size, sizeof(*all));
	if (!all)
		return fail(c, "out of memory");
	int rc = tr_allgather(c, &me, all, sizeof(me));
	if (rc != 0) {
		free(all);
		return -1;
	}
	int m = 0;
	for (int i = 0; i < c->size; i++)
		if (all[i].color == color)
			all[m++] = all[i];
	qsort(all, m, sizeof(*all), split_cmp);
	struct tr_comm *s = comm_new(c->t, m);
	if (!s) {
		free(all);
		return fail(c, "out of memory");
	}
	for (int i = 0; i < m; i++) {
		s->world[i] = c->world[all[i].rank];
		if (all[i].rank == c->rank)
			s->rank = i;
	}
	free(all);
	s->tag = mix(mix(mix(c->tag, c->splits), (uint32_t)color), 0x5eed);
	c->splits++;
	s->a2a_mode = c->a2a_mode;
	if (!(s->rail = tr_rail_new(s))) {
		tr_comm_free(s);
		return fail(c, "out of memory");
	}
	*out = s;
	return 0;
}

void tr_comm_free(struct tr_comm *c)
{
	if (!c)
		return;
	tr_rail_free(c->rail); /* its sub-communicators hold references to the transport */
	if (--c->t->refs == 0) {
		free(c->t->peers);
		c->t->ops->destroy(c->t);
	}
	free(c->world);
	free(c->told);
	free(c->scratch);
	free(c);
}

int tr_comm_rank(const struct tr_comm *c)
{
	return c->rank;
}

int tr_comm_size(const struct tr_comm *c)
{
	return c->size;
}

const char *tr_comm_kind(const struct tr_comm *c)
{
	return c->t->ops->kind;
}

const char *tr_comm_error(const struct tr_comm *c)
{
	return c ? c->err : "no communicator";
}

uint64_t tr_comm_alltoall_bytes(const struct tr_comm *c)
{
	return c->a2a_bytes;
}

const char *tr_comm_a2a_mode(const struct tr_comm *c)
{
	return rail_on(c) ? "rail" : "direct";
}

void tr_comm_a2a_stats(const struct tr_comm *c, struct tr_a2a_stats *st)
{
	tr_rail_stats(c->rail, c->rank, st);
}

uint64_t tr_comm_cross_bytes_to(const struct tr_comm *c, int lr)
{
	return tr_rail_to_local(c->rail, lr);
}

const char *tr_comm_member_host(const struct tr_comm *c, int r)
{
	return c->t->peers[c->world[r]].host;
}

int tr_comm_world_rank(const struct tr_comm *c, int r)
{
	return c->world[r];
}

int tr_comm_node_of(const struct tr_comm *c, int r)
{
	return tr_rail_node(c->rail, r);
}

void tr_comm_count_device(struct tr_comm *c, const size_t *send_bytes)
{
	tr_rail_count_direct(c->rail, c->rank, send_bytes, c->size);
	for (int p = 0; p < c->size; p++)
		c->a2a_bytes += p == c->rank ? 0 : send_bytes[p];
}

int tr_comm_fail(struct tr_comm *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char msg[TR_ERRLEN];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return fail(c, "%s", msg);
}

int tr_comm_adopt_error(struct tr_comm *c, const struct tr_comm *sub)
{
	snprintf(c->err, sizeof(c->err), "%s", sub->err);
	c->broken = true;
	return -1;
}

bool tr_comm_is_broken(const struct tr_comm *c)
{
	return c->broken;
}

void tr_comm_set_direct(struct tr_comm *c)
{
	c->a2a_mode = TR_A2A_DIRECT;
}

/* ---- init */

static int env_int(const char *name, const char *alt, int def, int min, int *out, char *err, size_t errlen)
{
	const char *v = getenv(name);
	if ((!v || !*v) && alt) {
		v = getenv(alt);
		name = alt;
	}
	if (!v || !*v) {
		*out = def;
		return 0;
	}
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || *end || x < min || x > INT_MAX) {
		snprintf(err, errlen, "%s='%s' is not an integer >= %d", name, v, min);
		return -1;
	}
	*out = (int)x;
	return 0;
}

static int env_timeout(double *out, char *err, size_t errlen)
{
	const char *v = getenv("MOE_COMM_TIMEOUT");
	*out = 60;
	if (!v || !*v)
		return 0;
	char *end;
	double x = strtod(v, &end);
	if (*end || !(x > 0) || x > 1e6) {
		snprintf(err, errlen, "MOE_COMM_TIMEOUT='%s' is not a number of seconds > 0", v);
		return -1;
	}
	*out = x;
	return 0;
}

/* Reads the world a launcher or the rendezvous left for us; see doc/launcher.md. */
static int world_from_env(int rank, int size, double timeout, struct tr_world *w, char *err, size_t errlen)
{
	const char *value = getenv("MOE_COMM_PEERS");
	memset(w, 0, sizeof(*w));
	w->rank = rank;
	w->size = size;
	w->timeout = timeout;
	w->listen_fd = -1;
	if (value && *value) {
		char *peers = tr_peers_import(value, err, errlen);
		if (!peers)
			return -1;
		if (tr_peers_parse(peers, size, &w->peers, err, errlen) != 0) {
			free(peers);
			return -1;
		}
		int fd;
		if (env_int("MOE_COMM_FD", NULL, -1, -1, &fd, err, errlen) != 0)
			goto bad;
		if (fd >= 0 && fcntl(fd, F_GETFD) < 0) {
			snprintf(err, errlen, "MOE_COMM_FD=%d is not an open file descriptor (was the program started "
				 "by moe-launch?)", fd);
			goto bad;
		}
		w->listen_fd = fd;
		/* the socket is consumed here (closed once the transport is up): a second world in this
		 * process must not take whatever file later gets the same number */
		unsetenv("MOE_COMM_FD");
		const char *job = getenv("MOE_COMM_JOB");
		if (job && *job) {
			snprintf(w->job, sizeof(w->job), "%s", job);
		} else { /* same on every rank: derived from the table, which the launcher made unique */
			uint32_t h = 2166136261u;
			for (const char *p = peers; *p; p++)
				h = mix(h, (unsigned char)*p);
			snprintf(w->job, sizeof(w->job), "p%08x", h);
		}
		free(peers);
		if (fd >= 0)
			fcntl(fd, F_SETFD, FD_CLOEXEC); /* the trainer's own children must not inherit it */
		return 0;
	bad:
		free(peers);
		free(w->peers);
		w->peers = NULL;
		return -1;
	}
	const char *maddr = getenv("MOE_MASTER_ADDR");
	int mport = 0;
	if (!maddr || !*maddr)
		maddr = getenv("MASTER_ADDR");
	if (env_int("MOE_MASTER_PORT", "MASTER_PORT", 0, 0, &mport, err, errlen) != 0)
		return -1;
	if (!maddr || !*maddr || mport <= 0 || mport > 65535) {
		snprintf(err, errlen, "world size %d but no MOE_COMM_PEERS and no MOE_MASTER_ADDR/MOE_MASTER_PORT: "
			 "start the ranks with moe-launch", size);
		return -1;
	}
	return tr_rdv_run(maddr, mport, rank, size, timeout, w, err, errlen);
}

bool tr_comm_kind_known(const char *kind)
{
	static const char *kinds[] = { "auto", "shm", "tcp", "shm+tcp", "verbs", "shm+verbs" };
	for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(kind, kinds[i]))
			return true;
	return false;
}

/* auto's test for verbs: the rail NIC the plan gave this rank (or MOE_IB_DEVICE) is an RDMA device. */
static bool rdma_rail(void)
{
#ifdef HAVE_VERBS
	const char *dev = getenv("MOE_IB_DEVICE");
	if (!dev || !*dev)
		dev = getenv("MOE_NET_DEVICES");
	char path[128];
	if (!dev || !*dev || dev[strcspn(dev, ":,")] == '/')
		return false;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%.*s", (int)strcspn(dev, ":,/"), dev);
	return access(path, F_OK) == 0;
#else
	return false;
#endif
}

static int no_verbs(const char *kind, char *err, size_t errlen)
{
#ifdef HAVE_VERBS
	(void)kind;
	(void)err;
	(void)errlen;
	return 0;
#else
	snprintf(err, errlen, "transport '%s': this build has no libibverbs (install libibverbs-dev and configure "
		 "--with-verbs)", kind);
	return -1;
#endif
}

int tr_comm_init(const char *kind, struct tr_comm **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!kind || !*kind)
		kind = getenv("MOE_TRANSPORT");
	if (!kind || !*kind)
		kind = "auto";
	if (strcmp(kind, "self") && !tr_comm_kind_known(kind)) {
		snprintf(err, errlen, "unknown transport '%s' (valid: " TR_COMM_KINDS ", self)", kind);
		return -1;
	}
	int size, rank;
	double timeout;
	enum tr_a2a_mode a2a;
	if (tr_a2a_mode_parse(getenv("MOE_A2A"), &a2a, err, errlen) != 0)
		return -1;
	if (env_int("MOE_WORLD_SIZE", "WORLD_SIZE", 1, 1, &size, err, errlen) != 0 ||
	    env_int("MOE_RANK", "RANK", 0, 0, &rank, err, errlen) != 0 || env_timeout(&timeout, err, errlen) != 0)
		return -1;
	if (rank >= size) {
		snprintf(err, errlen, "rank %d is outside a world of %d ranks (MOE_RANK/MOE_WORLD_SIZE)", rank, size);
		return -1;
	}
	if (!strcmp(kind, "self")) { /* asked for explicitly: a private world of one, whatever the launch */
		size = 1;
		rank = 0;
	}
	struct tr_world w;
	if (size == 1) {
		memset(&w, 0, sizeof(w));
		w.size = 1;
		w.listen_fd = -1;
		w.timeout = timeout;
		w.peers = calloc(1, sizeof(*w.peers));
		if (!w.peers) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		gethostname(w.peers[0].host, sizeof(w.peers[0].host) - 1);
		kind = "self";
	} else if (world_from_env(rank, size, timeout, &w, err, errlen) != 0) {
		return -1;
	}
	bool one_node = true;
	for (int i = 0; i < size; i++)
		if (strcmp(w.peers[i].host, w.peers[rank].host) != 0)
			one_node = false;
	bool shared_node = false; /* some node runs several ranks: they can share memory */
	for (int i = 0; i < size && !one_node && !shared_node; i++)
		for (int j = i + 1; j < size && !shared_node; j++)
			shared_node = !strcmp(w.peers[i].host, w.peers[j].host);
	if (!strcmp(kind, "auto"))
		kind = one_node ? "shm" : rdma_rail() ? "shm+verbs" : shared_node ? "shm+tcp" : "tcp";
	struct tr_transport *t = NULL;
	int rc;
	if (!strcmp(kind, "self")) {
		rc = tr_self_open(&w, &t, err, errlen);
	} else if (!strcmp(kind, "shm")) {
		if (!one_node) {
			int other = 0;
			while (!strcmp(w.peers[other].host, w.peers[rank].host))
				other++;
			snprintf(err, errlen, "transport 'shm' needs all ranks on one node, but rank %d is on %s and rank "
				 "%d on %s (use tcp or auto)", rank, w.peers[rank].host, other, w.peers[other].host);
			rc = -1;
		} else {
			rc = tr_shm_open(&w, &t, err, errlen);
		}
	} else if (!strcmp(kind, "shm+tcp") || !strcmp(kind, "shm+verbs")) {
		rc = no_verbs(kind, err, errlen) ? -1 : tr_hybrid_open(&w, kind + 4, &t, err, errlen);
	} else if (!strcmp(kind, "verbs")) {
		rc = no_verbs(kind, err, errlen) ? -1 : tr_verbs_open(&w, &t, err, errlen);
	} else {
		rc = tr_tcp_open(&w, &t, err, errlen);
	}
	if (w.listen_fd >= 0)
		close(w.listen_fd); /* tcp has accepted everyone by now; shm never needs it */
	if (rc != 0) {
		free(w.peers);
		return -1;
	}
	t->peers = w.peers;
	t->rank = rank;
	t->size = size;
	t->timeout = timeout;
	struct tr_comm *c = comm_new(t, size);
	if (!c) {
		free(t->peers);
		t->ops->destroy(t);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int i = 0; i < size; i++)
		c->world[i] = i;
	c->rank = rank;
	c->tag = mix(2166136261u, (uint32_t)size);
	c->a2a_mode = a2a;
	if (!(c->rail = tr_rail_new(c))) {
		tr_comm_free(c);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* asked for by name on a world that cannot do it: say so now, not at the first exchange */
	if (a2a == TR_A2A_RAIL && !one_node && !tr_rail_possible(c->rail)) {
		tr_rail_layout_error(c->rail, c, err, errlen);
		tr_comm_free(c);
		return -1;
	}
	*out = c;
	return 0;
}
