/* op_crossentropy.c - softmax cross-entropy over the byte vocabulary. */
#include <math.h>
#include "ops.h"

void tr_crossentropy_forward(tr_real *losses, tr_real *probs, const tr_real *logits, const uint16_t *targets,
			     int N, int V)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		const tr_real *l = logits + (size_t)n * V;
		tr_real *p = probs + (size_t)n * V;
		tr_real mx = l[0];
		for (int v = 1; v < V; v++)
			if (l[v] > mx)
				mx = l[v];
		double sum = 0, lt = (double)(l[targets[n]] - mx); /* before probs overwrite an aliased l */
		for (int v = 0; v < V; v++) {
			p[v] = (tr_real)exp((double)(l[v] - mx));
			sum += p[v];
		}
		for (int v = 0; v < V; v++)
			p[v] = (tr_real)(p[v] / sum);
		losses[n] = (tr_real)(log(sum) - lt);
	}
}

void tr_crossentropy_backward(tr_real *dlogits, const tr_real *probs, const uint16_t *targets, tr_real dloss,
			      int N, int V)
{
#pragma omp parallel for
	for (int n = 0; n < N; n++) {
		tr_real *d = dlogits + (size_t)n * V;
		const tr_real *p = probs + (size_t)n * V;
		for (int v = 0; v < V; v++)
			d[v] = p[v] * dloss;
		d[targets[n]] -= dloss;
	}
}
