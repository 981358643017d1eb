/* devcomm_kernels.cu - the device transports' two sums (C linkage), each with the additions of its host
 * counterpart in the same order, so their results have the same bits in fp32 (compiled -fmad=false):
 *   tr_dc_keyed_sum  a combine's per-key sums along a struct tr_dsum_plan (tr_dsum_plan_apply's loop)
 *   tr_dc_rank_sum   an all-reduce's element-wise sum of the ranks' buffers in rank order (comm.c's)
 *
 * NEVER RUN ON A GPU: compiled in every CUDA build; tests/gpu/run-all.sh runs it.
 */
#include <cuda_runtime.h>
#include "devcomm_internal.h"

__global__ void keyed_sum(float *sum, const float *recv, const int *start, const int *row, const unsigned char *first,
			  int nkeys, size_t D)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)nkeys * D)
		return;
	int k = (int)(i / D);
	size_t d = i % D;
	int a = start[k], b = start[k + 1], have = 0;
	float t = 0, s = 0;
	for (int j = a; j < b; j++) {
		float v = recv[(size_t)row[j] * D + d];
		if (!first[j]) {
			s += v;
			continue;
		}
		if (j > a) {
			t = have ? t + s : s;
			have = 1;
		}
		s = v;
	}
	if (b > a)
		t = have ? t + s : s;
	sum[i] = t;
}

__global__ void rank_sum(float *out, const float *const *src, int P, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= n)
		return;
	float acc = src[0][i];
	for (int p = 1; p < P; p++)
		acc += src[p][i];
	out[i] = acc;
}

static unsigned blocks(size_t n, unsigned threads)
{
	size_t b = (n + threads - 1) / threads;
	return (unsigned)(b > 0x7fffffffu ? 0x7fffffffu : (b ? b : 1));
}

extern "C" int tr_dc_keyed_sum(float *sum, const float *recv, const int *start, const int *row,
			       const unsigned char *first, int nkeys, size_t D, void *stream)
{
	if (nkeys == 0 || D == 0)
		return 0;
	keyed_sum<<<blocks((size_t)nkeys * D, 256), 256, 0, (cudaStream_t)stream>>>(sum, recv, start, row, first, nkeys, D);
	return (int)cudaGetLastError();
}

extern "C" int tr_dc_rank_sum(float *out, const float *const *src, int P, size_t n, void *stream)
{
	if (n == 0)
		return 0;
	rank_sum<<<blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(out, src, P, n);
	return (int)cudaGetLastError();
}
