#!/bin/bash
# run-all.sh - every check that needs an NVIDIA GPU, in one run of about 8 minutes, results under $OUT
# (default ./gpu-results): build (no network; hwloc and Slurm not needed for the trainer's parts), the
# CUDA op tests fp32 + bf16, compute-sanitizer memcheck on them, one whole step with every gradient,
# moe-train end to end on the GPU (50 steps vs CPU, bf16, EP=2 on one GPU, checkpoints across devices),
# the device communicators (cuda-ipc 2-4 processes on one GPU vs staging bit for bit, nccl at world 1),
# the benchmarks (cuda-ipc a2a vs cudaMemcpy, MoE layer vs PyTorch eager, grouped vs dense GEMM, trainer
# tokens/s and MFU at two sizes) and `moetopo show` live (the NVML path).  doc/gpu.md says what to expect.
# Exit 0 when every test passed (benchmarks only report); summary in $OUT/summary.txt.
#
# Where a command may run only so long (a lent GPU machine: 10 minutes a call), MOE_GPU_BUDGET (seconds,
# default 540) bounds the whole run: a stage that no longer fits is logged NOT RUN and counts as failed.
# MOE_GPU_STAGES (an extended regex over stage names) runs only those stages, so a second call can run
# what the first did not; the build (MOE_GPU_BUILD, default build-gpu in the source tree) is incremental.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$PWD/gpu-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
jobs=$(nproc)
log() { echo "[$(date -u +%T)] $*" | tee -a "$out/summary.txt"; }
budget=${MOE_GPU_BUDGET:-540}
stage() { # stage NAME SECONDS CMD...: output to $out/NAME.log, one summary line
	local name=$1 secs=$2; shift 2
	local t0=$SECONDS left=$((budget - SECONDS))
	case $name in build-*) ;; *) [[ $name =~ ${MOE_GPU_STAGES:-.} ]] || { log "$name: skipped (MOE_GPU_STAGES)"; return 0; } ;; esac
	if [ "$left" -lt "$secs" ] && [ "$left" -lt 60 ]; then
		log "$name: NOT RUN (MOE_GPU_BUDGET=$budget s spent; rerun with MOE_GPU_STAGES='$name|...')"
		return 1
	fi
	[ "$left" -lt "$secs" ] && secs=$left
	# a function of this script (the builds) runs in a new instance of it: timeout runs only programs
	if declare -F "$1" > /dev/null; then set -- env OUT="$out" bash "$self" --fn "$@"; fi
	timeout "$secs" "$@" > "$out/$name.log" 2>&1
	local rc=$?
	local tap=""
	if grep -q '^\(not \)\?ok ' "$out/$name.log"; then
		tap=" ($(grep -c '^ok ' "$out/$name.log") ok, $(grep -c '^not ok ' "$out/$name.log") not ok)"
	fi
	grep -q '^1\.\.0 # SKIP' "$out/$name.log" && tap=" (SKIPPED: $(sed -n 's/^1\.\.0 # SKIP //p' "$out/$name.log"))"
	log "$name: exit $rc$tap, $((SECONDS - t0)) s"
	[ $rc -eq 0 ] && ! grep -q '^not ok ' "$out/$name.log" && ! grep -q '^1\.\.0 # SKIP' "$out/$name.log"
}
fails=0
self=$top/tests/gpu/run-all.sh
if [ "${1:-}" != --fn ]; then
	: > "$out/summary.txt"
	log "moetopo GPU run from $top"
	{ date -u; uname -a; nvidia-smi 2>&1; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
	  command -v nvcc && nvcc --version; /usr/bin/python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1
	  command -v compute-sanitizer; } > "$out/env.txt" 2>&1
fi
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")}
NVCC=$CUDA_HOME/bin/nvcc
CUDA_LIB=$CUDA_HOME/lib64
[ -d "$CUDA_HOME/targets/x86_64-linux/lib" ] && CUDA_LIB=$CUDA_HOME/targets/x86_64-linux/lib
SAN=$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")

