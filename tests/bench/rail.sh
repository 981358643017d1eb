#!/bin/bash
# rail.sh - rail-aligned vs direct all-to-all on pretend nodes (see bench/rail_a2a.c): time as a ratio
# to direct mode in the same run, and cross-node bytes per token with and without deduplication, at
# top-8 over 4 nodes; then the combine back (summed per token, per node on the rail peer).  Not a test: it prints figures.  RAIL_BENCH_ARGS overrides
# "NODES PER_NODE TOPK TOKENS DIM ITERS" (default 4 2 8 512 256 20).
bin=$top_builddir/tests/bench/rail_a2a
[ -x "$bin" ] || { echo "rail_a2a not built (make check builds it)"; exit 1; }
"$bin" ${RAIL_BENCH_ARGS:-4 2 8 512 256 20}
