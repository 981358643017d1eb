/* devcomm_nccl.c - the nccl device transport (CUDA builds): the all-to-all as grouped ncclSend/ncclRecv,
 * the all-reduce as ncclAllReduce, on a communicator made from a unique id that rank 0 of the group
 * draws and the host communicator carries (the rendezvous moe-launch already made).  NCCL reads its own
 * environment (NCCL_IB_HCA, NCCL_SOCKET_IFNAME, ... as the plan and the launcher set them).
 * NCCL's all-reduce adds in an order of its own, so it is not bit-identical to comm.h's rank order.
 * NCCL refuses two ranks on one GPU: on a machine with one GPU it runs at a group size of 1.
 *
 * NEVER RUN ON A GPU: compiled and linked in every CUDA build; tests/gpu/run-all.sh runs the trainer
 * with it at world 1.
 */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "devcomm_internal.h"

static int nc(struct tr_devcomm *d, ncclComm_t comm, ncclResult_t r, const char *what)
{
	if (r == ncclSuccess)
		return 0;
	const char *last = comm ? ncclGetLastError(comm) : NULL;
	return tr_dc_fail(d, "nccl: %s: %s%s%s", what, ncclGetErrorString(r), last && *last ? ": " : "",
			  last ? last : "");
}

static int nccl_alltoallv(struct tr_devcomm *d, const void *send, const size_t *sb, const size_t *so, void *recv,
			  const size_t *rb, const size_t *ro)
{
	ncclComm_t comm = d->impl;
	cudaStream_t st = (cudaStream_t)d->stream;
	if (nc(d, comm, ncclGroupStart(), "ncclGroupStart"))
		return -1;
	ncclResult_t r = ncclSuccess;
	for (int p = 0; p < d->size && r == ncclSuccess; p++) {
		if (sb[p])
			r = ncclSend((const char *)send + so[p], sb[p], ncclUint8, p, comm, st);
		if (rb[p] && r == ncclSuccess)
			r = ncclRecv((char *)recv + ro[p], rb[p], ncclUint8, p, comm, st);
	}
	ncclResult_t g = ncclGroupEnd();
	if (nc(d, comm, r, "ncclSend/ncclRecv") || nc(d, comm, g, "ncclGroupEnd (alltoallv)"))
		return -1;
	return tr_dc_sync(d, "nccl alltoallv");
}

static int nccl_allreduce(struct tr_devcomm *d, float *buf, size_t n)
{
	ncclComm_t comm = d->impl;
	if (n && nc(d, comm, ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, comm, (cudaStream_t)d->stream),
		    "ncclAllReduce"))
		return -1;
	return tr_dc_sync(d, "nccl allreduce");
}

static void nccl_destroy(struct tr_devcomm *d)
{
	if (d->impl)
		ncclCommDestroy((ncclComm_t)d->impl);
	d->impl = NULL;
}

static const struct tr_devcomm_ops nccl_ops = { "nccl", nccl_alltoallv, nccl_allreduce, nccl_destroy };

int tr_dc_nccl_open(struct tr_devcomm *d)
{
	ncclUniqueId *ids = calloc((size_t)d->size, sizeof(*ids));
	if (!ids)
		return tr_dc_fail(d, "nccl: out of memory");
	int rc = d->rank == 0 ? nc(d, NULL, ncclGetUniqueId(&ids[0]), "ncclGetUniqueId") : 0;
	/* rank 0's id to all; and no rank enters ncclCommInitRank (which waits for all) if one failed */
	double bad = rc != 0;
	if (tr_allgather(d->c, &ids[d->rank], ids, sizeof(*ids)) || tr_allreduce_f64(d->c, &bad, 1)) {
		free(ids);
		return tr_dc_fail(d, "nccl: sharing the unique id: %s", tr_comm_error(d->c));
	}
	if (bad > 0) {
		free(ids);
		return rc ? -1 : tr_dc_fail(d, "nccl: rank 0 of the group could not make a unique id (it says why)");
	}
	ncclComm_t comm = NULL;
	ncclResult_t r = ncclCommInitRank(&comm, d->size, ids[0], d->rank);
	free(ids);
	if (nc(d, comm, r, "ncclCommInitRank")) {
		if (comm)
			ncclCommDestroy(comm);
		return -1;
	}
	d->impl = comm;
	d->ops = &nccl_ops;
	return 0;
}
