#!/bin/bash
# comm.sh - all-to-all bandwidth of the shm and tcp transports as ratios against memcpy and raw
# loopback TCP measured in the same run (see bench/comm_bw.c).  Not a test: it prints figures.
# COMM_BENCH_RANKS, COMM_BENCH_MIB, COMM_BENCH_SECONDS, COMM_BENCH_ROUNDS override the defaults
# (2 ranks, 1 and 16 MiB per peer, best of 3 rounds of 0.5 s).
bin=$top_builddir/tests/bench/comm_bw
[ -x "$bin" ] || { echo "comm_bw not built (make check builds it)"; exit 1; }
ranks=${COMM_BENCH_RANKS:-2}
secs=${COMM_BENCH_SECONDS:-0.5}
rounds=${COMM_BENCH_ROUNDS:-3}
for mib in ${COMM_BENCH_MIB:-1 16}; do
	"$bin" "$ranks" "$mib" "$secs" "$rounds" || exit 1
done
