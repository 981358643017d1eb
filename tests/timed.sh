#!/bin/sh
# timed.sh DRIVER ARGS... - runs the test driver and leaves the test's wall time in seconds next to its log
# (NAME.time), so that run-all.sh can name the slowest tests: the CI time budget is kept by knowing them.
log= prev=
for a; do
	[ "$a" = -- ] && break
	[ "$prev" = --log-file ] && log=$a
	prev=$a
done
start=$(date +%s)
"$@"
rc=$?
[ -z "$log" ] || echo $(($(date +%s) - start)) > "${log%.log}.time"
exit $rc
