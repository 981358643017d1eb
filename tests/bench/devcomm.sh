#!/bin/bash
# devcomm.sh - the cuda-ipc all-to-all's bandwidth between 2 and 4 processes on one GPU, as ratios
# against one cudaMemcpy device to device of the same bytes and against staging through pinned host
# memory and shm, all measured in the same run (comm/test_devcomm bench).  Not a test: figures, one
# JSON line per rank count; "not run" without a GPU.  DEVCOMM_BENCH_MIB: MiB per rank (default 64).
bin=$top_builddir/tests/comm/test_devcomm
[ -x "$bin" ] || { echo "test_devcomm not built (make check builds it)"; exit 1; }
"$bin" bench "${DEVCOMM_BENCH_MIB:-64}"
