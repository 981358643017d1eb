/* backend_cuda.cu - the CUDA backend's device setup (with one clear line for each way it can fail),
 * memory, error state, the bf16 peak measurement, and the table that binds the kernels of the other
 * .cu files to struct tr_backend. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cuda_ctx.h"
#include "cuda_ops.h"

struct tr_cuda tr_cu;

#ifndef TR_CUDA_MIN_SM
#define TR_CUDA_MIN_SM 90 /* the oldest architecture the build has code (or PTX) for */
#endif

extern "C" void tr_cuda_fail(const char *fmt, ...)
{
	if (tr_cu.err[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tr_cu.err, sizeof(tr_cu.err), fmt, ap);
	va_end(ap);
}

static void version_text(char *buf, size_t n, int v)
{
	snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
}

static int init(enum tr_dtype dtype, char *err, size_t errlen)
{
	if (tr_cu.ready) {
		tr_cu.dtype = dtype;
		return 0;
	}
	const char *vis = getenv("CUDA_VISIBLE_DEVICES");
	char vis_txt[96];
	snprintf(vis_txt, sizeof(vis_txt), vis ? "CUDA_VISIBLE_DEVICES='%s'" : "CUDA_VISIBLE_DEVICES unset", vis);
	int drv = 0, rt = 0, n = 0;
	cudaDriverGetVersion(&drv);
	cudaRuntimeGetVersion(&rt);
	char drv_s[16], rt_s[16];
	version_text(drv_s, sizeof(drv_s), drv);
	version_text(rt_s, sizeof(rt_s), rt);
	if (drv == 0) {
		snprintf(err, errlen, "--device cuda: no GPU: no NVIDIA driver is loaded (%s)", vis_txt);
		return -1;
	}
	/* an older driver of the same major version runs this build (CUDA minor-version compatibility: the
	 * build carries SASS for its GPUs); what it cannot run, cudaGetDeviceCount reports below */
	if (drv / 1000 < rt / 1000) {
		snprintf(err, errlen, "--device cuda: the NVIDIA driver supports CUDA %s, this build needs a driver for CUDA "
			 "%d.x (runtime %s); update the driver", drv_s, rt / 1000, rt_s);
		return -1;
	}
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e == cudaErrorInsufficientDriver) {
		snprintf(err, errlen, "--device cuda: the NVIDIA driver (CUDA %s) is older than the CUDA %s runtime of this build",
			 drv_s, rt_s);
		return -1;
	}
	if (e != cudaSuccess || n == 0) {
		snprintf(err, errlen, "--device cuda: no GPU visible (%s; %s)", vis_txt,
			 e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
		return -1;
	}
	cudaDeviceProp p;
	if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess || (e = cudaSetDevice(0)) != cudaSuccess) {
		snprintf(err, errlen, "--device cuda: cannot open GPU 0 (%s): %s", vis_txt, cudaGetErrorString(e));
		return -1;
	}
	tr_cu.device = 0;
	tr_cu.sm = p.major * 10 + p.minor;
	if (tr_cu.sm < TR_CUDA_MIN_SM) {
		snprintf(err, errlen, "--device cuda: %s is sm_%d; this build has GPU code for sm_%d and newer "
			 "(reconfigure with CUDA_ARCHS including it)", p.name, tr_cu.sm, TR_CUDA_MIN_SM);
		return -1;
	}
	snprintf(tr_cu.name, sizeof(tr_cu.name), "%s (sm_%d, %.0f GiB, driver CUDA %s, runtime %s)", p.name, tr_cu.sm,
		 (double)p.totalGlobalMem / (1u << 30), drv_s, rt_s);
	if ((e = cudaStreamCreateWithFlags(&tr_cu.stream, cudaStreamNonBlocking)) != cudaSuccess) {
		snprintf(err, errlen, "--device cuda: %s: cannot create a stream: %s", p.name, cudaGetErrorString(e));
		return -1;
	}
	if (cublasCreate(&tr_cu.blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&tr_cu.lt) != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, errlen, "--device cuda: %s: cuBLAS does not start (out of GPU memory, or a cuBLAS older than the build's)",
			 p.name);
		return -1;
	}
	cublasSetStream(tr_cu.blas, tr_cu.stream);
	/* no TF32: fp32 GEMMs stay fp32, so --dtype fp32 compares with the CPU reference */
	cublasSetMathMode(tr_cu.blas, CUBLAS_DEFAULT_MATH);
	tr_cu.lt_ws_size = 32u << 20;
	if (cudaMalloc(&tr_cu.lt_ws, tr_cu.lt_ws_size) != cudaSuccess) {
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		snprintf(err, errlen, "--device cuda: %s: out of GPU memory for a 32 MiB workspace (%.1f of %.1f GiB free)",
			 p.name, (double)fr / (1u << 30), (double)tot / (1u << 30));
		return -1;
	}
	tr_cu.dtype = dtype;
	tr_cu.ready = 1;
	return 0;
}

