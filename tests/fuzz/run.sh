#!/bin/bash
# run.sh - builds the libFuzzer targets of tests/fuzz/ with clang and runs each for a while.
#
#   run.sh [--tap] SECONDS [TARGET...]
#
# `make fuzz` runs it with FUZZ_SECONDS per target; test_fuzz.sh (make check) with a short time and
# --tap.  Each target starts from its seed corpus (tests/fuzz/corpus/TARGET, plus the real topology
# fixtures for the XML readers); what it finds is kept in $FUZZ_WORK/corpus/TARGET for the next run,
# and a crash, leak or timeout leaves its input as $FUZZ_WORK/TARGET-crash-... (rerun it with
# `$FUZZ_WORK/fuzz_TARGET FILE`).  Exit status: 0 when every target ran clean, 1 when one failed,
# 77 when clang cannot build libFuzzer targets (reported as a skip under --tap).
set -u
tap=0
[ "${1:-}" = --tap ] && { tap=1; shift; }
secs=${1:?usage: run.sh [--tap] SECONDS [TARGET...]}
shift
src=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
bld=${top_builddir:-$src}
work=${FUZZ_WORK:-$bld/tests/fuzz-work}
cc=${CLANG:-clang}
all="spec hostlist domains hwloc_xml nccl_xml plugstack shard ckpt rdv"
targets=${*:-$all}
mkdir -p "$work/obj" "$work/corpus"

say() { [ $tap = 1 ] && echo "# $*" || echo "$*" >&2; }
skip() { if [ $tap = 1 ]; then echo "1..0 # SKIP $*"; exit 0; fi; echo "fuzz: skipped: $*" >&2; exit 77; }

command -v "$cc" >/dev/null 2>&1 || skip "no clang (apt-get install clang)"
[ -f "$bld/config.h" ] || skip "no config.h in $bld (run configure first)"
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' >"$work/probe.c"
"$cc" -fsanitize=fuzzer,address,undefined "$work/probe.c" -o "$work/probe" >/dev/null 2>&1 ||
	skip "$cc cannot link -fsanitize=fuzzer (libFuzzer missing)"

inc=""
for d in topology/common topology/node topology/planner plugin trainer/comm trainer/driver tests/fuzz; do
	[ -d "$src/$d" ] && inc="$inc -I$src/$d"
done
cflags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
	-fno-sanitize-recover=undefined -include $bld/config.h $inc $(pkg-config --cflags hwloc 2>/dev/null)"
# the transports linked into fuzz_rdv include the verbs one when the build found libibverbs
ldflags="-fsanitize=fuzzer,address,undefined $(pkg-config --libs hwloc 2>/dev/null)
	$(grep -q '^#define HAVE_VERBS 1' "$bld/config.h" && pkg-config --libs libibverbs 2>/dev/null) -lm -ldl -lpthread"
slurm_cflags="${SLURM_CPPFLAGS:-}"

