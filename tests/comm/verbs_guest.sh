#!/bin/bash
# verbs_guest.sh - the verbs transport on a real verbs device: boots the Soft-RoCE guest
# (tests/rdma/rig.sh) and runs itself inside it with the host's build, where rxe0 is up:
#   - test_comm's verbs cases: alltoallv (fixed and random sizes per peer: 0, 1 byte, unaligned,
#     several times the receive window), alltoall, allgather, allreduce, split, barriers, with 2, 3
#     and 4 ranks; shm+verbs and auto over pretend nodes; a killed and a silent rank; size mismatch;
#   - setup and teardown 200 times in one process leaves no verbs resource behind;
#   - EP equivalence: moe-launch --nproc 2|4 --spec ep=2|4 --transport verbs gives the loss and the
#     routing of the same run over shm;
#   - rail mode over shm+verbs on pretend nodes (test_comm's verbs-rail cases: every cross-node byte
#     went local rank i -> local rank i, per rank; the trainer: rail and direct give the same loss bits);
#   - a bad device, port or MOE_IB_GID_INDEX: one line on every rank, non-zero exit.
# Skips (with the reason) where the rig cannot run: not root, no qemu, no way to fetch the kernel.
. "$top_srcdir/tests/tap.sh"
TC=$top_builddir/tests/comm/test_comm
LEAK=$top_builddir/tests/comm/test_verbs_leak
TRAIN=$top_builddir/trainer/driver/moe-train
ML=$top_builddir/launcher/moe-launch
PEER=$top_builddir/tests/launcher/comm_peer
RIG=$top_srcdir/tests/rdma/rig.sh
grep -q '^#define HAVE_VERBS 1' "$top_builddir/config.h" || skip_all "built without libibverbs (--with-verbs)"

