/* test_graph_path.c - the model's graph mode (model.h tr_model_set_graph; what moe-train --cuda-graph
 * runs: routing counts, loss and loads kept in backend memory, the MoE layer of moe_graph.c, the FFNs
 * through the device-count / plain linear ops), 3 training steps on the same weights and batches:
 *   CPU backend: mode 1 against the default path: the same loss, the same bits in every gradient and the
 *     same expert loads (on the CPU the graph-mode ops are the default ops; top-3 routing, so the order
 *     of the combine's sums is checked too), for a MoE and a dense-only model; capture (mode 2) refused
 *     with one line;
 *   CUDA backend (skipped "no GPU" without one): the captured and replayed step (mode 2) against the
 *     same step run eagerly (mode 1): the same bits (the same kernels in the same order), and mode 2
 *     against the default path: loss within 1e-5 relative, gradients within 1e-4 by norm (another
 *     expert GEMM kernel, as test_cuda_step.c bounds GPU against CPU).
 * moe-train --cuda-graph end to end on a GPU: train_cuda.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "comm.h"
#include "model.h"
#include "tap.h"
#include "gpu_test.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static struct tr_comm *w;

static struct tr_model *make(const struct tr_config *c, const struct tr_backend *be)
{
	char err[256];
	struct tr_par p = { w, w, w, 0, be };
	struct tr_model *m = NULL;
	if (tr_model_create(c, &p, 5, &m, err, sizeof(err)))
		printf("# %s\n", err);
	return m;
}

/* 3 steps of model a in mode ma and b in mode mb; exact: bits must agree, else the bounds above */
static void run(const struct tr_config *c, const struct tr_backend *be, int ma, int mb, int exact, const char *what)
{
	char err[256] = "";
	struct tr_model *a = make(c, be), *b = make(c, be);
	if (!a || !b) {
		tap_ok(0, "%s: models created", what);
		tr_model_free(a), tr_model_free(b);
		return;
	}
	int rc = tr_model_set_graph(a, ma, err, sizeof(err)) || tr_model_set_graph(b, mb, err, sizeof(err));
	tap_ok(rc == 0, "%s: graph modes %d and %d on %s%s%s", what, ma, mb, be->name, rc ? ": " : "", err);
	int B = 3, T = 32, ok = !rc, same_load = 1;
	double lerr = 0, gerr = 0;
	uint16_t tok[3 * 33];
	size_t n[2] = { tr_model_nparams(a, TR_SEG_REPLICATED), tr_model_nparams(a, TR_SEG_EXPERT) };
	float *ga = malloc(sizeof(float) * (n[0] + n[1] + 1)), *gb = malloc(sizeof(float) * (n[0] + n[1] + 1));
	for (int step = 0; step < 3 && ok; step++) {
		for (int i = 0; i < B * (T + 1); i++)
			tok[i] = (uint16_t)((i * 131 + i / 7 + step * 17) % 256);
		float la, lb;
		ok = tr_model_step(a, tok, B, T, &la) == 0 && tr_model_step(b, tok, B, T, &lb) == 0 &&
		     tr_model_update_bias(a) == 0 && tr_model_update_bias(b) == 0;
		if (!ok)
			break;
		double le = exact ? memcmp(&la, &lb, sizeof(la)) != 0 : fabs((double)la - lb) / fabs((double)la);
		lerr = le > lerr ? le : lerr;
		for (int s = 0; s < 2; s++) {
			be->download(ga + (s ? n[0] : 0), tr_model_grads(a, (enum tr_seg)s), sizeof(float) * n[s]);
			be->download(gb + (s ? n[0] : 0), tr_model_grads(b, (enum tr_seg)s), sizeof(float) * n[s]);
			double ge = exact ? memcmp(ga + (s ? n[0] : 0), gb + (s ? n[0] : 0), sizeof(float) * n[s]) != 0
					  : cmp_rel_norm(gb + (s ? n[0] : 0), ga + (s ? n[0] : 0), n[s]);
			gerr = ge > gerr ? ge : gerr;
		}
		if (!be->device_mem) /* a small update, so the next step routes otherwise; batches differ anyway */
			for (int s = 0; s < 2; s++) {
				tr_real *pa = tr_model_params(a, (enum tr_seg)s), *pb = tr_model_params(b, (enum tr_seg)s);
				for (size_t i = 0; i < n[s]; i++)
					pa[i] -= 0.05f * ga[(s ? n[0] : 0) + i], pb[i] = pa[i];
			}
		struct tr_moe_stats sa, sb;
		tr_model_stats(a, &sa);
		tr_model_stats(b, &sb);
		size_t nl = (size_t)sa.n_moe_layers * sa.n_experts;
		same_load &= nl == 0 || !memcmp(sa.load, sb.load, sizeof(double) * nl);
	}
	tap_ok(ok, "%s: 3 steps in each mode%s%s", what, ok ? "" : ": ", ok ? "" : tr_model_error(b));
	if (exact) {
		tap_ok(ok && lerr == 0, "%s: the same loss, bit for bit, at every step", what);
		tap_ok(ok && gerr == 0, "%s: the same bits in every gradient of both segments", what);
	} else {
		tap_ok(ok && lerr <= 1e-5, "%s: loss within 1e-5 relative at every step (worst %.2e)", what, lerr);
		tap_ok(ok && gerr <= 1e-4, "%s: gradients within 1e-4 by norm (worst %.2e)", what, gerr);
	}
	tap_ok(ok && same_load, "%s: the same expert loads", what);
	free(ga), free(gb);
	tr_model_free(a);
	tr_model_free(b);
}

