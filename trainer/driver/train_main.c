/* train_main.c - `moe-train`: the training loop around the model.
 *
 * Per step: read this rank's slice of the global batch, forward + backward (model), reduce gradients,
 * clip by the global norm, AdamW on both parameter segments, update the router bias, then one small
 * all-reduce that carries the loss, the all-to-all bytes and the stop flag, so every rank reports the
 * same global figures and all ranks stop (and checkpoint) at the same step after SIGTERM/SIGUSR1.
 * Runs as one process, or as every rank under moe-launch (rank layout from the MOE_* environment).
 */
#include "backend.h"
#include "comm.h"
#include "data.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "train_graph.h"
#include "train_opts.h"
#include "train_run.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* integer from the environment; def when unset; -2 (and a message) when malformed */
static int env_int(const char *name, int def, int lo)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return def;
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (end == v || *end || errno || x < lo || x > 1 << 24) {
		fprintf(stderr, "moe-train: %s='%s' is not a whole number >= %d (set by moe-launch or the plugin)\n", name, v,
			lo);
		return -2;
	}
	return (int)x;
}

/* CUDA_VISIBLE_DEVICES (from the launch plan) names at least one GPU */
static int gpu_named(void)
{
	const char *v = getenv("CUDA_VISIBLE_DEVICES");
	return v && *v && strcmp(v, "-1") && strncmp(v, "NoDevFiles", 10) && strcmp(v, "none");
}

/* --device, or by default cuda when the plan gave this rank a GPU and the CUDA backend is built */
static const char *device_of(const struct tr_opts *o)
{
	return o->device ? o->device : gpu_named() && tr_backend_have_cuda() ? "cuda" : "cpu";
}

#ifdef TR_CUDA_TRAINER
/* This moe-train carries no CUDA, so that CPU runs neither need nor load the CUDA libraries (about 1 GB,
 * seconds per start under a sanitizer).  A run on the GPU continues, before it has touched anything, in
 * moe-train-cuda: the same program with the CUDA backend, next to this one in a build tree, else where
 * `make install` put it.  By default, on a machine without an NVIDIA driver, the run stays here on the
 * CPU (the line moe-train-cuda would print after loading CUDA).  Returns only to go on here (0) or on
 * failure (exit code). */
