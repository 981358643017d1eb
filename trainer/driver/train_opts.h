/* train_opts.h - moe-train's command line: one table of flags drives parsing, validation and --help,
 * so every flag is documented and every bad value gets one line naming the flag and its valid values.
 */
#ifndef TR_TRAIN_OPTS_H
#define TR_TRAIN_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model.h"

struct tr_opts {
	struct tr_config cfg;       /* model shape; cfg.seq_len is --seq-len */
	const char *data, *metrics, *ckpt_dir, *transport;
	const char *device, *dtype; /* NULL: the default (device: cuda when the plan gives a GPU, dtype fp32) */
	const char *device_comm;    /* --device-comm / MOE_DEVICE_COMM; NULL = staged */
	double mfu_peak;            /* TFLOP/s per rank for MFU; 0 = measure (cuda) */
	long steps, warmup, lr_steps, ckpt_every, log_every;
	long batch, global_batch;   /* per-rank micro-batch and global batch (sequences); see resolve */
	uint64_t seed;
	double lr, min_lr, wd, beta1, beta2, eps, clip, router_skew;
	long threads;
	int resume, quiet;
	int cuda_graph;             /* --cuda-graph: capture the step once, replay it (EP size 1, cuda) */
	/* which flags were given (the launcher's plan may fill the others) */
	int set_experts, set_group_topk, set_batch, set_global_batch, set_lr_steps;
};

void tr_opts_defaults(struct tr_opts *o);
/* "fp32" or "bf16" */
const char *tr_opts_dtype(const struct tr_opts *o);
/* Parse argv (after the program name).  0 = run; 1 = --help printed (exit 0); 2 = bad input, one line
 * already on stderr. */
int tr_opts_parse(struct tr_opts *o, int argc, char **argv);
void tr_opts_help(FILE *f);
/* Fix the per-rank batch for a world of `world` ranks: --global-batch G gives each rank G/world
 * (G must divide); otherwise G = --batch * world.  0, or 2 with one line on stderr. */
int tr_opts_resolve_batch(struct tr_opts *o, int world);
/* The settings a checkpoint must agree with, as "key=value\n" lines (model shape, data order,
 * optimizer, schedule, rank layout).  Returns a malloc'd string. */
char *tr_opts_config_text(const struct tr_opts *o, int world, int rank, int ep_size, int ep_rank,
			  uint64_t data_tokens);

#endif
