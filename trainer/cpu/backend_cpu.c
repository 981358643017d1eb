/* backend_cpu.c - the CPU reference backend: host memory, and the ops of ops.h (op_*.c in this folder)
 * bound into struct tr_backend.  Nothing is queued, so sync() never fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend.h"
#include "ops.h"

static int init(enum tr_dtype dtype, char *err, size_t errlen)
{
	if (dtype != TR_DTYPE_FP32) {
		snprintf(err, errlen, "--dtype bf16 needs --device cuda: the CPU reference computes in fp32 only");
		return -1;
	}
	return 0;
}

static const char *device_name(void)
{
	return "host CPU";
}

static double no_peak(void)
{
	return 0;
}

static void *alloc(size_t bytes)
{
	return calloc(1, bytes ? bytes : 1);
}

static void upload(void *dst, const void *src, size_t bytes)
{
	if (bytes)
		memcpy(dst, src, bytes);
}

static void zero(void *p, size_t bytes)
{
	if (bytes)
		memset(p, 0, bytes);
}

static int sync(char *err, size_t errlen)
{
	(void)err, (void)errlen;
	return 0;
}

const struct tr_backend tr_backend_cpu = {
	"cpu", 0, init, device_name, no_peak,
	alloc, free, alloc, free, upload, upload, upload, zero, sync,
	tr_embedding_forward, tr_embedding_backward,
	tr_matmul_forward, tr_matmul_backward,
	tr_rmsnorm_forward, tr_rmsnorm_backward,
	tr_rope_forward, tr_rope_backward,
	tr_attention_forward, tr_attention_backward,
	tr_swiglu_forward, tr_swiglu_backward,
	tr_router_forward, tr_router_backward,
	tr_permute_forward, tr_permute_backward, tr_permute_scatter,
	tr_unpermute_forward, tr_unpermute_backward,
	tr_crossentropy_forward, tr_crossentropy_backward,
	tr_route_plan, tr_expert_matmul_forward, tr_expert_matmul_backward,
	tr_add, tr_scale, tr_sum, tr_sumsq, tr_adamw_update,
};
