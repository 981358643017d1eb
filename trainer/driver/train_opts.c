/* train_opts.c - moe-train's flag table, parser and --help (see train_opts.h). */
#include "train_opts.h"
#include "backend.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "devcomm.h"

enum kind { K_INT, K_LONG, K_U64, K_REAL, K_DBL, K_STR, K_FLAG };

struct flag {
	const char *name;   /* without the leading "--" */
	enum kind kind;
	size_t off;         /* offset in struct tr_opts */
	double lo, hi;      /* valid range for numbers */
	const char *meta, *help;
	size_t set_off;     /* offset of a "was given" int, or 0 */
};

#define O(f) offsetof(struct tr_opts, f)
#define C(f) offsetof(struct tr_opts, cfg.f)
#define NONE 0

static const struct flag flags[] = {
	{"data", K_STR, O(data), 0, 0, "FILES", "token shards, comma-separated (make one with `moe-train prepare`); required", NONE},
	{"steps", K_LONG, O(steps), 1, 1e12, "N", "train until N steps are done (counting steps before a --resume)", NONE},
	{"seed", K_U64, O(seed), 0, 1.8e19, "S", "seed of the initialisation and of the data order", NONE},
	{"metrics", K_STR, O(metrics), 0, 0, "FILE", "append one JSON object per step to FILE (rank 0; truncated unless resuming)", NONE},
	{"batch", K_LONG, O(batch), 1, 1 << 20, "B", "sequences per rank per step; see --global-batch", O(set_batch)},
	{"global-batch", K_LONG, O(global_batch), 1, 1 << 24, "G", "sequences per step over all ranks; each rank takes G/world (G must divide; default --batch x world)", O(set_global_batch)},
	{"seq-len", K_INT, C(seq_len), 2, 1 << 16, "T", "tokens per sequence (context length)", NONE},
	{"dim", K_INT, C(d_model), 4, 1 << 16, "D", "model width d_model", NONE},
	{"heads", K_INT, C(n_heads), 1, 1024, "H", "attention heads (must divide --dim)", NONE},
	{"layers", K_INT, C(n_layers), 1, 1024, "L", "transformer blocks", NONE},
	{"dense-layers", K_INT, C(n_dense_layers), 0, 1024, "K", "leading blocks with a dense FFN (K = --layers: no MoE)", NONE},
	{"ffn", K_INT, C(d_ff), 1, 1 << 20, "F", "hidden size of the dense FFNs and of the shared expert", NONE},
	{"expert-ffn", K_INT, C(d_expert), 1, 1 << 20, "F", "hidden size of a routed expert", NONE},
	{"experts", K_INT, C(n_experts), 1, 1 << 16, "E", "routed experts (MOE_EXPERTS from the launcher must agree)", O(set_experts)},
	{"top-k", K_INT, C(top_k), 1, 1 << 16, "K", "routed experts per token", NONE},
	{"groups", K_INT, C(n_groups), 0, 1 << 16, "G", "routing groups: 0 = one per NVLink domain of the EP group, >0 = G equal groups", NONE},
	{"group-topk", K_INT, C(topk_groups), 0, 1 << 16, "M", "groups a token may reach, 0 = no limit (default: MOE_ROUTE_GROUPS)", O(set_group_topk)},
	{"route-scale", K_REAL, C(route_scale), 0, 1e6, "X", "gate multiplier", NONE},
	{"bias-gamma", K_REAL, C(bias_gamma), 0, 1e3, "X", "aux-loss-free router bias update speed", NONE},
	{"rope-theta", K_REAL, C(rope_theta), 1, 1e12, "X", "RoPE base", NONE},
	{"init-std", K_REAL, C(init_std), 1e-9, 10, "X", "standard deviation of the weight initialisation", NONE},
	{"router-skew", K_DBL, O(router_skew), 0, 1e3, "X", "start with a skewed router: bias of expert e = X*(E-1-e)/(E-1) (balancing test)", NONE},
	{"lr", K_DBL, O(lr), 0, 10, "X", "peak learning rate", NONE},
	{"min-lr", K_DBL, O(min_lr), 0, 10, "X", "learning rate at the end of the cosine decay", NONE},
	{"warmup", K_LONG, O(warmup), 0, 1e12, "N", "steps of linear warmup", NONE},
	{"lr-steps", K_LONG, O(lr_steps), 1, 1e12, "N", "length of the schedule (default --steps; a resumed run keeps its checkpoint's)", O(set_lr_steps)},
	{"weight-decay", K_DBL, O(wd), 0, 10, "X", "AdamW decoupled weight decay (all parameters)", NONE},
	{"beta1", K_DBL, O(beta1), 0, 0.999999, "X", "AdamW beta1", NONE},
	{"beta2", K_DBL, O(beta2), 0, 0.999999, "X", "AdamW beta2", NONE},
	{"eps", K_DBL, O(eps), 1e-30, 1, "X", "AdamW epsilon", NONE},
	{"clip", K_DBL, O(clip), 0, 1e9, "X", "clip the global gradient norm to X (0 = off)", NONE},
	{"ckpt-dir", K_STR, O(ckpt_dir), 0, 0, "DIR", "checkpoint directory: one file per rank, written at the end, every --ckpt-every steps and on SIGTERM/SIGUSR1", NONE},
	{"ckpt-every", K_LONG, O(ckpt_every), 0, 1e12, "N", "also checkpoint every N steps (0 = only at the end and on a signal)", NONE},
	{"resume", K_FLAG, O(resume), 0, 0, NULL, "continue from --ckpt-dir when it holds a checkpoint (else start fresh)", NONE},
	{"transport", K_STR, O(transport), 0, 0, "KIND", TR_COMM_KINDS " (default: MOE_TRANSPORT, else auto)", NONE},
	{"device", K_STR, O(device), 0, 0, "DEV", "cpu or cuda (default: cuda when CUDA_VISIBLE_DEVICES names a GPU and the CUDA backend is built, else cpu)", NONE},
	{"device-comm", K_STR, O(device_comm), 0, 0, "KIND", TR_DEVCOMM_KINDS ": how device buffers move between ranks with --device cuda (default: MOE_DEVICE_COMM, else staged: through pinned host memory; doc/gpu.md)", NONE},
	{"dtype", K_STR, O(dtype), 0, 0, "T", "fp32 or bf16 (bf16: bf16 GEMM operands, fp32 accumulation and master weights; cuda only) (default fp32)", NONE},
	{"cuda-graph", K_FLAG, O(cuda_graph), 0, 0, NULL, "capture the step once as a CUDA graph and replay it every step (EP size 1 and --device cuda only; routed experts through a simple device-count GEMM; not yet run on a GPU)", NONE},
	{"mfu-peak", K_DBL, O(mfu_peak), 0, 1e7, "TFLOPS", "bf16 peak per rank for the MFU figure (default: measured by a cuBLAS GEMM at start on cuda; none on cpu)", NONE},
	{"threads", K_LONG, O(threads), 0, 4096, "N", "OpenMP threads (0 = OMP_NUM_THREADS or all cores)", NONE},
	{"log-every", K_LONG, O(log_every), 1, 1e12, "N", "progress line every N steps (metrics are written every step)", NONE},
	{"quiet", K_FLAG, O(quiet), 0, 0, NULL, "no progress lines, only the summary", NONE},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

void tr_opts_defaults(struct tr_opts *o)
{
	memset(o, 0, sizeof(*o));
	tr_config_default(&o->cfg);
	o->cfg.seq_len = 64;
	o->steps = 100;
	o->seed = 1;
	o->batch = 8;
	o->lr = 3e-3;
	o->min_lr = 3e-4;
	o->warmup = 10;
	o->wd = 0.0;
	o->beta1 = 0.9;
	o->beta2 = 0.95;
	o->eps = 1e-8;
	o->clip = 1.0;
	o->log_every = 1;
}

void tr_opts_help(FILE *f)
{
	struct tr_opts d;
	tr_opts_defaults(&d);
	fprintf(f, "usage: moe-train --data FILES [options]      train (one rank, or every rank under moe-launch)\n"
		   "       moe-train prepare IN.txt OUT.bin       byte-level token shard from a text file\n"
		   "       moe-train --help | --version\n\noptions (default in brackets):\n");
	for (size_t i = 0; i < NFLAGS; i++) {
		const struct flag *fl = &flags[i];
		const void *p = (const char *)&d + fl->off;
		char def[64] = "";
		switch (fl->kind) {
		case K_INT: snprintf(def, sizeof(def), " [%d]", *(const int *)p); break;
		case K_LONG: snprintf(def, sizeof(def), " [%ld]", *(const long *)p); break;
		case K_U64: snprintf(def, sizeof(def), " [%llu]", (unsigned long long)*(const uint64_t *)p); break;
		case K_REAL: snprintf(def, sizeof(def), " [%g]", *(const float *)p); break;
		case K_DBL: snprintf(def, sizeof(def), " [%g]", *(const double *)p); break;
		default: break;
		}
		if (strstr(fl->help, "default"))
			def[0] = 0; /* the help text says it better */
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "--%s%s%s", fl->name, fl->meta ? " " : "", fl->meta ? fl->meta : "");
		fprintf(f, "  %-22s %s%s\n", lhs, fl->help, def);
	}
	fprintf(f, "\nenvironment (set by moe-launch or the Slurm plugin; defaults give one process, one rank):\n"
		   "  MOE_EP_GROUP, MOE_EP_RANK, MOE_DP_RANK  rank layout: EP group, rank inside it, DP replica\n"
		   "  MOE_EXPERTS        routed experts of the plan (--experts must agree)\n"
		   "  MOE_ROUTE_GROUPS   groups a token may reach (default of --group-topk)\n"
		   "  MOE_DOMAIN         NVLink domain of this rank (routing groups with --groups 0)\n"
		   "  MOE_TRANSPORT, MOE_COMM_TIMEOUT  transport choice and timeout (doc/launcher.md)\n"
		   "  MOE_DEVICE_COMM    default of --device-comm\n"
		   "  CUDA_VISIBLE_DEVICES  the rank's GPUs (first = its own): picks the default --device\n"
		   "devices in this build: cpu%s\n"
		   "signals: SIGTERM or SIGUSR1 -> finish the step, checkpoint to --ckpt-dir, exit 0\n"
		   "exit: 0 done, 1 runtime failure, 2 bad input\n",
		tr_backend_have_cuda() ? ", cuda" : " (the CUDA backend is not built: configure --with-cuda)");
}

