#!/bin/sh
# planner.sh - `make bench`: planner speed at 8,192 and 131,072 GPUs and the simulated all-to-all time
# of the plan vs Slurm's default layout, as ratios against baselines measured in the same run.
# Figures from a sanitizer build are not representative: configure without --enable-sanitizers.
b=${top_builddir:-.}/tests/bench/planner_bench
if [ ! -x "$b" ]; then
	echo "planner bench: $b is not built (run make bench, which builds it)" >&2
	exit 1
fi
if grep -q -- '-fsanitize' "${top_builddir:-.}/tests/Makefile" 2>/dev/null; then
	echo "note: sanitizer build - timings are several times slower than a release build"
fi
exec "$b" "$@"
