/* op_matmul.c - the linear layer y = x W^T (W is [out][in]) and its backward.
 *
 * All three products go through one register-tiled kernel Y (+)= A B that sums over the shared index in
 * ascending order for every output element, whatever the thread count or the number of rows: the same
 * row gives the same bits in any batch (this is what makes EP=1 and EP=N runs agree).  The tile keeps
 * RB x JB outputs in registers and updates them with vector FMAs across j, never reassociating a sum.
 */
#include <stdlib.h>
#include <string.h>
#include "ops.h"

#define RB 4  /* rows of a tile */
#define JB 16 /* columns of a tile */

/* x86-64: an AVX2 clone picked at load time where the CPU has it.  AVX2 without FMA rounds every
 * multiply and add exactly like the SSE2 baseline, so both clones give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TR_CLONES
#endif

/* Y[n][j] = (acc ? Y[n][j] : 0) + sum_r A(n, r) B[r][j], r ascending; A(n, r) = A[n*ars + r*acs] */
TR_CLONES static void gemm(tr_real *Y, size_t ldy, const tr_real *A, size_t ars, size_t acs, const tr_real *Bm, size_t ldb,
		 int N, int R, int J, int acc)
{
#pragma omp parallel for schedule(static)
	for (int n0 = 0; n0 < N; n0 += RB) {
		int nb = N - n0 < RB ? N - n0 : RB;
		for (int j0 = 0; j0 < J; j0 += JB) {
			int jb = J - j0 < JB ? J - j0 : JB;
			if (nb == RB && jb == JB) {
				tr_real t[RB][JB];
				for (int i = 0; i < RB; i++)
					for (int j = 0; j < JB; j++)
						t[i][j] = acc ? Y[(size_t)(n0 + i) * ldy + j0 + j] : 0;
				const tr_real *a = A + (size_t)n0 * ars;
				for (int r = 0; r < R; r++) {
					const tr_real *b = Bm + (size_t)r * ldb + j0;
					tr_real a0 = a[r * acs], a1 = a[ars + r * acs], a2 = a[2 * ars + r * acs],
						a3 = a[3 * ars + r * acs];
#pragma omp simd
					for (int j = 0; j < JB; j++) {
						t[0][j] += a0 * b[j];
						t[1][j] += a1 * b[j];
						t[2][j] += a2 * b[j];
						t[3][j] += a3 * b[j];
					}
				}
				for (int i = 0; i < RB; i++)
					memcpy(Y + (size_t)(n0 + i) * ldy + j0, t[i], sizeof(tr_real) * JB);
			} else {
				for (int i = 0; i < nb; i++)
					for (int j = 0; j < jb; j++) {
						tr_real s = acc ? Y[(size_t)(n0 + i) * ldy + j0 + j] : 0;
						for (int r = 0; r < R; r++)
							s += A[(size_t)(n0 + i) * ars + (size_t)r * acs] * Bm[(size_t)r * ldb + j0 + j];
						Y[(size_t)(n0 + i) * ldy + j0 + j] = s;
					}
			}
		}
	}
}

void tr_matmul_forward(tr_real *out, const tr_real *inp, const tr_real *w, int N, int C, int OC)
{
	if (N <= 0)
		return;
	tr_real *wt = malloc(sizeof(tr_real) * (size_t)C * OC); /* [C][OC] */
	if (!wt)
		abort();
#pragma omp parallel for
	for (int c = 0; c < C; c++)
		for (int o = 0; o < OC; o++)
			wt[(size_t)c * OC + o] = w[(size_t)o * C + c];
	gemm(out, OC, inp, C, 1, wt, OC, N, C, OC, 0);
	free(wt);
}

void tr_matmul_backward(tr_real *dinp, tr_real *dw, const tr_real *dout, const tr_real *inp,
			const tr_real *w, int N, int C, int OC)
{
	if (N <= 0)
		return;
	if (dinp) /* dx[n] += sum_o dy[n][o] w[o] */
		gemm(dinp, C, dout, OC, 1, w, C, N, OC, C, 1);
	/* dW[o] += sum_n dy[n][o] x[n] */
	gemm(dw, C, dout, 1, OC, inp, C, OC, N, C, 1);
}
