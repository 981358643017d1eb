/* comm.h - the trainer's only door to other ranks: rendezvous-initialised transports
 * (shm for ranks on one node, tcp or verbs (RDMA) for any ranks) behind one interface.
 *
 * moe-launch runs the rendezvous and leaves what a transport needs in the environment (documented in
 * doc/launcher.md); tr_comm_init reads it.  A world of one rank needs no launcher.  Every wait has a
 * timeout (MOE_COMM_TIMEOUT seconds, default 60): a dead or silent peer gives an error naming that
 * peer's rank, never a hang.  All calls are collective over the communicator and return 0 or -1 with
 * tr_comm_error() describing the failure in one line.
 */
#ifndef TR_COMM_H
#define TR_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tr_comm;

/* kind: "auto" (shm when all ranks share this node; on several nodes "shm+verbs" when the rank's rail
 * NIC from the plan is an RDMA device, else "shm+tcp" - shm inside a node, tcp between nodes - when
 * some node runs several ranks, else tcp), "shm", "tcp", "shm+tcp", "verbs" (RDMA between every pair),
 * "shm+verbs"; NULL = MOE_TRANSPORT or auto.  "self" gives a private world of one rank whatever the
 * environment says.  Once per process: the launcher's socket is consumed; make groups with
 * tr_comm_split. */
int tr_comm_init(const char *kind, struct tr_comm **out, char *err, size_t errlen);
/* The kinds a user may ask for (--transport, MOE_TRANSPORT), for messages; and the check. */
#define TR_COMM_KINDS "auto, shm, tcp, shm+tcp, verbs, shm+verbs"
bool tr_comm_kind_known(const char *kind); /* one of TR_COMM_KINDS */
/* Sub-communicator of the ranks with the same color, ordered by key (then parent rank). Collective. */
int tr_comm_split(struct tr_comm *c, int color, int key, struct tr_comm **out);
void tr_comm_free(struct tr_comm *c); /* sub-communicators first, then the world */

int tr_comm_rank(const struct tr_comm *c);
int tr_comm_size(const struct tr_comm *c);
const char *tr_comm_kind(const struct tr_comm *c);  /* "self", "shm", "tcp", "shm+tcp", "verbs", "shm+verbs" */
const char *tr_comm_error(const struct tr_comm *c);

/* Variable all-to-all of bytes: send_bytes[p] bytes at send + send_off[p] go to rank p, which
 * receives them at recv + recv_off[me].  recv_bytes must match what peers send (exchange counts first
 * with tr_alltoall). */
int tr_alltoallv(struct tr_comm *c, const void *send, const size_t *send_bytes, const size_t *send_off,
		 void *recv, const size_t *recv_bytes, const size_t *recv_off);
/* tr_alltoallv of rows of row_bytes bytes (sizes and offsets are multiples of it) where send row i
 * (at send + i * row_bytes) carries key[i], 0 <= key[i] < nkeys, and rows with equal keys are equal
 * bytes (one token bound for several experts).  Receives exactly what tr_alltoallv would; in rail mode
 * such a row crosses to a node once, with the list of places it goes there. */
int tr_alltoallv_keyed(struct tr_comm *c, const void *send, const size_t *send_bytes, const size_t *send_off,
		       void *recv, const size_t *recv_bytes, const size_t *recv_off, size_t row_bytes,
		       const int *key, int nkeys);
/* The mirror of tr_alltoallv_keyed (the combine): rows of row_bytes bytes of floats move as
 * tr_alltoallv would move them (recv_bytes/recv_off: where they would land here), and instead of landing
 * every received row i of that layout is added into sum + key[i] * row_bytes (nkeys rows; keys no row
 * names are zero).  The additions have one fixed order, the same bits in every mode: per key, the rows
 * from each node (its ranks in order, their rows in order) summed first, then those node sums in node
 * order.  In rail mode a node's sums are formed on the rail peer there and only they cross. */
int tr_alltoallv_sum_f32(struct tr_comm *c, const float *send, const size_t *send_bytes, const size_t *send_off,
			 float *sum, const size_t *recv_bytes, const size_t *recv_off, size_t row_bytes,
			 const int *key, int nkeys);
int tr_alltoallv_sum_f64(struct tr_comm *c, const double *send, const size_t *send_bytes, const size_t *send_off,
			 double *sum, const size_t *recv_bytes, const size_t *recv_off, size_t row_bytes,
			 const int *key, int nkeys);
/* Fixed all-to-all: `bytes` bytes to every rank (counts, metadata). */
int tr_alltoall(struct tr_comm *c, const void *send, void *recv, size_t bytes);
/* In-place sum over ranks; the result is bit-identical on every rank and independent of timing
 * (reduction in rank order), so EP/DP runs are reproducible. */
int tr_allreduce_f32(struct tr_comm *c, float *buf, size_t n);
int tr_allreduce_f64(struct tr_comm *c, double *buf, size_t n);
int tr_allgather(struct tr_comm *c, const void *send, void *recv, size_t bytes);
int tr_barrier(struct tr_comm *c);

/* Bytes this rank handed tr_alltoallv for other ranks since init (for the progress line): the
 * same in every all-to-all mode. */
uint64_t tr_comm_alltoall_bytes(const struct tr_comm *c);

/* How tr_alltoallv moves rows (MOE_A2A=direct|rail, unset = auto): "direct" (every rank straight to
 * every peer) or "rail" (across nodes only to the same local rank, which forwards inside its node; on
 * by default when the communicator spans several nodes with the same number of ranks on each). */
const char *tr_comm_a2a_mode(const struct tr_comm *c);
/* What this rank's tr_alltoallv calls on c sent across nodes since init, whatever the mode. */
struct tr_a2a_stats {
	uint64_t cross_bytes;  /* bytes sent to ranks on other nodes (rows, and rail mode's row counts) */
	uint64_t rail_bytes;   /* of those, bytes sent to the same local rank (the rail): all in rail mode */
	uint64_t dedup_bytes;  /* cross-node bytes deduplication saved: keyed rows not sent again (counted by
				  their sender) and summed rows not sent one by one (counted by their receiver) */
	int nodes, local_rank, local_size; /* nodes of c; this rank's index on its node; most ranks on a node */
};
void tr_comm_a2a_stats(const struct tr_comm *c, struct tr_a2a_stats *st);
/* Bytes this rank sent across nodes to local rank lr (0 <= lr < local_size) of the other nodes. */
uint64_t tr_comm_cross_bytes_to(const struct tr_comm *c, int lr);

#ifdef __cplusplus
}
#endif
#endif
