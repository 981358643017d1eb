/* comm_internal.h - what comm.c shares with the transports (self, shm, tcp) and the rendezvous.
 *
 * A transport moves byte streams between pairs of world ranks: send_some/recv_some never block and
 * say how many bytes they moved; wait blocks until one of the listed peers may have progressed (or a
 * slice of time passed) and checks that those peers are alive.  comm.c frames every message with a
 * header and drives all peers of a collective at once, so no collective can deadlock on ordering and
 * every timeout and error names the peer.  Sub-communicators share their parent's transport.
 */
#ifndef TR_COMM_INTERNAL_H
#define TR_COMM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "comm.h"
#include "comm_rdv.h"

#define TR_ERRLEN 512

struct tr_transport;
struct tr_transport_ops {
	const char *kind;
	/* >= 0 bytes moved (0: would block), -1 on error (message in t->err). */
	ssize_t (*send_some)(struct tr_transport *t, int peer, const struct iovec *iov, int iovcnt);
	ssize_t (*recv_some)(struct tr_transport *t, int peer, void *buf, size_t len);
	/* Value to pass to wait: taken before the last progress attempt so no wake-up is lost. */
	uint64_t (*wait_token)(struct tr_transport *t);
	/* Blocks until progress may be possible or at most ms milliseconds.  peers[]: world ranks we
	 * still wait for, sending[i] true when we still send to peers[i].  -1 on a dead peer (t->err). */
	int (*wait)(struct tr_transport *t, uint64_t token, const int *peers, const bool *sending,
		    const bool *receiving, int n, int ms);
	void (*destroy)(struct tr_transport *t);
	/* Optional: after an abort notice, make sure it is delivered (tcp: drain what peers sent and
	 * half-close, so that closing later does not reset the connection and discard the notice). */
	void (*abandon)(struct tr_transport *t);
	/* Optional: copies up to len bytes that peer sent, without consuming them; 0 when none. */
	ssize_t (*peek)(struct tr_transport *t, int peer, void *buf, size_t len);
};

struct tr_transport {
	const struct tr_transport_ops *ops;
	int rank, size;
	double timeout;
	int refs;
	struct tr_peer *peers;  /* the world table (owned by the top transport) */
	const int *rank_map;    /* world rank of each of this transport's ranks when it serves a subset
				   (the shm half of shm+tcp), NULL = the same numbers */
	char err[TR_ERRLEN];
};
#define TR_WORLD_RANK(t, r) ((t)->rank_map ? (t)->rank_map[r] : (r))

/* Transport constructors: fill err on failure and leave refs 0; tr_comm_init then hands the
 * transport w->peers (t->peers) and its rank, size and timeout. */
int tr_self_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen);
int tr_tcp_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen);
int tr_shm_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen);
/* shm between the ranks of each node, tcp between nodes (several nodes, several ranks on one). */
int tr_hybrid_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen);

/* Shared helpers. */
void tr_peer_name(const struct tr_transport *t, int peer, char *buf, size_t len); /* "host at addr:port" */

#endif
