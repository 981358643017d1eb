#!/bin/bash
# cli.sh - moe-train's command line: --help lists every flag, and each kind of bad input gets exactly one
# line on stderr naming the flag (or file) and the valid values, exit 2, and nothing written.
. "$srcdir/tap.sh"
bin="$top_builddir/trainer/driver/moe-train"
[ -x "$bin" ] || skip_all "moe-train not built"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1

"$bin" --help > "$tmp/help"
is "$?" 0 "--help exits 0"
ok "--version prints the version" test -n "$("$bin" --version | grep '^moe-train (moetopo) [0-9][0-9.]*$')"
# every flag the parser accepts is in --help: each one, given a bad value, must be refused by name, and
# each name appears in the help text
flags=$(sed -n 's/^  \(--[a-z0-9-]*\).*/\1/p' "$tmp/help")
is "$(echo "$flags" | wc -l)" 44 "--help lists 44 flags"
missing=""
for f in --data --steps --seed --metrics --batch --global-batch --dim --layers --experts --top-k --router-skew \
	--lr --warmup --clip --ckpt-dir --resume --threads --seq-len --heads --expert-ffn --group-topk --bias-gamma \
	--device --dtype --mfu-peak --cuda-graph --device-comm --a2a-timing; do
	echo "$flags" | grep -qx -- "$f" || missing="$missing $f"
done
is "$missing" "" "the flags the issue and the docs name are all in --help"

"$bin" prepare /usr/share/common-licenses/GPL-3 "$tmp/d.bin" > /dev/null
is "$?" 0 "prepare"

# check ARGS... : exit 2, one line, containing WANT
refuse() {
	local want=$1; shift
	"$bin" "$@" > "$tmp/out" 2> "$tmp/err"
	local rc=$?
	ok "$* -> exit 2, one line with '$want'" \
		test $rc = 2 -a "$(wc -l < "$tmp/err")" = 1 -a -n "$(grep -F -- "$want" "$tmp/err")" -a ! -s "$tmp/out"
	[ $rc = 2 ] || sed 's/^/#   /' "$tmp/err"
}
d=(--data "$tmp/d.bin")
refuse "unknown option --bogus" "${d[@]}" --bogus 1
refuse "--dim 'abc': not a whole number, valid 4..65536" "${d[@]}" --dim abc
refuse "--steps '0': out of range, valid 1..1e+12" "${d[@]}" --steps 0
refuse "--lr 'x': not a number" "${d[@]}" --lr x
refuse "--lr '-1': out of range" "${d[@]}" --lr=-1
refuse "--seed '-3': not a whole number" "${d[@]}" --seed -3
refuse "--steps needs a value" "${d[@]}" --steps
refuse "--resume takes no value" "${d[@]}" --resume=yes
refuse "--transport 'ib': valid auto, shm, tcp" "${d[@]}" --transport ib
refuse "--data FILES is required" --steps 3
refuse "--resume needs --ckpt-dir" "${d[@]}" --resume
refuse "--min-lr 0.5 is above --lr 0.1" "${d[@]}" --lr 0.1 --min-lr 0.5
refuse "give --batch (per rank) or --global-batch" "${d[@]}" --batch 2 --global-batch 4
refuse "unexpected argument 'train'" train "${d[@]}"
refuse "$tmp/none.bin" --data "$tmp/none.bin"
refuse "is not a token shard" --data /usr/share/common-licenses/GPL-3
refuse "fewer than one sequence" "${d[@]}" --seq-len 60000
refuse "--device 'gpu': valid cpu, cuda" "${d[@]}" --device gpu
refuse "--dtype 'fp16': valid fp32, bf16" "${d[@]}" --dtype fp16
refuse "--a2a-timing 'barrier': valid off, sync" "${d[@]}" --a2a-timing barrier
refuse "--dtype bf16 needs --device cuda" "${d[@]}" --dtype bf16 --device cpu
# --device-comm: the kinds, from the flag or MOE_DEVICE_COMM; cuda-ipc/nccl need device memory (built) or
# are not in the build
refuse "--device-comm 'shm': valid staged, cuda-ipc, nccl" "${d[@]}" --device-comm shm
MOE_DEVICE_COMM=ipc refuse "MOE_DEVICE_COMM 'ipc': valid staged, cuda-ipc, nccl" "${d[@]}"
if grep -q '^devices in this build: cpu, cuda$' "$tmp/help"; then
	refuse "--device-comm cuda-ipc moves device memory: it needs --device cuda (this run is on cpu); valid with --device cpu: staged" \
		"${d[@]}" --device cpu --device-comm cuda-ipc --steps 1 --dim 16 --heads 2 --layers 1 --seq-len 8
	MOE_DEVICE_COMM=nccl refuse "--device-comm nccl moves device memory: it needs --device cuda" \
		"${d[@]}" --device cpu --steps 1 --dim 16 --heads 2 --layers 1 --seq-len 8
else
	refuse "--device-comm nccl: not in this build (configure found no CUDA with NCCL: configure --with-cuda); valid here: staged" \
		"${d[@]}" --device-comm nccl
	MOE_DEVICE_COMM=cuda-ipc refuse "MOE_DEVICE_COMM cuda-ipc: not in this build" "${d[@]}"
