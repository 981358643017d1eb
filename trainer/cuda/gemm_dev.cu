/* gemm_dev.cu - the routed experts' linear layers for --cuda-graph: one launch for all local experts
 * whose rows per expert are read from device memory, so the launch (and a captured graph) does not
 * depend on the routing.  The cuBLAS grouped call of gemm.cu takes its sizes on the host; it stays the
 * default.  Deliberately simple: one 64 x 64 output tile per block of 256 threads (4 x 4 each), K in
 * steps of 16 through shared memory, the products summed in K order in fp32 (no FMA contraction:
 * -fmad=false).  bf16 mode rounds every operand to bf16 as it is loaded (their products are exact in
 * fp32) and accumulates in fp32, like the bf16 cuBLAS path; it runs on the CUDA cores, not the
 * tensor cores.
 *
 * Row-major, as ops.h: x [R][C], w_j [OC][C], y [R][OC].
 *   forward  y[r][o]   =  sum_c x[r][c] w_j[o][c]       blocks: (row tile b, column tile of OC)
 *   dx       dx[r][c] +=  sum_o dy[r][o] w_j[o][c]      blocks: (row tile b, column tile of C)
 *   dw       dw_j[o][c] += sum_r dy[r][o] x[r][c]       blocks: (tile of C, tile of OC, expert j)
 * Row tile b -> (expert, rows): grouped_map.h, computed by each block from the counts.
 */
#include "cuda_ctx.h"
#include "cuda_ops.h"
#include "grouped_map.h"

#define TM 64  /* rows of an output tile (also the row tile of grouped_map.h) */
#define TN 64  /* columns of an output tile */
#define BK 16  /* K per shared-memory step */

static __device__ __forceinline__ float ld(const float *p, int bf)
{
	float v = *p;
	return bf ? __bfloat162float(__float2bfloat16_rn(v)) : v;
}

/* One tile: Ct[i][n] (+)= sum_k A(i, k) B(k, n) for i < M <= TM, n < N <= TN, with A(i, k) =
 * A[i*sai + k*sak], B(k, n) = B[k*sbk + n*sbn], Ct[i][n] = C[i*ldc + n].  All 256 threads call it. */
static __device__ void tile_mm(const float *A, size_t sai, size_t sak, const float *B, size_t sbk, size_t sbn,
			       float *C, size_t ldc, int M, int N, int K, int acc, int bf)
{
	__shared__ float As[BK][TM + 1], Bs[BK][TN + 1];
	int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
	float c[4][4];
	for (int a = 0; a < 4; a++)
		for (int b = 0; b < 4; b++)
			c[a][b] = 0.0f;
	for (int k0 = 0; k0 < K; k0 += BK) {
		for (int e = threadIdx.x; e < TM * BK; e += blockDim.x) {
			int i = e / BK, kk = e % BK;
			As[kk][i] = i < M && k0 + kk < K ? ld(A + (size_t)i * sai + (size_t)(k0 + kk) * sak, bf) : 0.0f;
		}
		for (int e = threadIdx.x; e < BK * TN; e += blockDim.x) {
			int kk = e / TN, n = e % TN;
			Bs[kk][n] = n < N && k0 + kk < K ? ld(B + (size_t)(k0 + kk) * sbk + (size_t)n * sbn, bf) : 0.0f;
		}
		__syncthreads();
		for (int kk = 0; kk < BK; kk++)
			for (int a = 0; a < 4; a++)
				for (int b = 0; b < 4; b++)
					c[a][b] += As[kk][ty * 4 + a] * Bs[kk][tx * 4 + b];
		__syncthreads();
	}
	for (int a = 0; a < 4; a++)
		for (int b = 0; b < 4; b++) {
			int i = ty * 4 + a, n = tx * 4 + b;
			if (i < M && n < N) {
				float *p = C + (size_t)i * ldc + n;
				*p = acc ? *p + c[a][b] : c[a][b];
			}
		}
}