if [ -z "${MOE_RDMA_GUEST:-}" ]; then
	why=$(bash "$RIG" check) || skip_all "Soft-RoCE guest cannot run here: $why"
	# the guest sees the host's files at the same paths; the build tree must be in the share
	cd "$top_builddir" || exit 1
	MOE_RDMA_SHARE=$(cd "$top_srcdir" && git rev-parse --show-toplevel 2>/dev/null || pwd -P)
	case "$(pwd -P)/" in "$MOE_RDMA_SHARE"/*) ;; *) MOE_RDMA_SHARE=$(pwd -P) ;; esac
	export MOE_RDMA_SHARE
	exec bash "$RIG" run env top_srcdir="$top_srcdir" top_builddir="$top_builddir" bash "$top_srcdir/tests/comm/verbs_guest.sh"
fi

# ---- inside the guest
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# guest $(hostname), rxe0 GID index $RXE_GID_INDEX, $(nproc) CPUs"
res() { rdma res show 2>/dev/null | grep -o 'qp [0-9]* cm_id [0-9]* mr [0-9]*\|pd [0-9]* cq [0-9]*' | tr '\n' ' '; }
base=$(res)

# test_comm's verbs cases print their own TAP lines: renumber them into this script's plan
"$TC" verbs > "$tmp/tc.out" 2>&1
while read -r line; do
	case $line in
	"ok "*) _tap_n=$((_tap_n + 1)); echo "ok $_tap_n ${line#ok [0-9]* }" ;;
	"not ok "*) _tap_n=$((_tap_n + 1)); _tap_fail=$((_tap_fail + 1)); echo "not ok $_tap_n ${line#not ok [0-9]* }" ;;
	"#"*) echo "$line" ;;
	esac
done < "$tmp/tc.out"
grep -q '^ok\|^not ok' "$tmp/tc.out" || { echo "# test_comm said:"; sed 's/^/#   /' "$tmp/tc.out" | tail -20; ok "test_comm verbs cases ran" false; }
is "$(res)" "$base" "no queue pair, memory region, PD or CQ left after the test_comm cases"

"$LEAK" > "$tmp/leak.out" 2>&1
is "$?" 0 "200 setups and teardowns of a 2-rank verbs world in one process: $(tail -1 "$tmp/leak.out")"

# bad device / port / GID index: the ranks say so in one line each, nothing hangs.  moe-launch stops
# the other ranks once one has failed, so a slower rank may be stopped before it speaks: at least one.
bad() { # bad DESC PATTERN ENV...
	local desc=$1 pat=$2; shift 2
	env "$@" timeout 60 "$ML" --nproc 2 --spec off --transport verbs -- "$PEER" > "$tmp/bad.out" 2> "$tmp/bad.err"
	local rc=$?
	ok "$desc: non-zero exit ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
	ok "$desc: one line naming it ($(grep -m1 "$pat" "$tmp/bad.err" | head -c 200))" \
		test "$(grep -c "$pat" "$tmp/bad.err")" -ge 1
}
bad "MOE_IB_DEVICE=mlx5_9" "no RDMA device 'mlx5_9' (rxe0 port 1 ACTIVE)" MOE_IB_DEVICE=mlx5_9
bad "MOE_IB_DEVICE=rxe0:2" "RDMA device 'rxe0' has no port 2 (rxe0 port 1 ACTIVE)" MOE_IB_DEVICE=rxe0:2
bad "MOE_IB_GID_INDEX=77" "MOE_IB_GID_INDEX=77: rxe0 port 1 has no GID at index 77 (valid: .*$RXE_GID_INDEX ::ffff:127.1.1.1 (RoCE v2)" \
	MOE_IB_GID_INDEX=77
# the plan's rail (moe-launch sets MOE_NET_DEVICES itself: set it between the launcher and the rank)
MOE_IB_DEVICE= timeout 60 "$ML" --nproc 2 --spec off --transport verbs -- \
	sh -c 'MOE_NET_DEVICES=mlx5_3:1 exec "$0"' "$PEER" > "$tmp/bad.out" 2> "$tmp/bad.err"
rc=$?
ok "MOE_NET_DEVICES=mlx5_3:1 from the plan: non-zero exit ($rc)" test "$rc" -ne 0 -a "$rc" -ne 124
ok "MOE_NET_DEVICES names the device when MOE_IB_DEVICE is unset" \
	test "$(grep -c "no RDMA device 'mlx5_3' (rxe0 port 1 ACTIVE)" "$tmp/bad.err")" -ge 1

# verbose: each rank logs once what it uses
MOE_COMM_VERBOSE=1 "$ML" --nproc 2 --spec off --transport verbs -- "$PEER" > "$tmp/v.out" 2> "$tmp/v.err"
is "$?:$(grep -c "verbs: rxe0 port 1, GID index $RXE_GID_INDEX (::ffff:127.1.1.1), TC 0 SL 0, MTU 4096" "$tmp/v.err")" "0:2" \
	"MOE_COMM_VERBOSE=1: one line per rank with device, port, GID index and MTU"
is "$(grep -c 'kind verbs sum 3 a2a ok' "$tmp/v.out")" 2 "comm_peer over verbs under moe-launch: allreduce and alltoallv right"

# EP equivalence over verbs against shm, in this guest (a few steps: emulation is slow)
cat "$top_srcdir"/trainer/*/*.c > "$tmp/data.txt"
"$TRAIN" prepare "$tmp/data.txt" "$tmp/data.bin" > /dev/null || { echo "Bail out! moe-train prepare failed"; exit 1; }
args=(--data "$tmp/data.bin" --dim 32 --heads 2 --layers 2 --dense-layers 1 --ffn 64 --expert-ffn 32
      --experts 8 --top-k 2 --groups 4 --group-topk 2 --route-scale 2.5 --bias-gamma 0.01
      --seq-len 16 --global-batch 8 --steps 4 --seed 3 --threads 1 --quiet)