# ---- build: the whole tree with autotools where hwloc is there (gives moe-launch and moetopo too),
# else the trainer's parts directly with gcc + nvcc
B=${MOE_GPU_BUILD:-$top/build-gpu}
build_autotools() {
	pkg-config --exists hwloc 2>/dev/null || { echo "no hwloc (pkg-config hwloc)"; return 1; }
	[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi) || return 1
	mkdir -p "$B" && cd "$B" && { [ -f Makefile ] || "$top/configure" --with-cuda="$CUDA_HOME" CUDA_ARCHS="${CUDA_ARCHS:-90}"; } &&
		make -j"$jobs" && make -C tests -j"$jobs" cuda/test_cuda_ops cuda/test_cuda_step bench/moe_layer_gpu \
			cuda/test_cuda_grouped_dev cuda/test_graph_path comm/test_devcomm
}
build_direct() {
	mkdir -p "$B/o" "$B/trainer/driver" "$B/tests/cuda" "$B/tests/bench" && cd "$B" || return 1
	echo "#define PACKAGE_VERSION \"$(sed -n 's/^AC_INIT(\[moetopo\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")\"" > config.h
	local inc="-I$top/trainer/comm -I$top/trainer/model -I$top/trainer/cpu -I$top/trainer/driver -I$top/tests"
	local cf="-std=gnu11 -O2 -fopenmp -include $B/config.h -DTR_WITH_CUDA=1 -DTR_DEVCOMM_CUDA -I$CUDA_HOME/include $inc"
	# the globs expand in $top
	(cd "$top" && printf '%s\n' trainer/comm/comm.c trainer/comm/comm_self.c trainer/comm/comm_tcp.c trainer/comm/comm_shm.c \
		trainer/comm/comm_hybrid.c trainer/comm/comm_rdv.c trainer/comm/comm_rail.c trainer/comm/comm_rail_sum.c \
		trainer/comm/comm_verbs_dev.c trainer/comm/devcomm*.c trainer/cpu/*.c trainer/model/*.c \
		trainer/driver/data.c trainer/driver/optim.c trainer/driver/ckpt.c trainer/driver/train_io.c) | xargs -P "$jobs" -I{} sh -c \
		'gcc '"$cf"' -c "'"$top"'/{}" -o "'"$B"'/o/$(echo {} | tr / _).o"' || return 1
	ls "$top"/trainer/cuda/*.cu "$top"/trainer/comm/*.cu | xargs -P "$jobs" -I{} sh -c '"'"$NVCC"'" -std=c++17 -O2 -fmad=false \
		-gencode arch=compute_90,code=sm_90 -I'"$top"'/trainer/model -I'"$top"'/trainer/driver -I'"$top"'/trainer/cuda -I'"$top"'/trainer/comm \
		-Xcompiler -fPIC -c {} -o "'"$B"'/o/cuda_$(basename {} .cu).o"' || return 1
	local ld=(-fopenmp "$B"/o/*.o -L"$CUDA_LIB" -Wl,-rpath,"$CUDA_LIB" -lnccl -lcublasLt -lcublas -lcudart -lstdc++ -lm -lrt -lpthread)
	gcc $cf -o trainer/driver/moe-train "$top"/trainer/driver/{train_main,train_ckpt,train_opts,train_graph,metrics}.c "${ld[@]}" &&
	gcc $cf -o tests/cuda/test_cuda_grouped_dev "$top/tests/cuda/test_cuda_grouped_dev.c" "${ld[@]}" &&
	gcc $cf -o tests/cuda/test_graph_path "$top/tests/cuda/test_graph_path.c" "${ld[@]}" &&
	gcc $cf -o tests/cuda/test_cuda_ops "$top/tests/cuda/test_cuda_ops.c" "${ld[@]}" &&
	gcc $cf -o tests/cuda/test_cuda_step "$top/tests/cuda/test_cuda_step.c" "${ld[@]}" &&
	gcc $cf -o tests/bench/moe_layer_gpu "$top/tests/bench/moe_layer_gpu.c" "${ld[@]}" &&
	mkdir -p tests/comm && gcc $cf -o tests/comm/test_devcomm "$top/tests/comm/test_devcomm.c" "${ld[@]}"
}
[ "${1:-}" = --fn ] && { shift; "$@"; exit; }   # stage's second instance: run that function only
if stage build-autotools 420 build_autotools; then
	how=autotools
else
	B=$B-direct
	export MOE_GPU_BUILD=$B   # for the instance that runs build_direct
	stage build-direct 300 build_direct || { log "build failed: see build-*.log"; exit 1; }
	how=direct
fi
log "built ($how) in $B"
export top_srcdir=$top top_builddir=$B srcdir=$top/tests
cd "$out"

# ---- tests
stage ops-fp32 120 "$B/tests/cuda/test_cuda_ops" || fails=$((fails + 1))
stage ops-bf16 120 "$B/tests/cuda/test_cuda_ops" bf16 || fails=$((fails + 1))
if [ -x "$SAN" ]; then
	stage memcheck-ops 300 "$SAN" --tool memcheck --leak-check full --error-exitcode 3 "$B/tests/cuda/test_cuda_ops" ||
		fails=$((fails + 1))
else
	log "memcheck-ops: NOT RUN (no compute-sanitizer)"
fi
stage step 120 "$B/tests/cuda/test_cuda_step" || fails=$((fails + 1))
# --cuda-graph: the graph-mode ops against the CPU (and under memcheck), captured step against eager
stage grouped-dev 120 "$B/tests/cuda/test_cuda_grouped_dev" || fails=$((fails + 1))
[ -x "$SAN" ] && { stage memcheck-grouped-dev 300 "$SAN" --tool memcheck --leak-check full --error-exitcode 3 \
	"$B/tests/cuda/test_cuda_grouped_dev" || fails=$((fails + 1)); }
stage graph-path 120 "$B/tests/cuda/test_graph_path" || fails=$((fails + 1))
stage train 420 bash "$top/tests/cuda/train_cuda.sh" || fails=$((fails + 1))
[ -x "$B/launcher/moe-launch" ] || log "train: EP=2 on one GPU NOT RUN (moe-launch needs the autotools build: no hwloc here)"
# device communicators: cuda-ipc between 2-4 processes on one GPU and nccl at world 1 against the host
# transports (transport level), then the trainer with --device-comm against staging
stage devcomm 180 "$B/tests/comm/test_devcomm" || fails=$((fails + 1))
stage devcomm-train 420 bash "$top/tests/cuda/devcomm_cuda.sh" || fails=$((fails + 1))

# ---- benchmarks (figures, not pass/fail)
stage bench-moe-layer 240 bash "$top/tests/bench/moe_layer_gpu.sh"
grep -h '^{' "$out/bench-moe-layer.log" > "$out/bench.jsonl" 2>/dev/null
grep -h 'speed-up' "$out/bench-moe-layer.log" | tee -a "$out/summary.txt"
stage bench-devcomm 120 bash "$top/tests/bench/devcomm.sh"
grep -h '^{' "$out/bench-devcomm.log" | tee -a "$out/bench.jsonl" "$out/summary.txt"
cat "$top"/trainer/*/*.c "$top"/trainer/*/*.h > "$out/data.txt"
"$B/trainer/driver/moe-train" prepare "$out/data.txt" "$out/data.bin" > /dev/null
small=(--dim 512 --heads 8 --layers 8 --dense-layers 1 --ffn 1408 --expert-ffn 352 --experts 32 --top-k 4 --seq-len 512 --batch 16)
large=(--dim 1024 --heads 16 --layers 12 --dense-layers 1 --ffn 2816 --expert-ffn 704 --experts 64 --top-k 6 --seq-len 1024 --batch 8)
for size in small large; do
	declare -n cfg=$size
	for dt in bf16 fp32; do
		stage "trainer-$size-$dt" 150 "$B/trainer/driver/moe-train" --data "$out/data.bin" "${cfg[@]}" --steps 20 --warmup 5 \
			--device cuda --dtype "$dt" --log-every 5 --metrics "$out/trainer-$size-$dt.jsonl"
		grep -h '^moe-train: device\|^done:' "$out/trainer-$size-$dt.log" | sed "s/^/  $size $dt: /" | tee -a "$out/summary.txt"
	done
done
# tokens/s with and without --cuda-graph (small model): the ratio from the two summary lines
tps() { sed -n 's/^done:.* \([0-9.]*\) tokens\/s.*/\1/p' "$1"; }
for dt in bf16 fp32; do
	stage "trainer-small-$dt-graph" 150 "$B/trainer/driver/moe-train" --data "$out/data.bin" "${small[@]}" --steps 20 --warmup 5 \
		--device cuda --dtype "$dt" --cuda-graph --log-every 5 --metrics "$out/trainer-small-$dt-graph.jsonl"
	a=$(tps "$out/trainer-small-$dt-graph.log"); b=$(tps "$out/trainer-small-$dt.log")
	log "  small $dt: --cuda-graph ${a:-?} tokens/s, without ${b:-?}: ratio $(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "?" }')"
done

# ---- moetopo show live: the first real run of the NVML path
if [ -x "$B/topology/cli/moetopo" ]; then
	stage moetopo-show 60 "$B/topology/cli/moetopo" show
	stage moetopo-show-json 60 "$B/topology/cli/moetopo" show --json
else
	log "moetopo show: NOT RUN (needs the autotools build, i.e. hwloc)"
fi
log "done: $fails failed test stage(s); logs in $out"
[ $fails -eq 0 ]