static int cuda_handoff(struct tr_opts *o, char **argv)
{
	if (strcmp(device_of(o), "cuda"))
		return 0;
	if (!o->device && !o->cuda_graph) {
		void *drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
		if (!drv) {
			fprintf(stderr, "moe-train: CUDA_VISIBLE_DEVICES names a GPU, but this machine has no NVIDIA driver "
				"(libcuda.so.1); running on the CPU (--device chooses)\n");
			o->device = "cpu";
			return 0;
		}
		dlclose(drv);
	}
	char here[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", here, sizeof(here) - sizeof("moe-train-cuda"));
	char *slash = NULL;
	if (n > 0) {
		here[n] = '\0';
		slash = strrchr(here, '/');
	}
	if (slash) {
		strcpy(slash + 1, "moe-train-cuda");
		if (access(here, X_OK) == 0)
			execv(here, argv);
	}
	execv(TR_CUDA_TRAINER, argv);
	fprintf(stderr, "moe-train: --device cuda runs in moe-train-cuda, which is in neither %s nor %s: %s; install it, "
		"or use --device cpu\n", slash ? here : "this program's folder", TR_CUDA_TRAINER, strerror(errno));
	return 1;
}
#endif

/* --device / --dtype: the backend of device_of(), falling back to the CPU with one line when a GPU the
 * plan named by default cannot be used */
static int setup_backend(struct tr_run *r)
{
	char err[512];
	const char *dev = device_of(&r->o);
	enum tr_dtype dt = r->o.dtype && !strcmp(r->o.dtype, "bf16") ? TR_DTYPE_BF16 : TR_DTYPE_FP32;
	if (r->o.cuda_graph && strcmp(dev, "cuda")) {
		fprintf(stderr, "moe-train: rank %d: --cuda-graph needs the GPU, but CUDA_VISIBLE_DEVICES names none, so this "
			"rank would run on the CPU; valid with --device cuda on a rank with a GPU\n", r->rank);
		return 2;
	}
	const struct tr_backend *be = tr_backend_get(dev, err, sizeof(err));
	if (!be) {
		fprintf(stderr, "moe-train: %s\n", err);
		return 2;
	}
	if (be->init(dt, err, sizeof(err)) != 0) {
		if (r->o.device || be == &tr_backend_cpu || r->o.cuda_graph) {
			fprintf(stderr, "moe-train: rank %d: %s%s\n", r->rank, err,
				be == &tr_backend_cpu ? "" : r->o.cuda_graph ? " (--cuda-graph needs a GPU)" : "; use --device cpu");
			return 2;
		}
		fprintf(stderr, "moe-train: rank %d: CUDA_VISIBLE_DEVICES names a GPU, but %s; running on the CPU (--device chooses)\n",
			r->rank, err);
		be = &tr_backend_cpu;
		if (be->init(dt, err, sizeof(err)) != 0) {
			fprintf(stderr, "moe-train: rank %d: %s\n", r->rank, err);
			return 2;
		}
	}
	r->be = be;
	return 0;
}

static void skew_router(struct tr_run *r)
{
	size_t nb;
	tr_real *b = tr_model_router_bias(r->m, &nb);
	int E = r->o.cfg.n_experts;
	for (size_t i = 0; i < nb; i++) {
		int e = (int)(i % (size_t)E);
		b[i] = (tr_real)(E > 1 ? r->o.router_skew * (E - 1 - e) / (E - 1) : 0);
	}
}

/* All ranks learn whether any failed a local check, so none waits in a collective for a rank that
 * has given up (that would end only at the communication timeout).  The failing rank said why. */
static int agree(struct tr_run *r, int rc)
{
	double bad = rc != 0;
	if (tr_allreduce_f64(r->world, &bad, 1) != 0) {
		fprintf(stderr, "moe-train: rank %d: %s\n", r->rank, tr_comm_error(r->world));
		return 1;
	}
	return rc ? rc : bad > 0 ? 2 : 0;
}

static int setup_layout(struct tr_run *r, int *ep_size, int *ep_rank, struct tr_par *par)
{
	int g = env_int("MOE_EP_GROUP", 0, 0), er = env_int("MOE_EP_RANK", r->rank, 0), dr = env_int("MOE_DP_RANK", 0, 0);
	int es = env_int("MOE_EP_SIZE", 0, 0), ex = env_int("MOE_EXPERTS", 0, 0), rg = env_int("MOE_ROUTE_GROUPS", -1, 0);
	int rc = 0;
	if (g < 0 || er < 0 || dr < 0 || es < 0 || ex < 0 || rg < -1)
		rc = 2;
	/* MOE_EXPERTS=0 and MOE_ROUTE_GROUPS=0 mean "unset" and "unlimited" in the launch contract */
	if (rc == 0 && ex > 0) {
		if (r->o.set_experts && r->o.cfg.n_experts != ex) {
			fprintf(stderr, "moe-train: --experts %d disagrees with the launch plan's MOE_EXPERTS=%d; drop --experts or make them equal\n",
				r->o.cfg.n_experts, ex);
			rc = 2;
		}
		r->o.cfg.n_experts = ex;
	}
	if (rg >= 0 && !r->o.set_group_topk)
		r->o.cfg.topk_groups = rg;
	if ((rc = agree(r, rc)) != 0)
		return rc;
	if (tr_comm_split(r->world, g, er, &r->ep) != 0 || tr_comm_split(r->world, er, dr, &r->dp) != 0) {
		fprintf(stderr, "moe-train: rank %d: cannot form the EP/DP groups: %s\n", r->rank, tr_comm_error(r->world));
		return 1;
	}
	*ep_size = tr_comm_size(r->ep);
	if (es > 0 && es != *ep_size) {
		fprintf(stderr, "moe-train: rank %d: MOE_EP_SIZE=%d but %d ranks share MOE_EP_GROUP=%d (inconsistent launch environment)\n",
			r->rank, es, *ep_size, g);
		rc = 2;
	}
	if ((rc = agree(r, rc)) != 0)
		return rc;
	*ep_rank = tr_comm_rank(r->ep);
	par->world = r->world;
	par->ep = r->ep;
	par->dp = r->dp;
	par->domain = tr_domain_id(getenv("MOE_DOMAIN"));
	return 0;
}

static void banner(struct tr_run *r, int ep_size)
{
	const struct tr_config *c = tr_model_config(r->m);
	int first, count;
	size_t per;
	tr_model_local_experts(r->m, &first, &count, &per);
	double active = (double)r->n[0] + (double)c->top_k * (double)per;
	printf("moe-train: world %d (ep %d x dp %d, transport %s), %d OpenMP threads, a2a %s%s\n", r->nranks, ep_size,
	       r->nranks / ep_size, tr_comm_kind(r->world),
#ifdef _OPENMP
	       omp_get_max_threads()
#else
	       1
#endif
	       , tr_comm_a2a_mode(r->ep), tr_opts_a2a_sync(&r->o) ? ", sync timing" : "");
	if (strcmp(tr_model_device_comm(r->m), "staged"))
		printf("moe-train: device comm %s (no host staging of the expert rows)\n", tr_model_device_comm(r->m));
	printf("moe-train: model d_model %d, %d layers (%d dense), %d heads, %d experts top-%d, params %.3fM total, %.3fM active per token\n",
	       c->d_model, c->n_layers, c->n_dense_layers, c->n_heads, c->n_experts, c->top_k,
	       (double)tr_model_nparams_global(r->m) / 1e6, active / 1e6);
	printf("moe-train: device %s (%s), dtype %s%s, %.4g GFLOP per token", r->be->name, r->be->device_name(),
	       tr_opts_dtype(&r->o), r->og ? ", CUDA graph" : "", r->flops_per_token / 1e9);
	if (r->peak_tflops > 0)
		printf(", MFU against %.1f TFLOP/s per rank (%s)\n", r->peak_tflops, r->o.mfu_peak > 0 ? "--mfu-peak" : "bf16 GEMM measured now");
	else
		printf(", MFU not reported (no peak: give --mfu-peak)\n");
	printf("moe-train: data %llu tokens (%llu sequences of %d), global batch %ld x %d tokens, %ld per rank\n",
	       (unsigned long long)r->data.ntok, (unsigned long long)r->data.nseq, c->seq_len, r->o.global_batch,
	       c->seq_len, r->o.batch);
	fflush(stdout);
}

static int cmd_prepare(int argc, char **argv)
{
	if (argc == 3 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
		printf("usage: moe-train prepare IN.txt OUT.bin\n"
		       "  writes the bytes of IN.txt as a token shard (vocab 256; format in doc/trainer.md)\n");
		return 0;
	}
	if (argc != 4) {
		fprintf(stderr, "moe-train prepare: needs IN.txt OUT.bin (got %d arguments)\n", argc - 2);
		return 2;
	}
	char err[8192];
	if (tr_data_prepare(argv[2], argv[3], err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train prepare: %s\n", err);
		return 2;
	}
	struct stat st;
	if (stat(argv[3], &st) == 0)
		printf("wrote %lld tokens to %s\n", (long long)(st.st_size - TR_SHARD_HEADER) / 2, argv[3]);
	return 0;
}

/* Checks that each rank makes on its own; the caller makes the ranks agree before going on. */
static int local_setup(struct tr_run *r)
{
	struct tr_opts *o = &r->o;
	char err[8192];
	int rc;
	if ((rc = tr_opts_resolve_batch(o, r->nranks)) != 0)
		return rc;
	if (tr_data_open(&r->data, o->data, o->cfg.seq_len, o->seed, err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train: %s\n", err);
		return 2;
	}
	if ((int)r->data.vocab > o->cfg.vocab) {
		fprintf(stderr, "moe-train: --data has vocab %u, the model's is %d\n", r->data.vocab, o->cfg.vocab);
		return 2;
	}
	if (tr_config_check(&o->cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train: %s\n", err);
		return 2;
	}
	if (o->ckpt_dir && mkdir(o->ckpt_dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "moe-train: --ckpt-dir %s: %s\n", o->ckpt_dir, strerror(errno));
		return 2;
	}
	if (o->ckpt_dir)
		tr_run_remove_stale_temps(o->ckpt_dir, r->rank);
	return 0;
}

/* Everything before the first step: rank layout, backend, model, optimizer state, resume, metrics
 * file (r->metrics, closed by the caller whatever happens). */
static int prepare(struct tr_run *r, int *ep_size_out)
{
	struct tr_opts *o = &r->o;
	char err[8192];
	struct tr_par par;
	int ep_size = 1, ep_rank = 0, rc;

	if ((rc = setup_layout(r, &ep_size, &ep_rank, &par)) != 0)
		return rc;
	if ((rc = agree(r, local_setup(r))) != 0)
		return rc;
	if (o->cuda_graph && ep_size > 1) {
		if (r->rank == 0)
			fprintf(stderr, "moe-train: --cuda-graph needs EP size 1, this run has EP size %d: the expert all-to-all "
				"needs the per-expert counts on the host; run without --cuda-graph or with EP size 1\n", ep_size);
		return 2;
	}
	if ((rc = agree(r, setup_backend(r))) != 0)
		return rc;
	par.be = r->be;
	if (tr_model_create(&o->cfg, &par, o->seed, &r->m, err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train: %s\n", err);
		rc = 2;
	}
	if ((rc = agree(r, rc)) != 0)
		return rc;
	tr_model_set_a2a_sync(r->m, tr_opts_a2a_sync(o));
	if (tr_model_set_device_comm(r->m, o->device_comm, err, sizeof(err)) != 0) {
		char own[32]; /* a line for the whole group once; a rank's own failure from that rank */
		snprintf(own, sizeof(own), "rank %d: ", r->rank);
		if (r->rank == 0 || strstr(err, own))
			fprintf(stderr, "moe-train: %s\n", err);
		return 2;
	}
	for (int s = 0; s < 2; s++) {
		r->n[s] = tr_model_nparams(r->m, (enum tr_seg)s);
		r->mom[s] = r->be->alloc((r->n[s] + 1) * sizeof(float));
		r->vel[s] = r->be->alloc((r->n[s] + 1) * sizeof(float));
	}
	if (!r->mom[0] || !r->vel[0] || !r->mom[1] || !r->vel[1] || r->be->sync(err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train: out of %s memory for the optimizer state\n", r->be->name);
		rc = 1;
	}
	if (rc == 0 && o->cuda_graph &&
	    (tr_model_set_graph(r->m, 2, err, sizeof(err)) != 0 || tr_opt_graph_new(r, &r->og, err, sizeof(err)) != 0)) {
		fprintf(stderr, "moe-train: rank %d: %s\n", r->rank, err);
		rc = 1;
	}
	if (o->router_skew > 0)
		skew_router(r);
	r->flops_per_token = tr_model_flops_per_token(r->m, o->cfg.seq_len);
	r->peak_tflops = o->mfu_peak > 0 ? o->mfu_peak : r->be->measure_peak_tflops();
	r->config = tr_opts_config_text(o, r->nranks, r->rank, ep_size, ep_rank, r->data.ntok);
	if (!r->config)
		rc = 1;
	if ((rc = agree(r, rc)) != 0)
		return rc;
	if (o->resume) {
		rc = tr_run_load_ckpt(r, ep_size, ep_rank);
		if (rc == 1 && r->rank == 0)
			fprintf(stderr, "moe-train: --resume: no checkpoint in %s, starting at step 0\n", o->ckpt_dir);
		else if (rc == 0 && r->rank == 0)
			printf("moe-train: resumed from %s at step %ld\n", o->ckpt_dir, r->step);
		if (rc == 2 || rc == -1)
			return rc == 2 ? 2 : 1;
		rc = 0;
	}
	if (o->metrics && r->rank == 0 && !(r->metrics = fopen(o->metrics, r->step > 0 ? "a" : "w"))) {
		fprintf(stderr, "moe-train: --metrics %s: %s\n", o->metrics, strerror(errno));
		rc = 2;
	}
	if ((rc = agree(r, rc)) != 0)
		return rc;
	*ep_size_out = ep_size;
	return 0;
}

/* The steps from r->step to --steps (or a signal), then the summary line. */
static int run_steps(struct tr_run *r)
{
	struct tr_opts *o = &r->o;
	char err[8192];
	const int B = (int)o->batch, T = o->cfg.seq_len;
	uint16_t *rows = malloc((size_t)B * (T + 1) * sizeof(*rows));
	if (!rows) {
		fprintf(stderr, "moe-train: out of memory for the batch\n");
		return 1;
	}
	struct tr_sched sc = {o->lr, o->min_lr, o->warmup, o->lr_steps};
	struct tr_adamw aw = {(float)o->beta1, (float)o->beta2, (float)o->eps, (float)o->wd};
	uint64_t a2a_prev = tr_comm_alltoall_bytes(r->ep);
	struct tr_a2a_stats xprev, xnow;
	tr_comm_a2a_stats(r->ep, &xprev);
	struct tr_moe_stats mprev, mnow;
	tr_model_stats(r->m, &mprev);
	long first_step = r->step;
	double first_loss = NAN, last_loss = NAN, first_load = NAN, last_load = NAN, tsum = 0, tok_sum = 0;
	uint64_t a2a_total = 0;
	int stopped = 0, rc = 0;
	while (r->step < o->steps) {
		double t0 = now_s();
		float loss;
		tr_data_batch(&r->data, r->pos, (uint64_t)r->rank * (uint64_t)B, B, rows);
		double norm = 0;
		if (tr_model_step(r->m, rows, B, T, &loss) != 0 || tr_model_reduce_grads(r->m) != 0 ||
		    (!r->og && tr_model_grad_norm(r->m, &norm) != 0)) {
			fprintf(stderr, "moe-train: rank %d, step %ld: %s\n", r->rank, r->step + 1, tr_model_error(r->m));
			rc = 1;
			break;
		}
		double lr = tr_sched_lr(&sc, r->step);
		int opt_bad = 0;
		if (r->og) { /* norm, clipping and AdamW as one graph (train_graph.h) */
			opt_bad = tr_opt_graph_step(r->og, &aw, lr, r->step + 1, &norm, err, sizeof(err)) != 0;
		} else {
			float scale = tr_clip_scale(norm, o->clip);
			for (int s = 0; s < 2; s++)
				r->be->adamw(&aw, lr, r->step + 1, scale, tr_model_params(r->m, (enum tr_seg)s),
					     tr_model_grads(r->m, (enum tr_seg)s), r->mom[s], r->vel[s], r->n[s]);
		}
		if (opt_bad || r->be->sync(err, sizeof(err)) != 0) {
			fprintf(stderr, "moe-train: rank %d, step %ld: AdamW on %s: %s\n", r->rank, r->step + 1, r->be->name, err);
			rc = 1;
			break;
		}
		if (tr_model_update_bias(r->m) != 0) {
			fprintf(stderr, "moe-train: rank %d, step %ld: %s\n", r->rank, r->step + 1, tr_model_error(r->m));
			rc = 1;
			break;
		}
		uint64_t a2a_now = tr_comm_alltoall_bytes(r->ep);
		tr_comm_a2a_stats(r->ep, &xnow);
		tr_model_stats(r->m, &mnow);
		/* cross-node, on-rail and deduplicated bytes of this step, seconds in the all-to-alls and bytes
		 * inside / across NVLink domains, seconds waiting at the sync-timing barriers, summed over ranks */
		double red[10] = {loss, (double)(a2a_now - a2a_prev), stop_signal ? 1.0 : 0.0,
				 (double)(xnow.cross_bytes - xprev.cross_bytes), (double)(xnow.rail_bytes - xprev.rail_bytes),
				 (double)(xnow.dedup_bytes - xprev.dedup_bytes), mnow.a2a_seconds - mprev.a2a_seconds,
				 (double)(mnow.a2a_domain_bytes - mprev.a2a_domain_bytes),
				 (double)(mnow.a2a_xdomain_bytes - mprev.a2a_xdomain_bytes),
				 mnow.a2a_wait_seconds - mprev.a2a_wait_seconds};
		a2a_prev = a2a_now;
		xprev = xnow;
		mprev = mnow;
		if (tr_allreduce_f64(r->world, red, 10) != 0) {
			fprintf(stderr, "moe-train: rank %d, step %ld: %s\n", r->rank, r->step + 1, tr_comm_error(r->world));
			rc = 1;
			break;
		}
		r->step++;
		r->pos += (uint64_t)o->global_batch;
		double dt = now_s() - t0;
		struct tr_moe_stats st;
		tr_model_stats(r->m, &st);
		struct tr_step_report rep = {
			.step = r->step, .steps = o->steps, .loss = red[0] / r->nranks, .lr = lr, .grad_norm = norm,
			.ms = dt * 1e3, .tokens = (uint64_t)o->global_batch * (uint64_t)T,
			.max_load_over_mean = st.n_moe_layers > 0 ? st.max_over_mean : 1.0, .a2a_bytes = (uint64_t)red[1],
			.a2a_cross_bytes = (uint64_t)red[3], .a2a_rail_fraction = red[3] > 0 ? red[4] / red[3] : NAN,
			.a2a_dedup_bytes = (uint64_t)red[5], .a2a_ms = red[6] * 1e3 / r->nranks,
			.a2a_domain_bytes = (uint64_t)red[7], .a2a_xdomain_bytes = (uint64_t)red[8],
			.a2a_wait_ms = tr_opts_a2a_sync(o) ? red[9] * 1e3 / r->nranks : NAN,
			.device = r->be->name, .dtype = tr_opts_dtype(o), .flops_per_token = r->flops_per_token};
		rep.tokens_per_s = (double)rep.tokens / dt;
		rep.mfu = tr_metrics_mfu(rep.tokens_per_s, r->flops_per_token, r->peak_tflops, r->nranks);
		if (r->step == first_step + 1) {
			first_loss = rep.loss;
			first_load = rep.max_load_over_mean;
		}
		last_loss = rep.loss;
		last_load = rep.max_load_over_mean;
		tsum += dt;
		tok_sum += (double)rep.tokens;
		a2a_total += rep.a2a_bytes;
		if (r->rank == 0) {
			if (!o->quiet && (r->step % o->log_every == 0 || r->step == o->steps))
				tr_metrics_progress(stdout, &rep);
			if (r->metrics)
				tr_metrics_json(r->metrics, &rep);
		}
		if (!isfinite(rep.loss)) {
			if (r->rank == 0)
				fprintf(stderr, "moe-train: loss is %g at step %ld; lower --lr or raise --warmup\n", rep.loss, r->step);
			rc = 1;
			break;
		}
		stopped = red[2] > 0;
		int periodic = o->ckpt_every > 0 && r->step % o->ckpt_every == 0;
		if (o->ckpt_dir && (stopped || periodic || r->step == o->steps)) {
			int bad = tr_run_save_ckpt(r, err, sizeof(err)) != 0;
			if (bad)
				fprintf(stderr, "moe-train: rank %d: checkpoint: %s\n", r->rank, err);
			double b = bad;
			if (tr_allreduce_f64(r->world, &b, 1) != 0 || b > 0) {
				rc = 1;
				break;
			}
			if (r->rank == 0 && (stopped || !o->quiet))
				printf("moe-train: checkpoint of step %ld written to %s\n", r->step, o->ckpt_dir);
		}
		if (stopped) {
			if (r->rank == 0)
				printf("moe-train: stopping after step %ld on a signal\n", r->step);
			if (r->rank == 0 && !o->ckpt_dir)
				fprintf(stderr, "moe-train: no --ckpt-dir, so nothing was saved; give one to continue later with --resume\n");
			break;
		}
	}
	if (rc == 0 && r->rank == 0) {
		long done = r->step - first_step;
		if (done > 0) {
			double mfu = tr_metrics_mfu(tok_sum / tsum, r->flops_per_token, r->peak_tflops, r->nranks);
			char mfu_txt[64] = "";
			if (isfinite(mfu))
				snprintf(mfu_txt, sizeof(mfu_txt), ", MFU %.3f", mfu);
			printf("done: steps %ld..%ld of %ld, loss %.4f -> %.4f, %.1f ms/step, %.0f tokens/s, max/mean load %.3f -> %.3f, a2a %llu bytes%s%s\n",
			       first_step + 1, r->step, o->steps, first_loss, last_loss, tsum * 1e3 / done, tok_sum / tsum,
			       first_load, last_load, (unsigned long long)a2a_total, mfu_txt, stopped ? " (stopped by a signal)" : "");
		} else {
			printf("done: already at step %ld of %ld, nothing to do\n", r->step, o->steps);
		}
	}
	free(rows);
	return rc;
}

static int train(struct tr_run *r)
{
	int ep_size = 1;
	int rc = prepare(r, &ep_size);
	if (rc == 0) {
		if (r->rank == 0)
			banner(r, ep_size);
		rc = run_steps(r);
	}
	if (r->metrics && fclose(r->metrics) != 0 && rc == 0) {
		fprintf(stderr, "moe-train: --metrics %s: %s\n", r->o.metrics, strerror(errno));
		rc = 1;
	}
	r->metrics = NULL;
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "prepare"))
		return cmd_prepare(argc, argv);
	struct tr_run r;
	memset(&r, 0, sizeof(r));
	tr_opts_defaults(&r.o);
	int rc = tr_opts_parse(&r.o, argc - 1, argv + 1);
	if (rc == 1)
		return 0;
	if (rc)
		return rc;
#ifdef TR_CUDA_TRAINER
	if ((rc = cuda_handoff(&r.o, argv)) != 0)
		return rc;
#endif
#ifdef _OPENMP
	if (r.o.threads > 0)
		omp_set_num_threads((int)r.o.threads);
#endif
	/* a signal only sets a flag: the step finishes, then every rank checkpoints the same step */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	char err[1024];
	if (tr_comm_init(r.o.transport, &r.world, err, sizeof(err)) != 0) {
		fprintf(stderr, "moe-train: %s\n", err);
		return 1;
	}
	r.rank = tr_comm_rank(r.world);
	r.nranks = tr_comm_size(r.world);
	rc = train(&r);
	tr_opt_graph_free(r.og);
	for (int s = 0; s < 2 && r.be; s++) {
		r.be->free(r.mom[s]);
		r.be->free(r.vel[s]);
	}
	if (r.m)
		tr_model_free(r.m);
	tr_data_close(&r.data);
	free(r.config);
	if (r.dp)
		tr_comm_free(r.dp);
	if (r.ep)
		tr_comm_free(r.ep);
	tr_comm_free(r.world);
	return rc;
}
