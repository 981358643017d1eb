/* test_cuda_step.c - one whole training step of the same model (same seed, same batch) on the CUDA
 * backend and on the CPU reference: the loss, then every parameter gradient, tensor by tensor, compared
 * by norm: |g_gpu - g_cpu| / |g_cpu| <= 1e-4 (fp32: a chain of GEMMs summing in another order; the
 * per-op bounds are in test_cuda_ops.c), plus the same expert loads.  Skipped ("no GPU") where the CUDA
 * backend is not built or no GPU can be opened. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "comm.h"
#include "model_impl.h"
#include "tap.h"
#include "gpu_test.h"

static const struct tr_backend *gpu;
static float *cg[2], *gg[2];

static void cmp(const char *name, const struct tr_model *mc, const tr_real *ptr, int seg, size_t n)
{
	size_t off = (size_t)(ptr - mc->grads[seg]);
	double e = cmp_rel_norm(gg[seg] + off, cg[seg] + off, n);
	tap_ok(e <= 1e-4, "gradient %-22s %8zu values, relative error by norm %.2e (bound 1e-4)", name, n, e);
}

int main(void)
{
	char err[512];
	gpu = gpu_test_open(TR_DTYPE_FP32);
	struct tr_config c;
	tr_config_default(&c);
	c.vocab = 256, c.seq_len = 64, c.d_model = 64, c.n_heads = 4, c.n_layers = 3, c.n_dense_layers = 1;
	c.d_ff = 128, c.d_expert = 48, c.n_experts = 8, c.top_k = 2, c.n_groups = 4, c.topk_groups = 2;
	c.route_scale = 2.5f;
	struct tr_comm *w;
	if (tr_comm_init("self", &w, err, sizeof(err))) {
		printf("Bail out! self transport: %s\n", err);
		return 1;
	}
	struct tr_par pc = { w, w, w, 0, NULL }, pg = { w, w, w, 0, gpu };
	struct tr_model *mc, *mg;
	int rc = tr_model_create(&c, &pc, 77, &mc, err, sizeof(err));
	rc |= tr_model_create(&c, &pg, 77, &mg, err, sizeof(err));
	tap_ok(rc == 0, "CPU and CUDA models created (%s; %s)", rc ? err : "ok", gpu->device_name());
	if (rc)
		return tap_done();
	size_t nb;
	tr_real *bc = tr_model_router_bias(mc, &nb), *bg = tr_model_router_bias(mg, &nb);
	for (size_t i = 0; i < nb; i++) /* a bias that matters for the selection */
		bc[i] = bg[i] = (tr_real)(((i * 7919) % 1000) / 1000.0 - 0.5) * 0.1f;
	int B = 4, T = 64;
	uint16_t tok[4 * 65];
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (uint16_t)((i * 131 + i / 7) % 256);
	float lc, lg;
	rc = tr_model_step(mc, tok, B, T, &lc);
	int rg = tr_model_step(mg, tok, B, T, &lg);
	tap_ok(rc == 0 && rg == 0, "one step on each (%s)", rg ? tr_model_error(mg) : "ok");
	tap_ok(fabs(lc - lg) <= 1e-5 * fabs(lc), "loss %.7f on the GPU, %.7f on the CPU (within 1e-5 relative)", lg, lc);
	for (int s = 0; s < 2; s++) {
		size_t n = tr_model_nparams(mc, (enum tr_seg)s);
		cg[s] = tr_model_grads(mc, (enum tr_seg)s);
		gg[s] = malloc(sizeof(float) * (n + 1));
		gpu->download(gg[s], tr_model_grads(mg, (enum tr_seg)s), sizeof(float) * n);
	}
	size_t D = c.d_model, F = c.d_ff, De = c.d_expert, E = c.n_experts;
	char name[64];
	cmp("embedding (tied head)", mc, mc->dwte, 0, (size_t)c.vocab * D);
	cmp("final norm", mc, mc->dlnf, 0, D);
	for (int l = 0; l < c.n_layers; l++) {
		const struct tr_layer_w *g = &mc->lg[l];
#define T_(field, n) snprintf(name, sizeof(name), "L%d %s", l, #field), cmp(name, mc, g->field, 0, n)
		T_(ln1, D);
		T_(wqkv, 3 * D * D);
		T_(wo, D * D);
		T_(ln2, D);
		T_(w1, F * D);
		T_(w3, F * D);
		T_(w2, D * F);
		if (g->wr)
			T_(wr, E * D);
#undef T_
	}
	for (int j = 0; j < mc->n_local; j++)
		for (int l = 0; l < mc->n_moe; l++) {
			size_t base = (size_t)j * mc->expert_elems + (size_t)l * mc->moe_expert_elems;
			const char *part[3] = { "w1", "w3", "w2" };
			for (int p = 0; p < 3; p++) {
				snprintf(name, sizeof(name), "expert %d MoE %d %s", j, l, part[p]);
				cmp(name, mc, mc->grads[1] + base + (size_t)p * De * D, 1, De * D);
			}
		}
	tap_ok(!memcmp(mc->load_local, mg->load_local, sizeof(double) * mc->n_moe * E),
	       "the same token-expert assignments per expert and layer");
	tr_model_free(mc);
	tr_model_free(mg);
	free(gg[0]), free(gg[1]);
	tr_comm_free(w);
	return tap_done();
}