int main(void)
{
	char err[256];
#ifdef _OPENMP
	omp_set_num_threads(1); /* the sums are fixed-order anyway; spare the shared CI cores */
#endif
	if (tr_comm_init("self", &w, err, sizeof(err))) {
		printf("Bail out! self transport: %s\n", err);
		return 1;
	}
	struct tr_config c;
	tr_config_default(&c);
	c.seq_len = 32, c.d_model = 32, c.n_heads = 4, c.n_layers = 3, c.n_dense_layers = 1, c.d_ff = 64;
	c.d_expert = 24, c.n_experts = 8, c.top_k = 3, c.n_groups = 4, c.topk_groups = 2, c.route_scale = 2.5f;
	struct tr_config dense = c;
	dense.n_dense_layers = dense.n_layers;
	const struct tr_backend *cpu = &tr_backend_cpu;
	run(&c, cpu, 0, 1, 1, "CPU, MoE 8 experts top-3, default vs graph path");
	run(&dense, cpu, 0, 1, 1, "CPU, dense only, default vs graph path");
	struct tr_model *m = make(&c, cpu);
	int rc = m ? tr_model_set_graph(m, 2, err, sizeof(err)) : 0;
	tap_ok(m && rc == -1 && strstr(err, "--cuda-graph") && strstr(err, "--device cuda") && !strchr(err, '\n'),
	       "capture refused on the CPU backend: %s", m ? err : "(no model)");
	tr_model_free(m);

	const struct tr_backend *gpu = tr_backend_have_cuda() ? tr_backend_get("cuda", err, sizeof(err)) : NULL;
	if (!tr_backend_have_cuda())
		snprintf(err, sizeof(err), "the CUDA backend is not built");
	if (gpu && gpu->init(TR_DTYPE_FP32, err, sizeof(err)))
		gpu = NULL;
	if (!gpu) {
		for (int i = 0; i < 2; i++)
			printf("ok %d # SKIP no GPU: %s\n", ++tap_n, err);
	} else {
		run(&c, gpu, 1, 2, 1, "CUDA, captured and replayed vs eager graph path");
		run(&c, gpu, 0, 2, 0, "CUDA, captured vs default path");
	}
	tr_comm_free(w);
	return tap_done();
}
