#!/bin/bash
# verbs.sh - the verbs transport's all-to-all bandwidth per rank against ib_write_bw (perftest) on
# the same Soft-RoCE device in the same guest run, as ratios (target >= 0.8 at 1 MiB and above).
# Not a test: it prints figures.  Boots the rig's guest (tests/rdma/rig.sh) unless already inside.
# 2 ranks, so each rank's send rate compares with one direction of ib_write_bw --bidirectional
# (the all-to-all moves the same bytes both ways at once).  VERBS_BENCH_KIB overrides the sizes.
bin=$top_builddir/tests/bench/comm_bw
[ -x "$bin" ] || { echo "comm_bw not built (make check builds it)"; exit 1; }
if [ -z "${MOE_RDMA_GUEST:-}" ]; then
	why=$(bash "$top_srcdir/tests/rdma/rig.sh" check) || { echo "verbs bench skipped: $why"; exit 0; }
	cd "$top_builddir" && exec bash "$top_srcdir/tests/rdma/rig.sh" run env top_srcdir="$top_srcdir" \
		top_builddir="$top_builddir" VERBS_BENCH_KIB="${VERBS_BENCH_KIB:-}" bash "$top_srcdir/tests/bench/verbs.sh"
fi
export LD_LIBRARY_PATH=$RDMA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "verbs bench: $(hostname), rxe0 (Soft-RoCE, MTU $(cat /sys/class/infiniband/rxe0/ports/1/active_mtu 2>/dev/null || echo 4096)), GID index $RXE_GID_INDEX, 2 ranks; MB/s (1 MB = 1e6 bytes)"
printf '  %-10s %14s %18s %8s\n' "per peer" "ib_write_bw" "verbs alltoallv" "ratio"
for kib in ${VERBS_BENCH_KIB:-64 1024 16384}; do
	bytes=$((kib * 1024))
	iters=$((64 * 1024 * 1024 / bytes)); [ $iters -lt 20 ] && iters=20
	port=$((18515 + kib % 1000))
	"$RDMA_BIN/ib_write_bw" -d rxe0 -x "$RXE_GID_INDEX" -F -b -s "$bytes" -n "$iters" -p $port > /tmp/bw.srv 2>&1 &
	srv=$!
	sleep 1
	"$RDMA_BIN/ib_write_bw" -d rxe0 -x "$RXE_GID_INDEX" -F -b -s "$bytes" -n "$iters" -p $port 127.1.1.1 > /tmp/bw.cli 2>&1
	wait $srv
	# the result row: bytes iterations peak average[MB/s] msg-rate; --bidirectional sums both directions
	base=$(awk -v b="$bytes" '$1 == b { print $4 / 2 }' /tmp/bw.cli | tail -1)
	[ -n "$base" ] || { echo "ib_write_bw failed:"; tail -5 /tmp/bw.cli; exit 1; }
	mine=$(MOE_IB_DEVICE=rxe0:1 "$bin" 2 "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" 1 3 verbs | awk '{ print $6 * 1000 }')
	[ -n "$mine" ] || { echo "comm_bw verbs failed"; exit 1; }
	printf '  %-10s %14.1f %18.1f %8.2f\n' "$kib KiB" "$base" "$mine" "$(awk -v a="$mine" -v b="$base" 'BEGIN { print a / b }')"
done