/* forward (dx = 0) or dx (dx = 1) over row tiles: blockIdx.x the tile, blockIdx.y the column tile */
__global__ void k_gdev_rows(int dx, float *out, const float *in, const float *w, size_t wstride, const int *rows,
			    int El, int C, int OC, int bf)
{
	extern __shared__ int off[]; /* row_off[El + 1] | tile_off[El + 1] */
	if (threadIdx.x == 0)
		tr_gmap_prefix(rows, El, TM, off, off + El + 1);
	__syncthreads();
	int j, row0, nr;
	/* the same answer for every thread of the block: whole blocks leave */
	if (!tr_gmap_tile(off, off + El + 1, El, TM, (int)blockIdx.x, &j, &row0, &nr))
		return;
	const float *wj = w + (size_t)j * wstride;
	int n0 = (int)blockIdx.y * TN, N = dx ? C : OC;
	if (n0 >= N)
		return;
	int nn = N - n0 < TN ? N - n0 : TN;
	if (!dx) /* A = x rows, B(k = c, n = o) = w_j[o][c] */
		tile_mm(in + (size_t)row0 * C, C, 1, wj + (size_t)n0 * C, 1, C, out + (size_t)row0 * OC + n0, OC, nr, nn, C,
			0, bf);
	else /* A = dy rows, B(k = o, n = c) = w_j[o][c] */
		tile_mm(in + (size_t)row0 * OC, OC, 1, wj + n0, C, 1, out + (size_t)row0 * C + n0, C, nr, nn, OC, 1, bf);
}

/* dw: blockIdx.z the expert, blockIdx.y the tile of OC (rows of dw_j), blockIdx.x the tile of C */
__global__ void k_gdev_dw(float *dw, const float *x, const float *dy, size_t wstride, const int *rows, int C, int OC,
			  int bf)
{
	__shared__ int r0;
	int j = (int)blockIdx.z;
	if (threadIdx.x == 0) {
		int o = 0;
		for (int q = 0; q < j; q++)
			o += rows[q];
		r0 = o;
	}
	__syncthreads();
	int K = rows[j], m0 = (int)blockIdx.y * TM, n0 = (int)blockIdx.x * TN;
	if (K == 0 || m0 >= OC || n0 >= C)
		return;
	int mm = OC - m0 < TM ? OC - m0 : TM, nn = C - n0 < TN ? C - n0 : TN;
	/* A(i = o, k = r) = dy[r0 + r][m0 + i], B(k = r, n = c) = x[r0 + r][n0 + n] */
	tile_mm(dy + (size_t)r0 * OC + m0, 1, OC, x + (size_t)r0 * C + n0, C, 1, dw + (size_t)j * wstride + (size_t)m0 * C + n0,
		C, mm, nn, K, 1, bf);
}

static int dims_ok(int El, int R, int C, int OC)
{
	if (tr_cu.err[0] || R <= 0 || El <= 0 || C <= 0 || OC <= 0)
		return 0;
	int mx = C > OC ? C : OC, ct = (mx + TN - 1) / TN;
	if (El > 4096 || ct > 65535 || (OC + TM - 1) / TM > 65535) {
		tr_cuda_fail("device-count grouped GEMM: %d experts of %d x %d: at most 4096 experts and 65535 x 64 columns",
			     El, OC, C);
		return 0;
	}
	return 1;
}

static void rows_launch(int dx, float *out, const float *in, const float *w, size_t wstride, const int *rows, int El,
			int R, int C, int OC)
{
	dim3 grid((unsigned)tr_gmap_max_tiles(R, El, TM), (unsigned)(((dx ? C : OC) + TN - 1) / TN));
	size_t sh = 2 * ((size_t)El + 1) * sizeof(int);
	k_gdev_rows<<<grid, 256, sh, tr_cu.stream>>>(dx, out, in, w, wstride, rows, El, C, OC,
						      tr_cu.dtype == TR_DTYPE_BF16);
	TR_CU_LAUNCHED(dx ? "grouped GEMM dx (device counts)" : "grouped GEMM forward (device counts)");
}

extern "C" void tr_cuda_expert_matmul_forward_dev(float *out, const float *inp, const float *w, size_t wstride,
						  const int *rows, int El, int R, int C, int OC)
{
	if (dims_ok(El, R, C, OC))
		rows_launch(0, out, inp, w, wstride, rows, El, R, C, OC);
}

extern "C" void tr_cuda_expert_matmul_backward_dev(float *dinp, float *dw, const float *dout, const float *inp,
						   const float *w, size_t wstride, const int *rows, int El, int R, int C,
						   int OC)
{
	if (!dims_ok(El, R, C, OC))
		return;
	if (dinp)
		rows_launch(1, dinp, dout, w, wstride, rows, El, R, C, OC);
	dim3 grid((unsigned)((C + TN - 1) / TN), (unsigned)((OC + TM - 1) / TM), (unsigned)El);
	k_gdev_dw<<<grid, 256, 0, tr_cu.stream>>>(dw, inp, dout, wstride, rows, C, OC, tr_cu.dtype == TR_DTYPE_BF16);
	TR_CU_LAUNCHED("grouped GEMM dw (device counts)");
}
