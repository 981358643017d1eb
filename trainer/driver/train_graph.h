/* train_graph.h - the optimizer half of a --cuda-graph step: the gradient norm, the clipping factor and
 * AdamW on both parameter segments as one CUDA graph, run eagerly at the first step, captured at the
 * second and replayed from then on.  What changes per step (the learning rate and AdamW's bias
 * corrections, folded by tr_adamw_fold) is written to device memory before each replay; the norm is
 * read back after it.  The forward + backward graph is the model's (model.h tr_model_set_graph).
 */
#ifndef TR_TRAIN_GRAPH_H
#define TR_TRAIN_GRAPH_H

#include <stddef.h>

#include "optim.h"
#include "train_run.h"

struct tr_opt_graph;
/* For the run's model, moments and --clip.  0, or -1 with one line in err. */
int tr_opt_graph_new(struct tr_run *r, struct tr_opt_graph **out, char *err, size_t errlen);
/* AdamW at 1-based step t with learning rate lr, after clipping to the run's --clip; *norm: the
 * gradient norm before clipping (what tr_model_grad_norm gives).  0, or -1 with one line in err. */
int tr_opt_graph_step(struct tr_opt_graph *g, const struct tr_adamw *aw, double lr, long t, double *norm, char *err,
		      size_t errlen);
void tr_opt_graph_free(struct tr_opt_graph *g);

#endif
