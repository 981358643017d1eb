#!/bin/bash
# test_fuzz.sh - under `make check`: every libFuzzer target of tests/fuzz/ runs for a short bounded time
# (FUZZ_CHECK_SECONDS, default 12 s each: the set stays within about 3 minutes with the build on 2
# cores) and fails on any crash, leak, sanitizer report or timeout.  Skipped when clang cannot build
# libFuzzer targets.  Longer runs: `make fuzz FUZZ_SECONDS=600` (figures in doc/fuzzing.md).
FUZZ_SEED=${FUZZ_SEED:-1} exec bash "${srcdir:-$(dirname "$0")/..}/fuzz/run.sh" --tap "${FUZZ_CHECK_SECONDS:-12}"
