/* moe_layer_gpu.c - GPU benchmarks of the CUDA backend (make bench, tests/gpu/run-all.sh):
 *   layer    one MoE layer forward + backward as the trainer runs it at EP=1 (shared expert, router
 *            GEMM, fused router, counting sort, permute, grouped expert FFN, gated combine, and every
 *            backward), default DeepSeek-style shape d_model 2048, 64 experts of 1408, top-6, 1 shared
 *            expert of 1408, 8192 tokens, bf16 GEMMs; prints ms and achieved TFLOP/s, one JSON line;
 *   grouped  the routed experts' grouped GEMM against one dense cuBLAS GEMM of the same total FLOPs:
 *            achieved TFLOP/s of both and their ratio, one JSON line.
 * Compare the layer with tests/bench/moe_layer_torch.py on the same GPU in the same run.
 * Prints "SKIP no GPU: ..." and exits 0 where the CUDA backend is not built or no GPU opens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "backend.h"
#include "model_impl.h"

static const struct tr_backend *be;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *dev_rand(size_t n, float scale, uint64_t seed)
{
	float *h = malloc(sizeof(float) * n), *d = be->alloc(sizeof(float) * n);
	for (size_t i = 0; i < n; i++) {
		seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
		h[i] = (float)((seed >> 40) / 8388608.0 - 1.0) * scale;
	}
	if (d)
		be->upload(d, h, sizeof(float) * n);
	free(h);
	return d;
}

static int arg(int argc, char **argv, const char *name, int def)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return atoi(argv[i + 1]);
	return def;
}

int main(int argc, char **argv)
{
	char err[512];
	int N = arg(argc, argv, "--tokens", 8192), D = arg(argc, argv, "--dim", 2048), E = arg(argc, argv, "--experts", 64);
	int De = arg(argc, argv, "--expert-ffn", 1408), k = arg(argc, argv, "--top-k", 6), F = arg(argc, argv, "--shared-ffn", 1408);
	int iters = arg(argc, argv, "--iters", 10), fp32 = arg(argc, argv, "--fp32", 0);
	if (!tr_backend_have_cuda()) {
		printf("SKIP no GPU: the CUDA backend is not built\n");
		return 0;
	}
	be = tr_backend_get("cuda", err, sizeof(err));
	if (!be || be->init(fp32 ? TR_DTYPE_FP32 : TR_DTYPE_BF16, err, sizeof(err)) != 0) {
		printf("SKIP no GPU: %s\n", err);
		return 0;
	}
	size_t Nk = (size_t)N * k, ew = 3 * (size_t)De * D;
	float *x = dev_rand((size_t)N * D, 1, 1), *dy = dev_rand((size_t)N * D, 1, 2), *y = be->alloc(4ul * N * D);
	float *dx = be->alloc(4ul * N * D), *wr = dev_rand((size_t)E * D, 0.02f, 3), *dwr = be->alloc(4ul * E * D);
	float *sw = dev_rand(3 * (size_t)F * D, 0.02f, 4), *dsw = be->alloc(12ul * F * D);
	float *w = dev_rand(ew * E, 0.02f, 5), *dw = be->alloc(4 * ew * E), *bias = be->alloc(4ul * E);
	float *sc = be->alloc(4ul * N * E), *gates = be->alloc(4 * Nk), *dgates = be->alloc(4 * Nk), *dlog = be->alloc(4ul * N * E);
	int *idx = be->alloc(4 * Nk), *pos = be->alloc(4 * Nk), *src = be->alloc(4 * Nk), *group = be->alloc(4ul * E);
	float *sh = be->alloc(12ul * N * F), *xe = be->alloc(4 * Nk * D), *he = be->alloc(12 * Nk * De);
	float *ye = be->alloc(4 * Nk * D), *dye = be->alloc(4 * Nk * D), *dxe = be->alloc(4 * Nk * D);
	float *scr = be->alloc(12 * Nk * (De > F ? De : F));
	int *rows = malloc(sizeof(int) * E), one = N;
	if (be->sync(err, sizeof(err)) != 0 || !rows) {
		printf("SKIP out of GPU memory for the layer: %s\n", err);
		return 0;
	}
	double t_fwd = 0, t_bwd = 0;
	for (int it = -2; it < iters; it++) {
		be->sync(err, sizeof(err));
		double t0 = now();
		tr_ffn_forward(be, y, sh, sh + (size_t)N * F, sh + 2 * (size_t)N * F, x, sw, sw + (size_t)F * D,
			       sw + 2 * (size_t)F * D, 0, &one, 1, D, F);
		be->matmul_forward(sc, x, wr, N, D, E);
		be->router_forward(sc, idx, gates, sc, bias, group, 1, 0, N, E, k, 2.5f);
		be->route_plan(rows, pos, src, idx, (int)Nk, k, E); /* EP=1: every expert is local */
		be->permute_forward(xe, x, src, (int)Nk, D);
		tr_ffn_forward(be, ye, he, he + Nk * De, he + 2 * Nk * De, xe, w, w + (size_t)De * D, w + 2 * (size_t)De * D,
			       ew, rows, E, D, De);
		be->unpermute_forward(y, ye, pos, gates, N, k, D);
		be->sync(err, sizeof(err));
		double t1 = now();
		be->zero(dx, 4ul * N * D);
		tr_ffn_backward(be, dx, dsw, dsw + (size_t)F * D, dsw + 2 * (size_t)F * D, dy, x, sh, sh + (size_t)N * F,
				sh + 2 * (size_t)N * F, sw, sw + (size_t)F * D, sw + 2 * (size_t)F * D, 0, &one, 1, D, F, scr);
		be->unpermute_backward(dye, dgates, dy, ye, pos, gates, N, k, D);
		be->zero(dxe, 4 * Nk * D);
		tr_ffn_backward(be, dxe, dw, dw + (size_t)De * D, dw + 2 * (size_t)De * D, dye, xe, he, he + Nk * De,
				he + 2 * Nk * De, w, w + (size_t)De * D, w + 2 * (size_t)De * D, ew, rows, E, D, De, scr);
		be->permute_backward(dx, dxe, pos, N, k, D);
		be->router_backward(dlog, dgates, sc, idx, N, E, k, 2.5f);
		be->matmul_backward(dx, dwr, dlog, x, wr, N, D, E);
		be->sync(err, sizeof(err));
		double t2 = now();
		if (it >= 0)
			t_fwd += t1 - t0, t_bwd += t2 - t1;
	}
	if (be->sync(err, sizeof(err)) != 0) {
		printf("FAIL %s\n", err);
		return 1;
	}
	/* forward FLOPs: shared 3 GEMMs, router, k routed experts per token; backward twice that */
	double fl = 2.0 * N * D * (3.0 * F + E + 3.0 * k * De) * 3;
	double ms = (t_fwd + t_bwd) * 1e3 / iters;
	printf("{\"bench\":\"moe_layer\",\"device\":\"%s\",\"dtype\":\"%s\",\"tokens\":%d,\"d_model\":%d,\"experts\":%d,"
	       "\"expert_ffn\":%d,\"top_k\":%d,\"shared_ffn\":%d,\"fwd_ms\":%.3f,\"bwd_ms\":%.3f,\"fwd_bwd_ms\":%.3f,"
	       "\"tflops\":%.1f}\n", be->device_name(), fp32 ? "fp32" : "bf16", N, D, E, De, k, F, t_fwd * 1e3 / iters,
	       t_bwd * 1e3 / iters, ms, fl / (ms * 1e-3) / 1e12);

	/* grouped expert GEMM (the routing just made) vs one dense GEMM of the same FLOPs */
	long R = 0;
	for (int e = 0; e < E; e++)
		R += rows[e];
	double tg = 0, td = 0;
	for (int it = -2; it < iters; it++) {
		be->sync(err, sizeof(err));
		double t0 = now();
		be->expert_matmul_forward(he, xe, w, ew, rows, E, D, De);
		be->sync(err, sizeof(err));
		double t1 = now();
		be->matmul_forward(he, xe, w, (int)R, D, De);
		be->sync(err, sizeof(err));
		double t2 = now();
		if (it >= 0)
			tg += t1 - t0, td += t2 - t1;
	}
	double gf = 2.0 * R * D * De * iters / 1e12;
	printf("{\"bench\":\"grouped_gemm\",\"rows\":%ld,\"experts\":%d,\"k\":%d,\"n\":%d,\"grouped_tflops\":%.1f,"
	       "\"dense_tflops\":%.1f,\"ratio\":%.3f}\n", R, E, D, De, gf / tg, gf / td, td / tg);
	return be->sync(err, sizeof(err)) != 0;
}
