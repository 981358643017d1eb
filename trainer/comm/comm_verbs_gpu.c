/* comm_verbs_gpu.c - registering CUDA device memory with the NIC, for the CUDA backend: dma-buf
 * (ibv_reg_dmabuf_mr on the fd cuMemGetHandleForAddressRange gives), else plain ibv_reg_mr when
 * nvidia-peermem is loaded, else the caller stages through pinned host memory.  The CUDA driver is
 * opened at run time (dlopen), so a CUDA build still runs on machines without a GPU.
 *
 * NEVER RUN: no machine of this project has had a GPU and an RDMA NIC together.  It compiles in
 * every CUDA build; host memory (all the CPU trainer uses) takes the ibv_reg_mr path below, which
 * the tests run on Soft-RoCE.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <infiniband/verbs.h>

#include "comm_verbs.h"

#ifdef TR_IB_CUDA
#include <cuda.h>
#include <dlfcn.h>

static struct {
	int probed;
	const char *mode;
	CUresult (*init)(unsigned);
	CUresult (*attr)(void *, CUpointer_attribute, CUdeviceptr);
	CUresult (*dev_attr)(int *, CUdevice_attribute, CUdevice);
	CUresult (*handle)(void *, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long);
} cu;

static void probe(void)
{
	if (cu.probed++)
		return;
	cu.mode = "none (no CUDA driver)";
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	cu.init = (CUresult(*)(unsigned))dlsym(h, "cuInit");
	cu.attr = (CUresult(*)(void *, CUpointer_attribute, CUdeviceptr))dlsym(h, "cuPointerGetAttribute");
	cu.dev_attr = (CUresult(*)(int *, CUdevice_attribute, CUdevice))dlsym(h, "cuDeviceGetAttribute");
	cu.handle = (CUresult(*)(void *, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long))dlsym(
		h, "cuMemGetHandleForAddressRange");
	if (!cu.init || !cu.attr || cu.init(0) != CUDA_SUCCESS)
		return;
	int dmabuf = 0;
	if (cu.handle && cu.dev_attr)
		cu.dev_attr(&dmabuf, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, 0);
	if (dmabuf)
		cu.mode = "dmabuf";
	else if (access("/sys/module/nvidia_peermem", F_OK) == 0)
		cu.mode = "peermem";
	else
		cu.mode = "staging";
}

static bool is_device_memory(void *buf)
{
	unsigned type = 0;
	return cu.attr && cu.attr(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)buf) == CUDA_SUCCESS &&
	       type == CU_MEMORYTYPE_DEVICE;
}

const char *tr_ib_gpu_mode(void)
{
	probe();
	return cu.mode;
}

struct ibv_mr *tr_ib_reg(struct ibv_pd *pd, void *buf, size_t len, int access, bool *staged)
{
	probe();
	*staged = false;
	if (!is_device_memory(buf))
		return ibv_reg_mr(pd, buf, len, access);
	if (!strcmp(cu.mode, "dmabuf")) {
		int fd = -1;
		if (cu.handle(&fd, (CUdeviceptr)(uintptr_t)buf, len, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0) == CUDA_SUCCESS) {
			struct ibv_mr *mr = ibv_reg_dmabuf_mr(pd, 0, len, (uintptr_t)buf, fd, access);
			close(fd); /* the MR keeps its own reference */
			if (mr)
				return mr;
		}
	} else if (!strcmp(cu.mode, "peermem")) {
		struct ibv_mr *mr = ibv_reg_mr(pd, buf, len, access);
		if (mr)
			return mr;
	}
	*staged = true; /* the caller copies through pinned host memory */
	return NULL;
}

#else /* no CUDA in this build: every buffer is host memory */

const char *tr_ib_gpu_mode(void)
{
	return "none (not a CUDA build)";
}

struct ibv_mr *tr_ib_reg(struct ibv_pd *pd, void *buf, size_t len, int access, bool *staged)
{
	*staged = false;
	return ibv_reg_mr(pd, buf, len, access);
}
#endif