static int bad(const struct flag *fl, const char *val, const char *why)
{
	if (fl->kind == K_STR)
		fprintf(stderr, "moe-train: --%s: %s\n", fl->name, why);
	else
		fprintf(stderr, "moe-train: --%s '%s': %s, valid %g..%g\n", fl->name, val, why, fl->lo, fl->hi);
	return 2;
}

static int set(struct tr_opts *o, const struct flag *fl, const char *val)
{
	void *p = (char *)o + fl->off;
	char *end;
	errno = 0;
	switch (fl->kind) {
	case K_STR:
		if (!*val)
			return bad(fl, val, "empty value");
		*(const char **)p = val;
		break;
	case K_FLAG:
		*(int *)p = 1;
		break;
	case K_INT:
	case K_LONG:
	case K_U64: {
		if (*val == '-' && fl->kind == K_U64)
			return bad(fl, val, "not a whole number");
		unsigned long long u = 0;
		long long v = 0;
		if (fl->kind == K_U64)
			u = strtoull(val, &end, 10);
		else
			v = strtoll(val, &end, 10);
		if (end == val || *end || errno)
			return bad(fl, val, "not a whole number");
		double d = fl->kind == K_U64 ? (double)u : (double)v;
		if (d < fl->lo || d > fl->hi)
			return bad(fl, val, "out of range");
		if (fl->kind == K_INT)
			*(int *)p = (int)v;
		else if (fl->kind == K_LONG)
			*(long *)p = (long)v;
		else
			*(uint64_t *)p = u;
		break;
	}
	case K_REAL:
	case K_DBL: {
		double d = strtod(val, &end);
		if (end == val || *end || errno || !isfinite(d))
			return bad(fl, val, "not a number");
		if (d < fl->lo || d > fl->hi)
			return bad(fl, val, "out of range");
		if (fl->kind == K_REAL)
			*(float *)p = (float)d;
		else
			*(double *)p = d;
		break;
	}
	}
	if (fl->set_off)
		*(int *)((char *)o + fl->set_off) = 1;
	return 0;
}

