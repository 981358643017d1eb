#!/bin/bash
# run-all.sh - install dependencies, build everything with ASan+UBSan, run every test, print
# "N passed, N failed".  The README's test command; CI calls it too.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash tests/deps.sh || { echo "0 passed, 1 failed"; exit 1; }
# The rig tests' caches (the Slurm 24.11 root filesystem, the Soft-RoCE guest's kernel) are fetched while
# the build has the CPUs; a test that needs one before it is ready waits for it under the cache's lock.
{ bash tests/slurm/testbed.sh prepare --slurm 24.11; bash tests/rdma/rig.sh prepare; } > "$top/build-check.prepare.log" 2>&1 &
prep=$!
trap 'wait $prep 2>/dev/null' EXIT
build=${BUILD_DIR:-$top/build-check}
jobs=$(nproc)
{
	autoreconf -fi && mkdir -p "$build" && cd "$build" &&
	"$top"/configure --enable-sanitizers ${CONFIGURE_FLAGS:-} && make -j"$jobs"
} > "$top/build-check.log" 2>&1 || { tail -40 "$top/build-check.log"; echo "build failed (log: build-check.log)"; echo "0 passed, 1 failed"; exit 1; }
cd "$build"
# the test programs first; then two lanes at once: the rig tests (Slurm testbed, RDMA guest) one after
# another, and `make -j` over the rest with the other cores (tests/Makefile.am, RIG_TESTS)
make -j"$jobs" check TESTS= >> "$top/build-check.log" 2>&1 || { tail -40 "$top/build-check.log"; echo "0 passed, 1 failed"; exit 1; }
lane() {  # lane JOBS SUITE-LOG TESTS...: make check over those tests, their result lines
	local j=$1 log=$2
	shift 2
	make -C tests -j"$j" check TESTS="$*" TEST_SUITE_LOG="$log" 2>&1 |
		grep --line-buffered -E '^(PASS|FAIL|ERROR|XPASS|SKIP):|^# '
	return "${PIPESTATUS[0]}"
}
lane 1 rig-suite.log $(make -s -C tests print-rig-tests) &
rig=$!
lane $((jobs > 2 ? jobs - 1 : 1)) test-suite.log $(make -s -C tests print-other-tests)
rc=$?
wait $rig || rc=1
for f in $(find . -name '*.log' -path '*tests*' ! -name test-suite.log); do
	grep -q '^not ok' "$f" 2>/dev/null && { echo "--- $f"; grep -B2 -A3 '^not ok' "$f" | head -30; }
done
# the slowest tests (tests/timed.sh), for the CI time budget
find tests -name '*.time' -exec sh -c 'for f; do printf "%s %s\n" "$(cat "$f")" "${f#tests/}"; done' sh {} + |
	sort -rn | head -10 | awk '{ sub(/\.time$/, "", $2); printf "# %5d s  %s\n", $1, $2 }'
line=$(bash "$top/tests/summary.sh" "$build")
echo "$line"
case "$line" in *" 0 failed"*) exit $rc ;; *) exit 1 ;; esac
