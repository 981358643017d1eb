/* devcomm_ipc.c - the cuda-ipc device transport (CUDA builds): ranks of one node, each on its own GPU
 * or several on one GPU.
 *
 * Each rank owns two device windows and one interprocess event.  A collective copies the rank's send
 * buffer into its window of this call (they alternate), records the event, and sends every peer - over
 * the host communicator, one fixed-size record each - the window's IPC handle (opened again by the peer
 * only when the window grew), the offset and the length of that peer's bytes.  The receiver waits on the
 * sender's event on its own stream and copies the bytes from the peer's window (or, for the all-reduce,
 * one kernel adds all windows in rank order).  Why two windows: a rank ends every call with its own
 * copies done, before its next record goes out; so when a rank writes a window again, two calls later,
 * every peer has finished reading it (it has since sent a record of the call in between).  No barrier.
 *
 * NEVER RUN ON A GPU: compiled and linked in every CUDA build; tests/gpu/run-all.sh runs it between 2 and
 * 4 processes on one GPU and compares with staging bit for bit.
 */
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "devcomm_internal.h"

struct rec {                     /* what a rank tells each peer per call */
	cudaIpcMemHandle_t h;    /* its window of this call */
	uint64_t gen;            /* that window's generation (it changes when the window grows) */
	uint64_t off, bytes;     /* the peer's bytes in it */
	uint32_t slot, pad;
};

struct map {                     /* a peer's window as opened here */
	uint64_t gen;
	void *p;
};

struct ipc {
	void *win[2];
	size_t win_n[2];
	uint64_t gen[2];
	cudaIpcMemHandle_t h[2]; /* their handles */
	int slot;                /* the window of the next call */
	cudaEvent_t ev;          /* recorded after this rank's window is written */
	cudaEvent_t *pev;        /* [size] the peers' events, opened */
	struct map (*map)[2];    /* [size][2] */
	struct rec *out, *in;    /* [size] */
	float **src_host, **src_dev; /* [size] window pointers of an all-reduce */
	uint64_t next_gen;
};

static int cu(struct tr_devcomm *d, cudaError_t e, const char *what)
{
	if (e == cudaSuccess)
		return 0;
	cudaGetLastError();
	return tr_dc_fail(d, "cuda-ipc: %s: %s", what, cudaGetErrorString(e));
}

/* the window of this call, at least bytes; a new generation when it had to grow */
static void *window(struct tr_devcomm *d, struct ipc *x, size_t bytes)
{
	int s = x->slot;
	if (bytes > x->win_n[s] || !x->win[s]) {
		if (x->win[s])
			cudaFree(x->win[s]); /* peers last read it two calls ago, and finished */
		x->win[s] = NULL;
		x->win_n[s] = 0;
		size_t cap = bytes + bytes / 4 + 4096;
		if (cu(d, cudaMalloc(&x->win[s], cap), "window"))
			return NULL;
		x->win_n[s] = cap;
		if (cu(d, cudaIpcGetMemHandle(&x->h[s], x->win[s]), "cudaIpcGetMemHandle"))
			return NULL;
		x->gen[s] = ++x->next_gen;
	}
	return x->win[s];
}

/* Copies send[0..bytes) into this call's window, records the event, sends each peer p its record
 * (offset off[p], length len[p] in the window) and takes theirs; then opens the peers' windows that are
 * new here and makes d's stream wait for each peer's event. */
static int post(struct tr_devcomm *d, struct ipc *x, const void *send, size_t bytes, const size_t *off,
		const size_t *len)
{
	cudaStream_t st = (cudaStream_t)d->stream;
	int s = x->slot;
	char *w = window(d, x, bytes);
	if (!w)
		return -1;
	if (bytes && cu(d, cudaMemcpyAsync(w, send, bytes, cudaMemcpyDeviceToDevice, st), "copy into the window"))
		return -1;
	if (cu(d, cudaEventRecord(x->ev, st), "event record"))
		return -1;
	for (int p = 0; p < d->size; p++)
		x->out[p] = (struct rec){ .h = x->h[s], .gen = x->gen[s], .off = off[p], .bytes = len[p], .slot = (uint32_t)s };
	if (tr_alltoall(d->c, x->out, x->in, sizeof(struct rec)))
		return tr_dc_fail(d, "cuda-ipc: %s", tr_comm_error(d->c));
	x->slot ^= 1;
	for (int p = 0; p < d->size; p++) {
		struct rec *r = &x->in[p];
		if (p == d->rank || r->slot > 1)
			continue;
		struct map *m = &x->map[p][r->slot];
		if (m->gen != r->gen) {
			if (m->p)
				cudaIpcCloseMemHandle(m->p);
			m->p = NULL;
			m->gen = 0;
			char what[64];
			snprintf(what, sizeof(what), "cudaIpcOpenMemHandle of rank %d's window", p);
			if (cu(d, cudaIpcOpenMemHandle(&m->p, r->h, cudaIpcMemLazyEnablePeerAccess), what))
				return -1;
			m->gen = r->gen;
		}
		if (cu(d, cudaStreamWaitEvent(st, x->pev[p], 0), "waiting for a peer's event"))
			return -1;
	}
	return 0;
}