static const char *device_name(void)
{
	return tr_cu.name;
}

static void *alloc(size_t bytes)
{
	void *p = NULL;
	if (bytes == 0)
		bytes = 16;
	if (cudaMalloc(&p, bytes) != cudaSuccess) {
		cudaGetLastError(); /* not sticky: clear it */
		size_t fr = 0, tot = 0;
		cudaMemGetInfo(&fr, &tot);
		tr_cuda_fail("out of GPU memory: asked for %.1f MiB, %.1f of %.1f GiB free on %s", (double)bytes / (1u << 20),
			     (double)fr / (1u << 30), (double)tot / (1u << 30), tr_cu.name);
		return NULL;
	}
	TR_CU_OK(cudaMemsetAsync(p, 0, bytes, tr_cu.stream));
	return p;
}

static void dfree(void *p)
{
	if (p)
		TR_CU_OK(cudaFree(p));
}

static void *host_alloc(size_t bytes)
{
	void *p = NULL;
	if (cudaMallocHost(&p, bytes ? bytes : 16) != cudaSuccess) {
		cudaGetLastError();
		tr_cuda_fail("out of pinned host memory for %.1f MiB of staging", (double)bytes / (1u << 20));
		return NULL;
	}
	return p;
}

static void host_free(void *p)
{
	if (p)
		cudaFreeHost(p);
}

/* Synchronous: the caller may reuse or change its host buffer as soon as this returns. */
static void upload(void *dst, const void *src, size_t bytes)
{
	if (!bytes)
		return;
	TR_CU_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, tr_cu.stream));
	TR_CU_OK(cudaStreamSynchronize(tr_cu.stream));
}

static void download(void *dst, const void *src, size_t bytes)
{
	if (!bytes)
		return;
	TR_CU_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, tr_cu.stream));
	TR_CU_OK(cudaStreamSynchronize(tr_cu.stream));
}

static void copy(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		TR_CU_OK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, tr_cu.stream));
}

static void zero(void *p, size_t bytes)
{
	if (bytes)
		TR_CU_OK(cudaMemsetAsync(p, 0, bytes, tr_cu.stream));
}

static int sync(char *err, size_t errlen)
{
	cudaError_t e = cudaStreamSynchronize(tr_cu.stream);
	if (e != cudaSuccess)
		tr_cuda_fail("GPU: %s", cudaGetErrorString(e));
	if (!tr_cu.err[0])
		return 0;
	snprintf(err, errlen, "%s", tr_cu.err);
	return -1;
}

extern "C" void *tr_cuda_scratch(int slot, size_t bytes)
{
	if (bytes <= tr_cu.scratch_n[slot])
		return tr_cu.scratch[slot];
	/* a captured graph holds the addresses of pools 0-2; pool 3 serves only ops that read results on
	 * the host (sums, counts, cuBLAS pointer arrays), which a graph cannot hold */
	if (tr_cu.graphs && slot < 3) {
		tr_cuda_fail("scratch pool %d would have to grow to %.1f MiB while a CUDA graph uses it (the step's shapes "
			     "changed after the capture)", slot, (double)bytes / (1u << 20));
		return NULL;
	}
	if (tr_cu.scratch[slot])
		TR_CU_OK(cudaFree(tr_cu.scratch[slot])); /* synchronises: no queued kernel still uses it */
	tr_cu.scratch[slot] = NULL;
	tr_cu.scratch_n[slot] = 0;
	size_t want = bytes + bytes / 4;
	void *p = alloc(want);
	if (p) {
		tr_cu.scratch[slot] = p;
		tr_cu.scratch_n[slot] = want;
	}
	return p;
}