int tr_opts_parse(struct tr_opts *o, int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			tr_opts_help(stdout);
			return 1;
		}
		if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
			printf("moe-train (moetopo) %s\n", PACKAGE_VERSION);
			return 1;
		}
		if (strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "moe-train: unexpected argument '%s' (subcommands: prepare; options start with --; see --help)\n", a);
			return 2;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t nl = eq ? (size_t)(eq - name) : strlen(name);
		const struct flag *fl = NULL;
		for (size_t k = 0; k < NFLAGS; k++)
			if (strlen(flags[k].name) == nl && !strncmp(flags[k].name, name, nl))
				fl = &flags[k];
		if (!fl) {
			fprintf(stderr, "moe-train: unknown option --%.*s (see moe-train --help)\n", (int)nl, name);
			return 2;
		}
		const char *val = NULL;
		if (fl->kind == K_FLAG) {
			if (eq) {
				fprintf(stderr, "moe-train: --%s takes no value\n", fl->name);
				return 2;
			}
		} else if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			fprintf(stderr, "moe-train: --%s needs a value (%s)\n", fl->name, fl->meta);
			return 2;
		}
		if (set(o, fl, val ? val : "") != 0)
			return 2;
	}
	if (!o->data) {
		fprintf(stderr, "moe-train: --data FILES is required (token shards; make one with `moe-train prepare IN.txt OUT.bin`)\n");
		return 2;
	}
	if (o->transport && !tr_comm_kind_known(o->transport)) {
		fprintf(stderr, "moe-train: --transport '%s': valid " TR_COMM_KINDS "\n", o->transport);
		return 2;
	}
	if (o->device && strcmp(o->device, "cpu") && strcmp(o->device, "cuda")) {
		fprintf(stderr, "moe-train: --device '%s': valid cpu, cuda\n", o->device);
		return 2;
	}
	const char *dc_from = "--device-comm";
	if (!o->device_comm && getenv("MOE_DEVICE_COMM") && *getenv("MOE_DEVICE_COMM"))
		o->device_comm = getenv("MOE_DEVICE_COMM"), dc_from = "MOE_DEVICE_COMM";
	if (o->device_comm && !tr_devcomm_kind_known(o->device_comm)) {
		fprintf(stderr, "moe-train: %s '%s': valid " TR_DEVCOMM_KINDS "\n", dc_from, o->device_comm);
		return 2;
	}
	if (o->device_comm && tr_devcomm_unbuilt(o->device_comm)) {
		fprintf(stderr, "moe-train: %s %s: %s; valid here: staged\n", dc_from, o->device_comm,
			tr_devcomm_unbuilt(o->device_comm));
		return 2;
	}
	if (o->dtype && strcmp(o->dtype, "fp32") && strcmp(o->dtype, "bf16")) {
		fprintf(stderr, "moe-train: --dtype '%s': valid fp32, bf16\n", o->dtype);
		return 2;
	}
	if (o->cuda_graph && !tr_backend_have_cuda()) {
		fprintf(stderr, "moe-train: --cuda-graph: the CUDA backend is not built (configure --with-cuda); valid only with "
			"--device cuda in a CUDA build\n");
		return 2;
	}
	if (o->cuda_graph && o->device && strcmp(o->device, "cuda")) {
		fprintf(stderr, "moe-train: --cuda-graph needs --device cuda (got --device %s): a CUDA graph replays GPU work\n",
			o->device);
		return 2;
	}
	if (o->resume && !o->ckpt_dir) {
		fprintf(stderr, "moe-train: --resume needs --ckpt-dir DIR\n");
		return 2;
	}
	if (o->min_lr > o->lr) {
		fprintf(stderr, "moe-train: --min-lr %g is above --lr %g; valid 0..%g\n", o->min_lr, o->lr, o->lr);
		return 2;
	}
	if (o->set_batch && o->set_global_batch) {
		fprintf(stderr, "moe-train: give --batch (per rank) or --global-batch (all ranks), not both\n");
		return 2;
	}
	if (!o->set_lr_steps)
		o->lr_steps = o->steps;
	return 0;
}

