/* comm_rdv.h - the rendezvous and the world table, shared by the transports and moe-launch.
 *
 * Rank 0 serves a TCP rendezvous; every rank registers its host and data port and gets back the
 * whole table (MOE_COMM_PEERS text: "host@addr:port,...") and a job nonce.  moe-launch runs it
 * before starting the trainer and passes the table on; the trainer parses it in tr_comm_init.
 */
#ifndef TR_COMM_RDV_H
#define TR_COMM_RDV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TR_HOST_LEN 64
#define TR_ADDR_LEN 64
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

double tr_now(void); /* monotonic seconds */
uint64_t tr_random64(void); /* /dev/urandom mixed with time and pid: job names and nonces */

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
