/* backend.c - picking a backend by name; the CUDA one exists only in builds with TR_WITH_CUDA
 * (configure --with-cuda found nvcc and cuBLAS).  TR_CUDA_HANDOFF: the build has it, but in
 * moe-train-cuda, to which moe-train hands GPU runs before it reaches here (train_main.c). */
#include <stdio.h>
#include <string.h>
#include "backend.h"

int tr_backend_have_cuda(void)
{
#if defined(TR_WITH_CUDA) || defined(TR_CUDA_HANDOFF)
	return 1;
#else
	return 0;
#endif
}

const struct tr_backend *tr_backend_get(const char *name, char *err, size_t errlen)
{
	if (!strcmp(name, "cpu"))
		return &tr_backend_cpu;
	if (!strcmp(name, "cuda")) {
#if defined(TR_WITH_CUDA)
		return &tr_backend_cuda;
#elif defined(TR_CUDA_HANDOFF)
		snprintf(err, errlen, "--device cuda: this program has no CUDA backend; moe-train-cuda has");
		return NULL;
#else
		snprintf(err, errlen, "--device cuda: the CUDA backend is not built (configure --with-cuda on a machine "
			 "with nvcc and cuBLAS); use --device cpu");
		return NULL;
#endif
	}
	snprintf(err, errlen, "--device '%s': valid cpu, cuda", name);
	return NULL;
}
