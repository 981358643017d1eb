/* train_run.h - the state of one moe-train run, shared by the training loop (train_main.c) and its
 * checkpoints (train_ckpt.c).
 */
#ifndef TR_TRAIN_RUN_H
#define TR_TRAIN_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"
#include "comm.h"
#include "data.h"
#include "model.h"
#include "train_opts.h"

/* Everything one run holds. */
struct tr_run {
	struct tr_opts o;
	struct tr_comm *world, *ep, *dp;
	struct tr_model *m;
	struct tr_data data;
	int rank, nranks;
	const struct tr_backend *be; /* the model's backend (initialised) */
	float *mom[2], *vel[2];      /* AdamW moments per segment, in the backend's memory */
	size_t n[2];
	long step;                   /* steps done */
	uint64_t pos;                /* global sequences consumed */
	char *config;                /* config text stored in and checked against checkpoints */
	double flops_per_token;      /* model FLOPs per trained token */
	double peak_tflops;          /* per-rank bf16 peak for MFU (--mfu-peak or measured); 0 = unknown */
	FILE *metrics;               /* --metrics file (rank 0), closed by tr_run's owner on every path */
	struct tr_opt_graph *og;     /* --cuda-graph: the optimizer graph (train_graph.h); NULL otherwise */
};

/* Write this rank's checkpoint file DIR/rank-RRRRR.ckpt atomically.  0, or -1 with err. */
int tr_run_save_ckpt(struct tr_run *r, char *err, size_t errlen);
/* Load this rank's checkpoint (collective over the world).  0 = loaded, 1 = no rank has one (start
 * fresh), 2 = refused (bad input; the refusing rank said why in one line), -1 = failure. */
int tr_run_load_ckpt(struct tr_run *r, int ep_size, int ep_rank);
/* Remove this rank's temp files left by a write that was killed before its rename. */
void tr_run_remove_stale_temps(const char *dir, int rank);

#endif
