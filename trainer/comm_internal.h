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

#define TR_HOST_LEN 64
#define TR_ADDR_LEN 64
#define TR_ERRLEN 512

/* One rank of the world as the rendezvous published it. */
struct tr_peer {
	char host[TR_HOST_LEN]; /* hostname: ranks with equal host share a node */
	char addr[TR_ADDR_LEN]; /* numeric address its data socket listens on */
	int port;
};

/* What a transport needs to start: the world table and this rank's listen socket. */
struct tr_world {
	int rank, size;
	struct tr_peer *peers;  /* size entries, rank order */
	int listen_fd;          /* -1 when none (shm-only, self) */
	char job[64];           /* unique per launch: names shm segments */
	double timeout;         /* seconds without progress before giving up */
};

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
double tr_now(void); /* monotonic seconds */
void tr_peer_name(const struct tr_transport *t, int peer, char *buf, size_t len); /* "host:port" */
uint64_t tr_random64(void); /* /dev/urandom mixed with time and pid: job names and nonces */

/* ---- rendezvous (comm_rdv.c), used by tr_comm_init and by moe-launch */
/* Parses "host@addr:port,..." (MOE_COMM_PEERS) into size entries. */
int tr_peers_parse(const char *text, int size, struct tr_peer **out, char *err, size_t errlen);
/* Formats the table as MOE_COMM_PEERS text (malloc'd). */
char *tr_peers_format(const struct tr_peer *peers, int size);
/* The value to put in MOE_COMM_PEERS for `table` (malloc'd): the table itself, or for big worlds
 * (an environment string is limited to 128 KiB) "fd:N", an inheritable memfd holding it (*fd = N,
 * else -1). */
char *tr_peers_export(const char *table, int *fd, char *err, size_t errlen);
/* The table text from a MOE_COMM_PEERS value (malloc'd); reads and closes the memfd of "fd:N". */
char *tr_peers_import(const char *value, char *err, size_t errlen);
/* Opens a TCP listen socket of `family` (AF_INET/AF_INET6) on port (0 = any) of the wildcard
 * address, or of loopback only (one-machine jobs). */
int tr_listen(int family, int port, bool loopback, int *fd, int *bound_port, char *err, size_t errlen);
/* `addr`, or when it sits on a loopback interface the first address of an up non-loopback interface
 * of the same family (what other nodes can reach). */
void tr_off_loopback(const char *addr, int family, char *out, size_t len);
/* Rank 0: serves the rendezvous on master_fd until every rank registered, then answers each with
 * the table and the job nonce.  me is rank 0's own entry. */
int tr_rdv_serve(int master_fd, int world, const struct tr_peer *me, const char *nonce,
		 double timeout, struct tr_peer **table, char *err, size_t errlen);
/* Other ranks: registers (rank, host, data port) at addr:port; the advertised address is the local
 * address of the connection to rank 0.  Fills *table and nonce (64 bytes). */
int tr_rdv_join(const char *addr, int port, int rank, int world, const char *host, int data_port,
		double timeout, struct tr_peer **table, char *nonce, char *err, size_t errlen);
/* Whole rendezvous for one rank: opens the data listen socket, serves (rank 0) or joins.  Fills the
 * world (caller frees peers and closes listen_fd). */
int tr_rdv_run(const char *master_addr, int master_port, int rank, int world, double timeout,
	       struct tr_world *w, char *err, size_t errlen);

#endif
