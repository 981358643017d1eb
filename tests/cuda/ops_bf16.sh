#!/bin/bash
# ops_bf16.sh - test_cuda_ops with --dtype bf16 GEMMs (bounds in test_cuda_ops.c); skips like it.
exec "$top_builddir/tests/cuda/test_cuda_ops" bf16