static int ipc_alltoallv(struct tr_devcomm *d, const void *send, const size_t *sb, const size_t *so, void *recv,
			 const size_t *rb, const size_t *ro)
{
	struct ipc *x = d->impl;
	cudaStream_t st = (cudaStream_t)d->stream;
	size_t st_bytes = 0;
	for (int p = 0; p < d->size; p++)
		st_bytes = so[p] + sb[p] > st_bytes ? so[p] + sb[p] : st_bytes;
	if (post(d, x, send, st_bytes, so, sb))
		return -1;
	for (int p = 0; p < d->size; p++) {
		const struct rec *r = &x->in[p];
		if (r->bytes != rb[p])
			return tr_dc_fail(d, "cuda-ipc alltoallv: rank %d sends %llu bytes, rank %d expects %zu", p,
					  (unsigned long long)r->bytes, d->rank, rb[p]);
		if (!rb[p])
			continue;
		const char *from = p == d->rank ? (const char *)send + so[p] : (const char *)x->map[p][r->slot].p + r->off;
		if (cu(d, cudaMemcpyAsync((char *)recv + ro[p], from, rb[p], cudaMemcpyDeviceToDevice, st), "copy from a peer"))
			return -1;
	}
	return tr_dc_sync(d, "cuda-ipc alltoallv");
}

static int ipc_allreduce(struct tr_devcomm *d, float *buf, size_t n)
{
	struct ipc *x = d->impl;
	size_t bytes = n * sizeof(float), off[d->size], len[d->size];
	for (int p = 0; p < d->size; p++)
		off[p] = 0, len[p] = bytes;
	int s = x->slot;
	if (post(d, x, buf, bytes, off, len))
		return -1;
	for (int p = 0; p < d->size; p++) {
		if (x->in[p].bytes != bytes)
			return tr_dc_fail(d, "cuda-ipc allreduce: rank %d adds %llu bytes, rank %d %zu", p,
					  (unsigned long long)x->in[p].bytes, d->rank, bytes);
		x->src_host[p] = p == d->rank ? (float *)x->win[s] : (float *)x->map[p][x->in[p].slot].p;
	}
	cudaStream_t st = (cudaStream_t)d->stream;
	if (cu(d, cudaMemcpyAsync(x->src_dev, x->src_host, sizeof(float *) * (size_t)d->size, cudaMemcpyHostToDevice, st),
	       "window table"))
		return -1;
	int e = tr_dc_rank_sum(buf, (const float *const *)x->src_dev, d->size, n, st);
	if (e)
		return tr_dc_fail(d, "cuda-ipc allreduce kernel: %s", cudaGetErrorString((cudaError_t)e));
	return tr_dc_sync(d, "cuda-ipc allreduce");
}

static void ipc_destroy(struct tr_devcomm *d)
{
	struct ipc *x = d->impl;
	if (!x)
		return;
	cudaStreamSynchronize((cudaStream_t)d->stream);
	for (int p = 0; x->map && p < d->size; p++)
		for (int s = 0; s < 2; s++)
			if (x->map[p][s].p)
				cudaIpcCloseMemHandle(x->map[p][s].p);
	for (int p = 0; x->pev && p < d->size; p++)
		if (p != d->rank && x->pev[p])
			cudaEventDestroy(x->pev[p]);
	if (x->ev)
		cudaEventDestroy(x->ev);
	for (int s = 0; s < 2; s++)
		if (x->win[s])
			cudaFree(x->win[s]);
	if (x->src_dev)
		cudaFree(x->src_dev);
	free(x->pev), free(x->map), free(x->out), free(x->in), free(x->src_host);
	free(x);
	d->impl = NULL;
}

static const struct tr_devcomm_ops ipc_ops = { "cuda-ipc", ipc_alltoallv, ipc_allreduce, ipc_destroy };

int tr_dc_ipc_open(struct tr_devcomm *d)
{
	int P = d->size;
	struct ipc *x = calloc(1, sizeof(*x));
	if (!x)
		return tr_dc_fail(d, "cuda-ipc: out of memory");
	d->impl = x;
	x->pev = calloc((size_t)P, sizeof(*x->pev));
	x->map = calloc((size_t)P, sizeof(*x->map));
	x->out = calloc((size_t)P, sizeof(*x->out));
	x->in = calloc((size_t)P, sizeof(*x->in));
	x->src_host = calloc((size_t)P, sizeof(*x->src_host));
	cudaIpcEventHandle_t *eh = calloc((size_t)P, sizeof(*eh));
	int rc = -1;
	if (!x->pev || !x->map || !x->out || !x->in || !x->src_host || !eh) {
		tr_dc_fail(d, "cuda-ipc: out of memory");
		goto out;
	}
	if (cu(d, cudaMalloc((void **)&x->src_dev, sizeof(float *) * (size_t)P), "window table") ||
	    cu(d, cudaEventCreateWithFlags(&x->ev, cudaEventDisableTiming | cudaEventInterprocess), "interprocess event") ||
	    cu(d, cudaIpcGetEventHandle(&eh[d->rank], x->ev), "cudaIpcGetEventHandle"))
		goto out;
	if (tr_allgather(d->c, &eh[d->rank], eh, sizeof(*eh))) {
		tr_dc_fail(d, "cuda-ipc: exchanging event handles: %s", tr_comm_error(d->c));
		goto out;
	}
	for (int p = 0; p < P; p++) {
		if (p == d->rank)
			continue;
		char what[64];
		snprintf(what, sizeof(what), "cudaIpcOpenEventHandle of rank %d", p);
		if (cu(d, cudaIpcOpenEventHandle(&x->pev[p], eh[p]), what))
			goto out;
	}
	d->ops = &ipc_ops;
	rc = 0;
out:
	free(eh);
	if (rc) {
		ipc_destroy(d);
		d->ops = NULL;
	}
	return rc;
}
