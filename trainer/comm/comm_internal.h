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
/* RDMA (verbs) between every pair of ranks: comm_verbs.c; needs libibverbs (HAVE_VERBS). */
int tr_verbs_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen);
/* shm between the ranks of each node, `remote` ("tcp" or "verbs") between nodes. */
int tr_hybrid_open(const struct tr_world *w, const char *remote, struct tr_transport **out, char *err, size_t errlen);
/* The pairwise TCP connections of the world (tcp's data path, verbs' connection setup): connects to
 * each higher rank, accepts each lower one; fds[p] blocking, -1 for self. */
int tr_tcp_mesh(const struct tr_world *w, int *fds, char *err, size_t errlen);
/* Blocking read (out false) or write of a small record on fd, bounded by deadline (tr_now()). */
int tr_sock_full(int fd, void *buf, size_t len, bool out, double deadline);

/* Shared helpers. */
void tr_peer_name(const struct tr_transport *t, int peer, char *buf, size_t len); /* "host at addr:port" */

/* comm.c for comm_rail.c */
const char *tr_comm_member_host(const struct tr_comm *c, int r); /* node name of member r */
int tr_comm_world_rank(const struct tr_comm *c, int r);           /* transport rank of member r */
int tr_comm_fail(struct tr_comm *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tr_comm_adopt_error(struct tr_comm *c, const struct tr_comm *sub); /* sub failed (and told peers) */
bool tr_comm_is_broken(const struct tr_comm *c);
void tr_comm_set_direct(struct tr_comm *c); /* the rail stages themselves: never rail again */
/* comm.c for devcomm.c: member r's node index (node order: first appearance in rank order), and the
 * counting of what a device transport sent for c (as direct mode counts its rows) */
int tr_comm_node_of(const struct tr_comm *c, int r);
void tr_comm_count_device(struct tr_comm *c, const size_t *send_bytes);

/* comm_rail.c: the rail-aligned two-stage alltoallv (MOE_A2A).  Every communicator keeps its node
 * layout (struct tr_rail) and its cross-node byte counters there. */
enum tr_a2a_mode { TR_A2A_AUTO, TR_A2A_DIRECT, TR_A2A_RAIL };
struct tr_rail;
int tr_a2a_mode_parse(const char *v, enum tr_a2a_mode *m, char *err, size_t errlen);
struct tr_rail *tr_rail_new(const struct tr_comm *c); /* NULL: out of memory */
void tr_rail_free(struct tr_rail *r);
bool tr_rail_possible(const struct tr_rail *r); /* several nodes, the same number of ranks on each */
const char *tr_rail_layout_error(const struct tr_rail *r, const struct tr_comm *c, char *buf, size_t len);
void tr_rail_count_direct(struct tr_rail *r, int me, const size_t *send_bytes, int size);
/* key: NULL, or the key of every send row of `row` bytes (0 <= key < nkeys); checked by the caller */
int tr_rail_alltoallv(struct tr_comm *c, struct tr_rail *r, const void *send, const size_t *sb, const size_t *so,
		      void *recv, const size_t *rb, const size_t *ro, size_t row, const int *key, int nkeys);
/* comm_rail_sum.c: tr_alltoallv_sum_f32/_f64 (esz 4 or 8) after the checks, in rail (true) or direct mode */
int tr_rail_sum(struct tr_comm *c, struct tr_rail *r, bool rail, size_t esz, const void *send, const size_t *sb,
		const size_t *so, void *sum, const size_t *rb, const size_t *ro, size_t row, const int *key, int nkeys);
void tr_rail_stats(const struct tr_rail *r, int me, struct tr_a2a_stats *st);
uint64_t tr_rail_to_local(const struct tr_rail *r, int lr);
int tr_rail_node(const struct tr_rail *r, int i);

#endif