fi
"$bin" "${d[@]}" --device cpu --device-comm staged --steps 1 --dim 16 --heads 2 --layers 1 --seq-len 8 --quiet > /dev/null 2> "$tmp/err"
ok "--device-comm staged with --device cpu runs" test $? = 0 -a ! -s "$tmp/err"
# --device cuda where it cannot run: not built, or (built, on a machine without an NVIDIA driver) no GPU
if grep -q '^devices in this build: cpu, cuda$' "$tmp/help"; then
	# moe-train itself links no CUDA library: GPU runs continue in moe-train-cuda beside it
	is "$(ldd "$bin" | grep -cE 'lib(cudart|cublas|cublasLt|nccl)\.so')" 0 "moe-train links no CUDA library (a CUDA build)"
	cp "$bin" "$tmp/moe-train"
	"$tmp/moe-train" "${d[@]}" --device cuda --steps 1 > "$tmp/out" 2> "$tmp/err"
	ok "--device cuda with moe-train-cuda neither beside moe-train nor installed: exit 1, one line naming both places" \
		test $? = 1 -a "$(wc -l < "$tmp/err")" = 1 -a -n "$(grep -F "moe-train-cuda, which is in neither $tmp/moe-train-cuda nor" "$tmp/err")"
	if [ ! -e /dev/nvidiactl ]; then
		refuse "--device cuda: no GPU" "${d[@]}" --device cuda --steps 1
		CUDA_VISIBLE_DEVICES=0 "$bin" "${d[@]}" --steps 1 --dim 16 --heads 2 --layers 1 --seq-len 8 --quiet \
			> "$tmp/out" 2> "$tmp/err"
		ok "a GPU named by CUDA_VISIBLE_DEVICES but no driver: one line, then the run goes on on the CPU" \
			test $? = 0 -a "$(wc -l < "$tmp/err")" = 1 -a -n "$(grep -F "running on the CPU" "$tmp/err")" -a \
			-n "$(grep -F "device cpu (host CPU)" "$tmp/out")"
	fi
else
	refuse "the CUDA backend is not built" "${d[@]}" --device cuda
fi
# --cuda-graph: only on the GPU, only at EP size 1, only in a CUDA build
if grep -q '^devices in this build: cpu, cuda$' "$tmp/help"; then
	refuse "--cuda-graph needs --device cuda (got --device cpu)" "${d[@]}" --cuda-graph --device cpu
	cvd=${CUDA_VISIBLE_DEVICES-unset}
	unset CUDA_VISIBLE_DEVICES
	refuse "--cuda-graph needs the GPU, but CUDA_VISIBLE_DEVICES names none" "${d[@]}" --cuda-graph --steps 1
	[ "$cvd" = unset ] || export CUDA_VISIBLE_DEVICES=$cvd
else
	refuse "--cuda-graph: the CUDA backend is not built" "${d[@]}" --cuda-graph --device cuda
fi
MOE_EXPERTS=16 "$bin" "${d[@]}" --experts 8 > /dev/null 2> "$tmp/err"
ok "--experts against MOE_EXPERTS: exit 2, one line" test $? = 2 -a "$(wc -l < "$tmp/err")" = 1 -a \
	-n "$(grep -F "experts 8 disagrees with the launch plan's MOE_EXPERTS=16" "$tmp/err")"
MOE_EP_RANK=x "$bin" "${d[@]}" > /dev/null 2> "$tmp/err"
ok "a malformed MOE_EP_RANK: exit 2 naming it" test $? = 2 -a -n "$(grep -F "MOE_EP_RANK='x'" "$tmp/err")"
"$bin" "${d[@]}" --heads 5 --steps 1 > /dev/null 2> "$tmp/err"
ok "a model shape the model refuses (--heads 5 with --dim 128): exit 2, one line" test $? = 2 -a "$(wc -l < "$tmp/err")" = 1
sed 's/^/#   /' "$tmp/err"
"$bin" prepare "$tmp/none.txt" "$tmp/x.bin" 2> "$tmp/err"
ok "prepare of a missing file: exit 2 naming it, no output" test $? = 2 -a -n "$(grep -F none.txt "$tmp/err")" -a ! -e "$tmp/x.bin"
"$bin" prepare "$tmp/d.bin" 2> "$tmp/err"
ok "prepare with one argument: exit 2" test $? = 2 -a -n "$(grep -F "needs IN.txt OUT.bin" "$tmp/err")"

# under moe-launch bad input seen by one rank only (rank 0 opens --metrics) is reported by that rank
# and the job exits 2
ML="$top_builddir/launcher/moe-launch"
if [ -x "$ML" ]; then
	"$ML" --timeout 30 --nproc 2 --spec ep=2,experts=8 -- "$bin" "${d[@]}" --steps 2 --metrics "$tmp/no/m.jsonl" \
		> "$tmp/out" 2> "$tmp/err"
	is "$?" 2 "2 ranks, rank 0 cannot open --metrics: exit 2"
	ok "with the line naming the file" test -n "$(grep -F -- "--metrics $tmp/no/m.jsonl: No such file" "$tmp/err")"
	sed 's/^/#   /' "$tmp/err"
	"$ML" --nproc 2 --spec ep=2,experts=8 -- "$bin" "${d[@]}" --steps 2 --global-batch 3 > "$tmp/out" 2> "$tmp/err"
	is "$?" 2 "--global-batch 3 over 2 ranks: exit 2"
	ok "naming the valid values" grep -q -- "--global-batch 3 does not divide over 2 ranks; valid: multiples of 2" "$tmp/err"
	if grep -q '^devices in this build: cpu, cuda$' "$tmp/help"; then
		"$ML" --nproc 2 --spec ep=2,experts=8 -- "$bin" "${d[@]}" --steps 2 --device cuda --cuda-graph > "$tmp/out" 2> "$tmp/err"
		is "$?" 2 "--cuda-graph at EP size 2: exit 2"
		ok "one line naming EP size 1 as the valid choice" test "$(grep -c -- "--cuda-graph needs EP size 1, this run has EP size 2" "$tmp/err")" = 1
		sed 's/^/#   /' "$tmp/err"
	fi
fi
done_testing
