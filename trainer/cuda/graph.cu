/* graph.cu - CUDA graphs for --cuda-graph: the step's work queued on the backend's one stream between
 * graph_begin and graph_end is captured (nothing runs), instantiated once, and replayed by graph_launch.
 * A replay uses the addresses seen at capture, so while a graph exists the scratch pools may not move
 * (tr_cuda_scratch refuses to grow them, with one line) and the model keeps its buffers.  Work that
 * cannot be captured (a host synchronisation, a cudaMalloc/cudaFree) invalidates the capture; the op
 * that tried records the first error and graph_end reports it in one line. */
#include <stdio.h>
#include "cuda_ctx.h"
#include "cuda_ops.h"

static int report(char *err, size_t errlen, const char *what, cudaError_t e)
{
	snprintf(err, errlen, "CUDA graph %s: %s%s%s", what, e != cudaSuccess ? cudaGetErrorString(e) : "an op failed",
		 tr_cu.err[0] ? "; first failure: " : "", tr_cu.err);
	return -1;
}

extern "C" int tr_cuda_graph_begin(char *err, size_t errlen)
{
	if (tr_cu.err[0]) {
		snprintf(err, errlen, "CUDA graph capture: an earlier failure: %s", tr_cu.err);
		return -1;
	}
	cudaError_t e = cudaStreamBeginCapture(tr_cu.stream, cudaStreamCaptureModeGlobal);
	return e == cudaSuccess ? 0 : report(err, errlen, "capture could not start", e);
}

extern "C" int tr_cuda_graph_end(void **exec, char *err, size_t errlen)
{
	cudaGraph_t g = NULL;
	cudaGraphExec_t x = NULL;
	*exec = NULL;
	cudaError_t e = cudaStreamEndCapture(tr_cu.stream, &g);
	if (e != cudaSuccess || tr_cu.err[0]) {
		if (g)
			cudaGraphDestroy(g);
		cudaGetLastError();
		return report(err, errlen, "capture of the step failed (something in it synchronises with the host or "
			      "allocates)", e);
	}
	e = cudaGraphInstantiate(&x, g, 0);
	cudaGraphDestroy(g);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return report(err, errlen, "instantiation", e);
	}
	tr_cu.graphs++;
	*exec = (void *)x;
	return 0;
}

extern "C" int tr_cuda_graph_launch(void *exec, char *err, size_t errlen)
{
	cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)exec, tr_cu.stream);
	if (e != cudaSuccess) {
		tr_cuda_fail("cudaGraphLaunch: %s", cudaGetErrorString(e));
		return report(err, errlen, "launch", e);
	}
	return 0;
}

extern "C" void tr_cuda_graph_free(void *exec)
{
	if (!exec)
		return;
	cudaStreamSynchronize(tr_cu.stream); /* no replay still running */
	TR_CU_OK(cudaGraphExecDestroy((cudaGraphExec_t)exec));
	tr_cu.graphs--;
}
