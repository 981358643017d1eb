/* op_embedding.c - token embedding lookup (the table is tied with the output head in model.c). */
#include <string.h>
#include "ops.h"

void tr_embedding_forward(tr_real *out, const uint16_t *tok, const tr_real *wte, int N, int D)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++)
		memcpy(out + (size_t)n * D, wte + (size_t)tok[n] * D, sizeof(tr_real) * D);
}

/* Many rows hit the same table row: split over columns so every sum keeps token order. */
void tr_embedding_backward(tr_real *dwte, const tr_real *dout, const uint16_t *tok, int N, int D)
{
#pragma omp parallel for
	for (int d = 0; d < D; d++)
		for (int n = 0; n < N; n++)
			dwte[(size_t)tok[n] * D + d] += dout[(size_t)n * D + d];
}
