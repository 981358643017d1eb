/* metrics.h - what moe-train reports per step: the progress line on stdout and one JSON object per
 * line in the --metrics file (schema in doc/trainer.md).  Numbers are printed so that they parse back
 * exactly (%.17g for the loss, so equal runs give equal text), and a non-finite number is written as JSON null.
 */
#ifndef TR_METRICS_H
#define TR_METRICS_H

#include <stdint.h>
#include <stdio.h>

struct tr_step_report {
	long step, steps;            /* steps done (1-based) and the target */
	double loss;                 /* global mean cross-entropy over the step's batch, nats per token */
	double lr, grad_norm;        /* learning rate used; global gradient norm before clipping */
	double ms, tokens_per_s;     /* wall time of the step; global tokens / wall time */
	double max_load_over_mean;   /* router balance (1 = even); 1 for a model without MoE layers */
	uint64_t a2a_bytes;          /* all-to-all bytes sent by all ranks in this step */
	uint64_t a2a_cross_bytes;    /* of the all-to-all traffic, bytes that crossed nodes */
	double a2a_rail_fraction;    /* share of those that stayed on their rail; NaN when none crossed */
	uint64_t a2a_dedup_bytes;    /* bytes deduplication kept off the network */
	double a2a_ms;               /* time a rank spent in the MoE all-to-alls this step, mean over ranks */
	double a2a_wait_ms;          /* --a2a-timing sync: time in the barriers before them (waiting for the
	                                slowest rank), mean over ranks; NAN without sync timing */
	uint64_t a2a_domain_bytes;   /* of a2a_bytes: sent to ranks in the sender's NVLink domain (MOE_DOMAIN) */
	uint64_t a2a_xdomain_bytes;  /* of a2a_bytes: sent to ranks in other domains (a2a_bytes = the two) */
	uint64_t tokens;             /* global tokens in this step */
	const char *device, *dtype;  /* backend ("cpu", "cuda") and GEMM precision ("fp32", "bf16") */
	double flops_per_token;      /* model FLOPs per trained token */
	double mfu;                  /* model FLOPs utilisation per rank against its bf16 peak; NAN = no peak */
};

/* tokens_per_s x flops_per_token / (ranks x peak_tflops); NAN when the peak is unknown (<= 0) */
double tr_metrics_mfu(double tokens_per_s, double flops_per_token, double peak_tflops, int ranks);

void tr_metrics_progress(FILE *f, const struct tr_step_report *r);
void tr_metrics_json(FILE *f, const struct tr_step_report *r);

#endif
