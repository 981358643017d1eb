/* host_device.h - TR_HOST_DEVICE marks a static inline function that both the host compiler and nvcc build
 * (a rule the CPU reference and the CUDA kernels share: routing, AdamW, clipping, the grouped GEMM's map). */
#ifndef TR_HOST_DEVICE_H
#define TR_HOST_DEVICE_H

#ifdef __CUDACC__
#define TR_HOST_DEVICE __host__ __device__
#else
#define TR_HOST_DEVICE
#endif

#endif
