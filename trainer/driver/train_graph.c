/* train_graph.c - the optimizer graph of --cuda-graph (see train_graph.h). */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "train_graph.h"

struct tr_opt_graph {
	const struct tr_backend *be;
	tr_real *p[2], *g[2];
	float *m[2], *v[2];
	size_t n[2];
	double clip;
	struct tr_adamw_step *k;  /* device: this step's constants */
	float *scale;             /* device: the clipping factor */
	double *norm, *sq[2];     /* device: the norm; sums of squares per segment (TR_SUM_DOUBLES) */
	void *exec;
	long steps;
};

void tr_opt_graph_free(struct tr_opt_graph *g)
{
	if (!g)
		return;
	if (g->exec)
		g->be->graph_free(g->exec);
	g->be->free(g->k), g->be->free(g->scale), g->be->free(g->norm), g->be->free(g->sq[0]), g->be->free(g->sq[1]);
	free(g);
}

int tr_opt_graph_new(struct tr_run *r, struct tr_opt_graph **out, char *err, size_t errlen)
{
	const struct tr_backend *be = r->be;
	*out = NULL;
	if (!be->graph_begin || !be->adamw_dev || !be->clip_dev) {
		snprintf(err, errlen, "--cuda-graph: the %s backend cannot capture graphs; valid with --device cuda", be->name);
		return -1;
	}
	struct tr_opt_graph *g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	g->be = be;
	g->clip = r->o.clip;
	for (int s = 0; s < 2; s++) {
		g->p[s] = tr_model_params(r->m, (enum tr_seg)s);
		g->g[s] = tr_model_grads(r->m, (enum tr_seg)s);
		g->m[s] = r->mom[s];
		g->v[s] = r->vel[s];
		g->n[s] = r->n[s];
		g->sq[s] = be->alloc(sizeof(double) * TR_SUM_DOUBLES(g->n[s]));
	}
	g->k = be->alloc(sizeof(*g->k));
	g->scale = be->alloc(sizeof(float));
	g->norm = be->alloc(sizeof(double));
	char why[256] = "";
	if (!g->sq[0] || !g->sq[1] || !g->k || !g->scale || !g->norm || be->sync(why, sizeof(why))) {
		snprintf(err, errlen, "out of %s memory for the optimizer graph%s%s", be->name, why[0] ? ": " : "", why);
		tr_opt_graph_free(g);
		return -1;
	}
	*out = g;
	return 0;
}

/* the optimizer's work, queued: what the graph holds */
static void queue(struct tr_opt_graph *g)
{
	const struct tr_backend *be = g->be;
	be->sum_to(g->sq[0], g->g[0], g->n[0], 1);
	be->sum_to(g->sq[1], g->g[1], g->n[1], 1);
	be->clip_dev(g->scale, g->norm, g->sq[0], g->sq[1], g->clip);
	for (int s = 0; s < 2; s++)
		be->adamw_dev(g->k, g->scale, g->p[s], g->g[s], g->m[s], g->v[s], g->n[s]);
}

int tr_opt_graph_step(struct tr_opt_graph *g, const struct tr_adamw *aw, double lr, long t, double *norm, char *err,
		      size_t errlen)
{
	const struct tr_backend *be = g->be;
	struct tr_adamw_step k = tr_adamw_fold(aw, lr, t);
	be->upload(g->k, &k, sizeof(k)); /* returns when it is there: before the replay reads it */
	if (!g->exec && g->steps > 0) {
		if (be->graph_begin(err, errlen))
			return -1;
		queue(g);
		if (be->graph_end(&g->exec, err, errlen))
			return -1;
	}
	if (g->exec) {
		if (be->graph_launch(g->exec, err, errlen))
			return -1;
	} else {
		queue(g);
	}
	g->steps++;
	be->download(norm, g->norm, sizeof(double));
	return be->sync(err, errlen);
}