static void scratch_release(int slot)
{
	cudaFree(tr_cu.scratch[slot]);
	tr_cu.scratch[slot] = NULL;
	tr_cu.scratch_n[slot] = 0;
}

/* dense bf16 GEMM, 8192^3 (4096^3 when memory is short), 3 warm-up and 10 timed runs.  Optional: a
 * failure here (memory) gives 0 and leaves no error behind for training, nor its large scratch. */
static double measure_peak_tflops(void)
{
	if (!tr_cu.ready || tr_cu.err[0])
		return 0;
	enum tr_dtype keep = tr_cu.dtype;
	tr_cu.dtype = TR_DTYPE_BF16;
	double best = 0;
	for (int n = 8192; n >= 4096 && best == 0; n /= 2) {
		size_t bytes = (size_t)n * n * sizeof(float);
		float *a = NULL, *b = NULL, *c = NULL;
		if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
		    cudaMalloc(&c, bytes) != cudaSuccess) {
			cudaGetLastError();
			cudaFree(a), cudaFree(b), cudaFree(c);
			continue;
		}
		cudaMemsetAsync(a, 0, bytes, tr_cu.stream);
		cudaMemsetAsync(b, 0, bytes, tr_cu.stream);
		/* the bf16 copies of the operands are made once: time the GEMM alone */
		tr_cuda_gemm(0, 0, n, n, n, a, n, b, n, 0.0f, c, n);
		cudaEvent_t e0, e1;
		cudaEventCreate(&e0);
		cudaEventCreate(&e1);
		for (int i = 0; i < 3; i++)
			tr_cuda_gemm_bf16_raw(n, n, n, c);
		cudaEventRecord(e0, tr_cu.stream);
		for (int i = 0; i < 10; i++)
			tr_cuda_gemm_bf16_raw(n, n, n, c);
		cudaEventRecord(e1, tr_cu.stream);
		cudaEventSynchronize(e1);
		float ms = 0;
		cudaEventElapsedTime(&ms, e0, e1);
		if (ms > 0 && !tr_cu.err[0])
			best = 2.0 * n * (double)n * n * 10 / (ms * 1e-3) / 1e12;
		cudaEventDestroy(e0);
		cudaEventDestroy(e1);
		cudaFree(a), cudaFree(b), cudaFree(c);
		tr_cu.err[0] = 0; /* the 4096 try starts clean */
		cudaGetLastError();
	}
	scratch_release(0);
	scratch_release(1);
	tr_cu.dtype = keep;
	return best;
}

extern "C" const struct tr_backend tr_backend_cuda = {
	"cuda", 1, init, device_name, measure_peak_tflops,
	alloc, dfree, host_alloc, host_free, upload, download, copy, zero, sync,
	tr_cuda_embedding_forward, tr_cuda_embedding_backward,
	tr_cuda_matmul_forward, tr_cuda_matmul_backward,
	tr_cuda_rmsnorm_forward, tr_cuda_rmsnorm_backward,
	tr_cuda_rope_forward, tr_cuda_rope_backward,
	tr_cuda_attention_forward, tr_cuda_attention_backward,
	tr_cuda_swiglu_forward, tr_cuda_swiglu_backward,
	tr_cuda_router_forward, tr_cuda_router_backward,
	tr_cuda_permute_forward, tr_cuda_permute_backward, tr_cuda_permute_scatter,
	tr_cuda_unpermute_forward, tr_cuda_unpermute_backward,
	tr_cuda_crossentropy_forward, tr_cuda_crossentropy_backward,
	tr_cuda_route_plan, tr_cuda_expert_matmul_forward, tr_cuda_expert_matmul_backward,
	tr_cuda_add, tr_cuda_scale, tr_cuda_sum, tr_cuda_sumsq, tr_cuda_adamw,
	tr_cuda_route_plan_dev, tr_cuda_expert_matmul_forward_dev, tr_cuda_expert_matmul_backward_dev,
	tr_cuda_key_sum, tr_cuda_sum_to, tr_cuda_clip_dev, tr_cuda_adamw_dev,
	tr_cuda_graph_begin, tr_cuda_graph_end, tr_cuda_graph_launch, tr_cuda_graph_free,
};