# the library as the CLI links it, and the trainer's readers; comm_rdv.c is compiled into fuzz_rdv
# (node_hwloc_dl.c is the plugin's stand-in for libhwloc, not part of this build)
lib_srcs=$(ls "$src"/topology/common/*.c "$src"/topology/node/*.c "$src"/topology/planner/*.c 2>/dev/null |
	grep -v '/node_hwloc_dl\.c$')
trainer_srcs="$src/trainer/driver/data.c $src/trainer/driver/ckpt.c $src/trainer/driver/train_io.c"
comm_srcs=$(ls "$src"/trainer/comm/comm*.c | grep -v '/comm_rdv\.c$')
objs() { # objs SRC... -> object paths (compiled when older than their source)
	for s in "$@"; do
		o="$work/obj/$(echo "${s#$src/}" | tr / _).o"
		if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ "$bld/config.h" -nt "$o" ]; then
			# shellcheck disable=SC2086
			"$cc" $cflags -c "$s" -o "$o" 2>"$o.log" || { cat "$o.log" >&2; return 1; }
		fi
		echo "$o"
	done
}
lib_o=$(objs $lib_srcs) || { say "library does not build with $cc"; exit 1; }
tr_o=$(objs $trainer_srcs) || exit 1
comm_o=$(objs $comm_srcs) || exit 1

build() { # build TARGET -> $work/fuzz_TARGET
	local t=$1 extra="" deps=""
	case $t in
	spec | hostlist | domains | hwloc_xml | nccl_xml) deps=$lib_o ;;
	plugstack) deps=$lib_o extra=$slurm_cflags ;;
	shard | ckpt) deps=$tr_o ;;
	rdv) deps=$comm_o ;;
	*) say "unknown target $t (valid: $all)"; return 1 ;;
	esac
	# shellcheck disable=SC2086
	"$cc" $cflags $extra "$src/tests/fuzz/fuzz_$t.c" $deps $ldflags -o "$work/fuzz_$t" 2>"$work/fuzz_$t.log" ||
		{ cat "$work/fuzz_$t.log" >&2; return 1; }
}

# the plugin's parser needs Slurm's spank.h, as the plugin does
have_spank=no
echo '#include <slurm/spank.h>' | "$cc" $slurm_cflags -E -x c - >/dev/null 2>&1 && have_spank=yes

n=0 failed=0
for t in $targets; do
	n=$((n + 1))
	if [ "$t" = plugstack ] && [ $have_spank = no ]; then
		[ $tap = 1 ] && echo "ok $n # SKIP fuzz_plugstack: no slurm/spank.h" || say "fuzz_plugstack skipped: no slurm/spank.h"
		continue
	fi
	if ! build "$t"; then
		failed=$((failed + 1))
		[ $tap = 1 ] && echo "not ok $n - fuzz_$t builds with $cc"
		continue
	fi
	seeds=""
	[ -d "$src/tests/fuzz/corpus/$t" ] && seeds="$src/tests/fuzz/corpus/$t" # hwloc_xml seeds only from fixtures
	case $t in
	hwloc_xml) seeds="$seeds $src/tests/fixtures/hwloc" ;;
	nccl_xml) seeds="$seeds $src/tests/fixtures/nccl" ;;
	esac
	maxlen=""
	case $t in
	hwloc_xml | nccl_xml) ;;       # as large as the largest fixture
	*) maxlen=-max_len=16384 ;;    # far beyond any real argument, map, message; shards stay small
	esac
	mkdir -p "$work/corpus/$t"
	rm -f "$work/$t"-crash-* "$work/$t"-leak-* "$work/$t"-timeout-* "$work/$t"-oom-*
	log="$work/fuzz_$t.run.log"
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: an input that makes a
	# reader take 1 GiB is a bug (the caps are far lower); leaks fail the run (LeakSanitizer)
	# shellcheck disable=SC2086
	(cd "$work" && ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"./fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1536 -malloc_limit_mb=1024 \
		-seed="${FUZZ_SEED:-0}" $maxlen -print_final_stats=1 -artifact_prefix="$work/$t-" \
		"$work/corpus/$t" $seeds) >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	units=$(ls "$work/corpus/$t" | wc -l)
	line="fuzz_$t: ${execs:-0} executions in ${secs}s, coverage ${cov:-?} edges, ${ft:-?} features, corpus +$units"
	if [ $rc -eq 0 ]; then
		[ $tap = 1 ] && echo "ok $n - $line" || echo "$line"
	else
		failed=$((failed + 1))
		art=$(ls "$work/$t"-* 2>/dev/null | head -1)
		if [ $tap = 1 ]; then
			echo "not ok $n - $line: exit $rc, input ${art:-none}"
			grep -m1 -E 'ERROR: |SUMMARY: |runtime error' "$log" | sed 's/^/#   /'
			tail -n 25 "$log" | sed 's/^/#   /'
		else
			echo "$line: FAILED (exit $rc), input ${art:-none}, log $log" >&2
			grep -m3 -E 'ERROR: |SUMMARY: |runtime error' "$log" >&2
		fi
	fi
done
[ $tap = 1 ] && echo "1..$n"
[ $failed -eq 0 ]
