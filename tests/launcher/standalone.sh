#!/bin/bash
# standalone.sh - moe-launch --nproc on this machine with real rank processes (comm_peer): the
# contract and binding each rank gets, both transports, failure propagation, exit codes, signals.
. "$top_srcdir/tests/tap.sh"
ML=$top_builddir/launcher/moe-launch
PEER=$top_builddir/tests/launcher/comm_peer
[ -x "$ML" ] && [ -x "$PEER" ] || skip_all "moe-launch or comm_peer not built"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ncpu=$(nproc)

# --help names every option the parser accepts (taken from the source's option table)
"$ML" --help > "$tmp/help"; rc=$?
is "$rc" 0 "--help exits 0"
missing=""
for opt in $(grep -o '{ "[a-z-]*", [a-z_]*_argument' "$top_srcdir/launcher/main.c" | cut -d'"' -f2); do
	grep -q -- "--$opt" "$tmp/help" || missing="$missing $opt"
done
is "$missing" "" "--help lists every long option"

# bad input: one line on stderr, exit 2, nothing started
"$ML" --nproc 2 --frobnicate -- "$PEER" > "$tmp/out" 2> "$tmp/err"; rc=$?
is "$rc:$(wc -l < "$tmp/err")" "2:1" "unknown option: exit 2 with one line"
"$ML" --nproc 2 --spec ep=banana -- "$PEER" > "$tmp/out" 2> "$tmp/err"; rc=$?
is "$rc:$(wc -l < "$tmp/err")" "2:1" "bad --spec value: exit 2 with one line ($(head -c 120 "$tmp/err"))"
"$ML" --nproc 2 --transport carrier-pigeon -- "$PEER" > "$tmp/out" 2> "$tmp/err"; rc=$?
ok "bad --transport names the valid choices" grep -q "auto, shm, tcp" "$tmp/err"
"$ML" --nproc 2 > "$tmp/out" 2> "$tmp/err"; rc=$?
is "$rc" 2 "no program: exit 2"

# the contract: every rank gets the plugin's variables from the planner
"$ML" --nproc 2 --spec ep=2,experts=4 --dry-run -- "$PEER" > "$tmp/dry"; rc=$?
is "$rc" 0 "--dry-run exits 0"
for v in MOE_RANK MOE_WORLD_SIZE MOE_LOCAL_RANK MOE_LOCAL_SIZE MOE_NODE_RANK MOE_EP_SIZE MOE_EP_RANK \
	MOE_EP_GROUP MOE_DP_RANK MOE_DOMAIN MOE_EXPERTS MOE_ROUTE_GROUPS MOE_MASTER_ADDR MOE_MASTER_PORT \
	MOE_COMM_FD MOE_COMM_PEERS MOE_COMM_JOB; do
	n=$(grep -c "^  $v=" "$tmp/dry")
	[ "$n" = 2 ] || echo "# $v set for $n ranks"
done > "$tmp/contract"
is "$(cat "$tmp/contract")" "" "every contract variable set for both ranks"
is "$(grep -c '^  MOE_EXPERTS=4$' "$tmp/dry")" 2 "MOE_EXPERTS from the spec"

# run: shm by default on one node, tcp on request; the sum 1+2 and the all-to-all check out
for t in auto tcp; do
	"$ML" --nproc 2 --spec ep=2,experts=4 --transport $t -- "$PEER" > "$tmp/run.$t" 2> "$tmp/err.$t"; rc=$?
	want=shm; [ $t = tcp ] && want=tcp
	is "$rc" 0 "--transport $t: exit 0 $(head -c 200 "$tmp/err.$t")"
	is "$(grep -c "kind $want sum 3 a2a ok" "$tmp/run.$t")" 2 "--transport $t: both ranks on $want, allreduce and alltoallv right"
