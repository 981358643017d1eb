/* devcomm.h - device-direct collectives for a backend with device memory (the CUDA backend): the MoE
 * all-to-all, its summed combine and the gradient all-reduce between device buffers, no host staging.
 *
 *   staged    no device communicator: the model copies device buffers through pinned host memory and
 *             uses comm.h (the default, and the only choice for --device cpu)
 *   cuda-ipc  ranks of one node, one GPU each or several on one GPU: each rank exports a device window
 *             (cudaIpcGetMemHandle) and an interprocess event; receivers copy from the peers' windows
 *             after waiting on their events.  Same bits as staged in fp32 (combine and all-reduce sum
 *             in comm.h's orders)
 *   nccl      any ranks: grouped ncclSend/ncclRecv and ncclAllReduce on a communicator whose unique id
 *             travels over the host communicator.  NCCL's all-reduce order is its own: not bit-identical
 * Every call here is collective over the host communicator it was opened on, takes device pointers
 * whose data is complete (the caller synchronised its stream) and returns with the results complete.
 * Handles, ids, offsets and keys travel over comm.h; errors are one line (tr_devcomm_error).
 */
#ifndef TR_DEVCOMM_H
#define TR_DEVCOMM_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tr_comm;
struct tr_devcomm;

#define TR_DEVCOMM_KINDS "staged, cuda-ipc, nccl"
bool tr_devcomm_kind_known(const char *kind);
/* NULL when this build has `kind` (staged always); else one line saying why it is missing. */
const char *tr_devcomm_unbuilt(const char *kind);

/* A device communicator of kind "cuda-ipc" or "nccl" over the members of c (collective; the CUDA device
 * of the backend must be current).  0, or -1 with one line in err on every rank: the kind unknown or
 * not built, cuda-ipc over ranks of several hosts, a CUDA or NCCL failure. */
int tr_devcomm_open(struct tr_comm *c, const char *kind, struct tr_devcomm **out, char *err, size_t errlen);
void tr_devcomm_free(struct tr_devcomm *d);
/* Whether kind can serve c at all: nccl any ranks, cuda-ipc ranks of one host (no collective). */
bool tr_devcomm_serves(struct tr_comm *c, const char *kind);
const char *tr_devcomm_kind(const struct tr_devcomm *d);
const char *tr_devcomm_error(const struct tr_devcomm *d);

/* tr_alltoallv on device memory (counted in c's a2a counters as direct mode counts them). */
int tr_devcomm_alltoallv(struct tr_devcomm *d, const void *send, const size_t *send_bytes, const size_t *send_off,
			 void *recv, const size_t *recv_bytes, const size_t *recv_off);
/* tr_alltoallv_sum_f32 on device memory: the rows land in a device buffer of d, then one kernel sums
 * them per key into sum (nkeys rows) in tr_alltoallv_sum_f32's order (struct tr_dsum_plan).  key_host:
 * the key of every received row of the recv_bytes/recv_off layout, in host memory. */
int tr_devcomm_alltoallv_sum_f32(struct tr_devcomm *d, const float *send, const size_t *send_bytes,
				 const size_t *send_off, float *sum, const size_t *recv_bytes, const size_t *recv_off,
				 size_t row_bytes, const int *key_host, int nkeys);
/* In-place sum over the ranks of n floats of device memory: cuda-ipc adds in rank order (the bits of
 * tr_allreduce_f32); nccl as NCCL does. */
int tr_devcomm_allreduce_f32(struct tr_devcomm *d, float *buf, size_t n);

/* The order of a combine's additions, as host arrays (built on the host, read by the device kernel and
 * by tr_dsum_plan_apply): key k sums the received rows row[start[k] .. start[k+1]) in that order;
 * first[i] marks the first row of a node's run - a run's rows are summed (first copied, the others
 * added), the runs then added in node order (the first copied); a key without rows is zero.  The runs
 * come in node order, a node's source ranks in rank order, their rows in order: comm.h's order. */
struct tr_dsum_plan {
	int nkeys;
	size_t rows;          /* received rows */
	int *start;           /* [nkeys + 1] */
	int *row;             /* [rows] received row indices (recv offset / row bytes) */
	unsigned char *first; /* [rows] */
	size_t cap, kcap;     /* allocated entries of row/first, start */
};
/* node[p]: node index of source rank p (0 .. nodes-1, in node order); rb/ro in bytes, multiples of
 * row_bytes; key[i] of received row i, 0 <= key < nkeys (checked).  0, or -1 (bad key, out of memory). */
int tr_dsum_plan_build(struct tr_dsum_plan *pl, const int *node, int P, const size_t *rb, const size_t *ro,
		       size_t row_bytes, const int *key, int nkeys);
void tr_dsum_plan_free(struct tr_dsum_plan *pl);
/* The plan's sums on the host (the kernel's arithmetic, for checking it): sum[k][0..D) from recv. */
void tr_dsum_plan_apply(const struct tr_dsum_plan *pl, const float *recv, float *sum, size_t D);

#ifdef __cplusplus
}
#endif
#endif
