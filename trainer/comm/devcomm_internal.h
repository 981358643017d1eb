/* devcomm_internal.h - what devcomm.c (selection, checks, counters) shares with the device transports
 * (devcomm_ipc.c, devcomm_nccl.c; CUDA builds only), the combine's device part (devcomm_sum.c) and the
 * kernels (devcomm_kernels.cu).  A transport moves bytes between device buffers and sums in place;
 * devcomm.c checks the arguments, counts the bytes and turns a failure on any rank into one on all.
 */
#ifndef TR_DEVCOMM_INTERNAL_H
#define TR_DEVCOMM_INTERNAL_H

#include <stddef.h>
#include "devcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct tr_devcomm_ops {
	const char *kind;
	int (*alltoallv)(struct tr_devcomm *d, const void *send, const size_t *sb, const size_t *so, void *recv,
			 const size_t *rb, const size_t *ro);
	int (*allreduce_f32)(struct tr_devcomm *d, float *buf, size_t n);
	void (*destroy)(struct tr_devcomm *d);
};

struct tr_devcomm {
	const struct tr_devcomm_ops *ops;
	struct tr_comm *c;
	int rank, size;
	int *node;               /* node index of every member (comm.h's node order) */
	void *stream;            /* cudaStream_t every transfer and kernel of d runs on */
	void *rbuf;              /* device: the received rows of a combine */
	size_t rbuf_n;
	void *dplan;             /* device: a combine's plan (start | row | first) */
	size_t dplan_n;
	struct tr_dsum_plan plan;
	void *impl;              /* the transport's state */
	char err[512];
};

int tr_dc_fail(struct tr_devcomm *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* CUDA builds: the transports (fill d->ops and d->impl, or d->err), and devcomm_sum.c */
int tr_dc_ipc_open(struct tr_devcomm *d);
int tr_dc_nccl_open(struct tr_devcomm *d);
int tr_dc_stream_open(struct tr_devcomm *d);  /* d->stream, on the current device */
void tr_dc_stream_close(struct tr_devcomm *d);
/* 0 when cudaStreamSynchronize(d->stream) and every queued call succeeded, else -1 naming `what` */
int tr_dc_sync(struct tr_devcomm *d, const char *what);
int tr_dc_sum(struct tr_devcomm *d, const float *send, const size_t *sb, const size_t *so, float *sum,
	      const size_t *rb, const size_t *ro, size_t row_bytes, const int *key_host, int nkeys);
void tr_dc_sum_free(struct tr_devcomm *d);
/* devcomm_kernels.cu: launches on stream; cudaError_t of the launch (0 = cudaSuccess) */
int tr_dc_keyed_sum(float *sum, const float *recv, const int *start, const int *row, const unsigned char *first,
		    int nkeys, size_t D, void *stream);
int tr_dc_rank_sum(float *out, const float *const *src, int P, size_t n, void *stream);

#ifdef __cplusplus
}
#endif
#endif