done
# binding: each rank runs on exactly the CPUs the plan gave it (MOE_CPUS)
bound=$(awk '{ for (i = 1; i < NF; i++) { if ($i == "cpus") c = $(i+1); if ($i == "moe_cpus") m = $(i+1) } }
	{ print (c == m && m != "-") ? "same" : "differ:" c "/" m }' "$tmp/run.auto" | sort -u)
is "$bound" "same" "each rank's CPU affinity is its planned MOE_CPUS"
if [ "$ncpu" -ge 2 ]; then
	is "$(awk '{ for (i = 1; i < NF; i++) if ($i == "moe_cpus") print $(i+1) }' "$tmp/run.auto" | sort -u | wc -l)" 2 \
		"two ranks on a machine with $ncpu CPUs get different CPUs"
fi
is "$(ls /dev/shm | grep -c '^moe-s')" 0 "no shared memory segment left behind"

# four ranks over tcp
"$ML" --nproc 4 --spec off --transport tcp -- "$PEER" > "$tmp/run4" 2>&1; rc=$?
is "$rc:$(grep -c 'kind tcp sum 10 a2a ok' "$tmp/run4")" "0:4" "--nproc 4 --spec off over tcp"

# a big world's table travels in an inherited memfd (an environment string is limited to 128 KiB)
MOE_COMM_PEERS_INLINE_MAX=0 "$ML" --nproc 3 --dry-run -- "$PEER" > "$tmp/fd.dry"
is "$(grep -c '^  MOE_COMM_PEERS=fd:[0-9]*$' "$tmp/fd.dry")" 3 "table in a memfd: MOE_COMM_PEERS=fd:N"
MOE_COMM_PEERS_INLINE_MAX=0 "$ML" --nproc 3 -- "$PEER" > "$tmp/fd.out" 2>&1; rc=$?
is "$rc:$(grep -c 'sum 6 a2a ok' "$tmp/fd.out")" "0:3" "ranks read the table from the memfd"

# one rank killed with SIGKILL: the launcher stops the others and returns 128+9
start=$(date +%s)
timeout 60 "$ML" --nproc 3 --timeout 20 -- "$PEER" --die 1 > "$tmp/kill.out" 2> "$tmp/kill.err"; rc=$?
is "$rc" 137 "a rank killed by SIGKILL: moe-launch exits 137"
ok "the launcher names the killed rank" grep -q "rank 1 (pid [0-9]*) was killed by signal 9" "$tmp/kill.err"
ok "and says it stops the others" grep -q "stopping the other 2 ranks" "$tmp/kill.err"
is "$(pgrep -f "$PEER --die 1" | wc -l)" 0 "no rank left running"

# a rank's own exit code is returned
"$ML" --nproc 3 -- "$PEER" --exit 2:7 > "$tmp/exit.out" 2> "$tmp/exit.err"; rc=$?
is "$rc" 7 "a rank exiting with 7: moe-launch exits 7"

# a program that does not exist: 127 and one clear line per rank
"$ML" --nproc 2 -- "$tmp/no-such-trainer" > /dev/null 2> "$tmp/nx.err"; rc=$?
is "$rc" 127 "missing program: exit 127"
ok "missing program named" grep -q "cannot run '$tmp/no-such-trainer'" "$tmp/nx.err"

# SIGTERM to the launcher reaches every rank (the trainer checkpoints on it)
"$ML" --nproc 3 -- "$PEER" --wait-signal > "$tmp/sig.out" 2> "$tmp/sig.err" &
lp=$!
for _ in $(seq 100); do [ "$(grep -c '^rank' "$tmp/sig.out")" = 3 ] && break; sleep 0.1; done
kill -USR1 $lp
for _ in $(seq 100); do [ "$(grep -c 'got signal' "$tmp/sig.out")" = 3 ] && break; sleep 0.1; done
wait $lp; rc=$?
is "$(grep -c "got signal $(kill -l USR1)" "$tmp/sig.out")" 3 "SIGUSR1 forwarded to all 3 ranks"
is "$rc" 0 "ranks that exit 0 after the signal: moe-launch exits 0"
"$ML" --nproc 2 -- "$PEER" --wait-signal > "$tmp/sig2.out" 2> "$tmp/sig2.err" &
lp=$!
for _ in $(seq 100); do [ "$(grep -c '^rank' "$tmp/sig2.out")" = 2 ] && break; sleep 0.1; done
kill -TERM $lp
wait $lp; rc=$?
is "$(grep -c 'got signal 15' "$tmp/sig2.out"):$rc" "2:0" "SIGTERM forwarded to both ranks"
done_testing