const char *tr_opts_dtype(const struct tr_opts *o)
{
	return o->dtype ? o->dtype : "fp32";
}

int tr_opts_resolve_batch(struct tr_opts *o, int world)
{
	if (o->set_global_batch) {
		if (o->global_batch % world) {
			fprintf(stderr, "moe-train: --global-batch %ld does not divide over %d ranks; valid: multiples of %d\n",
				o->global_batch, world, world);
			return 2;
		}
		o->batch = o->global_batch / world;
	} else {
		o->global_batch = o->batch * world;
	}
	return 0;
}

char *tr_opts_config_text(const struct tr_opts *o, int world, int rank, int ep_size, int ep_rank,
			  uint64_t data_tokens)
{
	const struct tr_config *c = &o->cfg;
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	if (!f)
		return NULL;
	/* floats printed with %.9g / %.17g round-trip exactly, so equal text means equal values */
	fprintf(f, "vocab=%d\nseq_len=%d\nd_model=%d\nn_heads=%d\nn_layers=%d\nn_dense_layers=%d\nd_ff=%d\n"
		   "d_expert=%d\nn_experts=%d\ntop_k=%d\nn_groups=%d\ntopk_groups=%d\nroute_scale=%.9g\n"
		   "bias_gamma=%.9g\nrope_theta=%.9g\ninit_std=%.9g\n",
		c->vocab, c->seq_len, c->d_model, c->n_heads, c->n_layers, c->n_dense_layers, c->d_ff, c->d_expert,
		c->n_experts, c->top_k, c->n_groups, c->topk_groups, c->route_scale, c->bias_gamma, c->rope_theta,
		c->init_std);
	fprintf(f, "seed=%llu\ndata_tokens=%llu\nglobal_batch=%ld\nlr=%.17g\nmin_lr=%.17g\nwarmup=%ld\nlr_steps=%ld\n"
		   "weight_decay=%.17g\nbeta1=%.17g\nbeta2=%.17g\neps=%.17g\nclip=%.17g\n",
		(unsigned long long)o->seed, (unsigned long long)data_tokens, o->global_batch, o->lr, o->min_lr,
		o->warmup, o->lr_steps, o->wd, o->beta1, o->beta2, o->eps, o->clip);
	fprintf(f, "world=%d\nrank=%d\nep_size=%d\nep_rank=%d\n", world, rank, ep_size, ep_rank);
	fclose(f);
	return s;
}
