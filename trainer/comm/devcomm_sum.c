/* devcomm_sum.c - the device side every device transport shares (CUDA builds): d's stream, and the
 * combine: the rows move with the transport's alltoallv into a device buffer of d, the plan built on the
 * host (devcomm_plan.c) goes up, and one kernel (devcomm_kernels.cu) adds every key's rows in its order.
 *
 * NEVER RUN ON A GPU: compiled and linked in every CUDA build; tests/gpu/run-all.sh runs it.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>

#include "devcomm_internal.h"

int tr_dc_stream_open(struct tr_devcomm *d)
{
	cudaStream_t s;
	cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	if (e != cudaSuccess)
		return tr_dc_fail(d, "cannot create a CUDA stream: %s", cudaGetErrorString(e));
	d->stream = s;
	return 0;
}

void tr_dc_stream_close(struct tr_devcomm *d)
{
	if (d->stream)
		cudaStreamDestroy((cudaStream_t)d->stream);
	d->stream = NULL;
}

int tr_dc_sync(struct tr_devcomm *d, const char *what)
{
	cudaError_t e = cudaStreamSynchronize((cudaStream_t)d->stream);
	if (e == cudaSuccess)
		e = cudaGetLastError();
	return e == cudaSuccess ? 0 : tr_dc_fail(d, "%s: %s", what, cudaGetErrorString(e));
}

/* grow-only device buffer */
static int dgrow(struct tr_devcomm *d, void **p, size_t *n, size_t want)
{
	if (want <= *n && *p)
		return 0;
	if (*p)
		cudaFree(*p);
	*p = NULL;
	*n = 0;
	size_t cap = want + want / 4 + 256;
	cudaError_t e = cudaMalloc(p, cap);
	if (e != cudaSuccess) {
		cudaGetLastError();
		*p = NULL;
		return tr_dc_fail(d, "out of GPU memory for %.1f MiB of combine buffers: %s", (double)cap / (1u << 20),
				  cudaGetErrorString(e));
	}
	*n = cap;
	return 0;
}

int tr_dc_sum(struct tr_devcomm *d, const float *send, const size_t *sb, const size_t *so, float *sum,
	      const size_t *rb, const size_t *ro, size_t row_bytes, const int *key_host, int nkeys)
{
	(void)key_host; /* already in d->plan (devcomm.c) */
	size_t rt = 0;
	for (int p = 0; p < d->size; p++)
		rt = ro[p] + rb[p] > rt ? ro[p] + rb[p] : rt;
	const struct tr_dsum_plan *pl = &d->plan;
	size_t nst = sizeof(int) * ((size_t)nkeys + 1), nrow = sizeof(int) * pl->rows;
	if (dgrow(d, &d->rbuf, &d->rbuf_n, rt) || dgrow(d, &d->dplan, &d->dplan_n, nst + nrow + pl->rows))
		return -1;
	if (d->ops->alltoallv(d, send, sb, so, d->rbuf, rb, ro))
		return -1;
	cudaStream_t s = (cudaStream_t)d->stream;
	char *dp = d->dplan;
	cudaMemcpyAsync(dp, pl->start, nst, cudaMemcpyHostToDevice, s);
	cudaMemcpyAsync(dp + nst, pl->row, nrow, cudaMemcpyHostToDevice, s);
	cudaMemcpyAsync(dp + nst + nrow, pl->first, pl->rows, cudaMemcpyHostToDevice, s);
	int e = tr_dc_keyed_sum(sum, d->rbuf, (const int *)(void *)dp, (const int *)(void *)(dp + nst),
				(const unsigned char *)(dp + nst + nrow), nkeys, row_bytes / sizeof(float), s);
	if (e)
		return tr_dc_fail(d, "combine kernel: %s", cudaGetErrorString((cudaError_t)e));
	/* the host plan is reused by the next call: the copies above must be done (and the sums too) */
	return tr_dc_sync(d, "combine");
}

void tr_dc_sum_free(struct tr_devcomm *d)
{
	if (d->rbuf)
		cudaFree(d->rbuf);
	if (d->dplan)
		cudaFree(d->dplan);
	d->rbuf = d->dplan = NULL;
	d->rbuf_n = d->dplan_n = 0;
}