field() { grep -o "\"$1\":\(\[[^]]*\]\|[^,}]*\)" "$2" | cut -d: -f2-; }
for run in "2 ep=2" "4 ep=4"; do
	set -- $run
	for t in shm verbs; do
		"$ML" --nproc "$1" --spec "$2,experts=8" --transport $t -- "$TRAIN" "${args[@]}" \
			--metrics "$tmp/$1-$t.jsonl" > "$tmp/$1-$t.out" 2>&1
		rc=$?
		is "$rc" 0 "nproc $1 $2 over $t: moe-launch + moe-train exit 0"
		[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/$1-$t.out" | tail -5
	done
	ok "nproc $1 $2: the trainer ran over verbs" grep -q "transport verbs" "$tmp/$1-verbs.out"
	is "$(wc -l < "$tmp/$1-verbs.jsonl")" 4 "nproc $1 $2 over verbs: 4 steps of metrics"
	field loss "$tmp/$1-shm.jsonl" > "$tmp/l.shm"
	field loss "$tmp/$1-verbs.jsonl" > "$tmp/l.verbs"
	is "$(paste "$tmp/l.shm" "$tmp/l.verbs" | awk 'NF == 2' | wc -l)" 4 "nproc $1 $2: a loss for each of 4 steps from both runs"
	worst=$(paste "$tmp/l.shm" "$tmp/l.verbs" |
		awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r } END { printf "%.2e", w + 0 }')
	ok "nproc $1 $2: verbs loss within 1e-5 relative of shm at every step (worst $worst)" \
		awk -v w="$worst" 'BEGIN { exit !(w + 0 <= 1e-5) }'
	is "$(field max_load_over_mean "$tmp/$1-verbs.jsonl" | md5sum)" "$(field max_load_over_mean "$tmp/$1-shm.jsonl" | md5sum)" \
		"nproc $1 $2: same routing (max/mean expert load) at every step"
	if grep -q '"load":\[' "$tmp/$1-shm.jsonl"; then
		is "$(field load "$tmp/$1-verbs.jsonl" | md5sum)" "$(field load "$tmp/$1-shm.jsonl" | md5sum)" \
			"nproc $1 $2: same per-expert routing counts at every step"
	fi
done
a2a=$(field a2a_bytes "$tmp/4-verbs.jsonl" | head -1)
ok "EP=4 over verbs moved expert rows between ranks (step 1: $a2a bytes)" test "${a2a:-0}" -gt 0

# rail mode over shm+verbs: 4 ranks on two pretend nodes (2 each; rendezvous with the pretend names),
# rail and direct give the same loss bits; in rail mode every cross-node byte stayed on its rail and
# deduplication (dispatch) and per-node sums (combine) kept bytes off the network.  test_comm's
# verbs-rail cases above checked the same per rank, byte for byte.
pretend='unset MOE_COMM_PEERS MOE_COMM_FD; MOE_COMM_HOST=node$((MOE_RANK / 2)) exec "$0" "$@"'
for mode in rail direct; do
	MOE_A2A=$mode "$ML" --nproc 4 --spec ep=4,experts=8 --transport shm+verbs -- sh -c "$pretend" "$TRAIN" \
		"${args[@]}" --top-k 4 --metrics "$tmp/rail-$mode.jsonl" > "$tmp/rail-$mode.out" 2>&1
	rc=$?
	is "$rc $(wc -l < "$tmp/rail-$mode.jsonl")" "0 4" "MOE_A2A=$mode over shm+verbs on 2 pretend nodes: 4 steps"
	[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/rail-$mode.out" | tail -5
	ok "MOE_A2A=$mode: transport shm+verbs, a2a $mode" grep -q "transport shm+verbs), .*a2a $mode" "$tmp/rail-$mode.out"
done
is "$(field loss "$tmp/rail-rail.jsonl" | md5sum)" "$(field loss "$tmp/rail-direct.jsonl" | md5sum)" \
	"shm+verbs: rail and direct give the same loss bits at all 4 steps"
is "$(field a2a_rail_fraction "$tmp/rail-rail.jsonl" | sort -u)" "1.000000" "shm+verbs rail: every cross-node byte on its rail"
ok "shm+verbs rail: deduplication kept bytes off the network at every step" \
	awk '{ if ($1 <= 0) bad++ } END { exit bad > 0 || NR != 4 }' <(field a2a_dedup_bytes "$tmp/rail-rail.jsonl")
is "$(res)" "$base" "no verbs resource left once every process exited"
done_testing
