#!/bin/sh
# node_load.sh - time to read a cached node topology (what the plugin does per job step), as a
# ratio to hwloc alone loading the same XML, both measured in this run.
exec "$top_builddir/tests/bench/bench_node_load" "${1:-20}"
