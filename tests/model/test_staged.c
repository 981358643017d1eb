/* test_staged.c - the model's paths for a backend whose memory the host cannot touch (initial weights
 * made on the host and uploaded, the router bias uploaded at every forward, losses and norms summed by
 * the backend, the all-to-all of an EP group of one as a device copy), run here without a GPU: a backend
 * that is the CPU reference but declares device_mem, so the model must go through upload/download.  Two
 * steps with a bias update between must give the plain CPU run's bits exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "comm.h"
#include "model.h"
#include "tap.h"

static int uploads, downloads;
static void up(void *d, const void *s, size_t n) { uploads++; memcpy(d, s, n); }
static void down(void *d, const void *s, size_t n) { downloads++; memcpy(d, s, n); }

int main(void)
{
	struct tr_backend staged = tr_backend_cpu;
	staged.name = "staged-cpu";
	staged.device_mem = 1;
	staged.upload = up;
	staged.download = down;
	struct tr_config c;
	tr_config_default(&c);
	c.vocab = 64, c.seq_len = 16, c.d_model = 32, c.n_heads = 2, c.n_layers = 3, c.n_dense_layers = 1;
	c.d_ff = 48, c.d_expert = 16, c.n_experts = 8, c.top_k = 2, c.n_groups = 4, c.topk_groups = 2;
	c.route_scale = 2.5f, c.bias_gamma = 0.05f;
	struct tr_comm *w;
	char err[256];
	if (tr_comm_init("self", &w, err, sizeof(err))) {
		printf("Bail out! self transport: %s\n", err);
		return 1;
	}
	struct tr_par pc = { w, w, w, 0, NULL }, ps = { w, w, w, 0, &staged };
	struct tr_model *mc, *ms;
	int rc = tr_model_create(&c, &pc, 9, &mc, err, sizeof(err)) | tr_model_create(&c, &ps, 9, &ms, err, sizeof(err));
	tap_ok(rc == 0, "models created (%s)", rc ? err : "ok");
	if (rc)
		return tap_done();
	tap_ok(uploads >= 4, "the staged model's weights, tables and groups were uploaded (%d uploads)", uploads);
	int B = 4, T = 16, same = 1;
	uint16_t tok[4 * 17];
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (uint16_t)((i * 29 + i / 5) % c.vocab);
	for (int step = 0; step < 2; step++) {
		float lc, ls;
		int u0 = uploads;
		rc = tr_model_step(mc, tok, B, T, &lc) | tr_model_step(ms, tok, B, T, &ls) |
		     tr_model_reduce_grads(mc) | tr_model_reduce_grads(ms);
		tap_ok(rc == 0 && uploads >= u0 + 3, "step %d on both (tokens, targets, bias uploaded: %d)", step + 1,
		       uploads - u0);
		double nc, ns;
		rc = tr_model_grad_norm(mc, &nc) | tr_model_grad_norm(ms, &ns);
		tap_ok(rc == 0 && lc == ls && nc == ns, "step %d: the same loss %.7f and gradient norm %.7f bits", step + 1, ls, ns);
		for (int s = 0; s < 2; s++)
			same &= !memcmp(tr_model_grads(mc, (enum tr_seg)s), tr_model_grads(ms, (enum tr_seg)s),
					sizeof(tr_real) * tr_model_nparams(mc, (enum tr_seg)s));
		tap_ok(same, "step %d: every gradient bit-identical", step + 1);
		rc = tr_model_update_bias(mc) | tr_model_update_bias(ms);
		size_t nb;
		tr_real *bc = tr_model_router_bias(mc, &nb), *bs = tr_model_router_bias(ms, &nb);
		tap_ok(rc == 0 && !memcmp(bc, bs, sizeof(tr_real) * nb), "step %d: the same router bias after the update",
		       step + 1);
	}
	tr_model_free(mc);
	tr_model_free(ms);
	tr_comm_free(w);
	return tap_done();
}
