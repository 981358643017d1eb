#!/bin/bash
# rendezvous.sh - moe-launch in Slurm mode, one launcher per rank as srun would start them, here
# without Slurm: the plugin's contract (MOE_RANK, MOE_MASTER_ADDR/PORT) or only SLURM_* variables
# (fallback, with its warning).  The TCP rendezvous, the handover to the program, and the errors
# when rank 0 or another rank never shows up.
. "$top_srcdir/tests/tap.sh"
ML=$top_builddir/launcher/moe-launch
PEER=$top_builddir/tests/launcher/comm_peer
[ -x "$ML" ] && [ -x "$PEER" ] || skip_all "moe-launch or comm_peer not built"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
port() { echo $((10000 + RANDOM % 20000)); }  # below the ephemeral range: no clash with client sockets

# world of N with the plugin's contract; extra args go to moe-launch
contract_run() {
	local n=$1 p; p=$(port); shift
	local pids=()
	for r in $(seq 0 $((n - 1))); do
		env -u SLURM_PROCID MOE_RANK=$r MOE_WORLD_SIZE=$n MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
			MOE_EP_RANK=$r MOE_EP_SIZE=$n "$ML" --timeout 20 "$@" -- "$PEER" > "$tmp/out.$r" 2> "$tmp/err.$r" &
		pids+=($!)
	done
	local rc=0
	for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
	cat "$tmp"/out.* > "$tmp/all"
	return $rc
}

contract_run 3; rc=$?
is "$rc" 0 "3 launchers with the plugin's contract: all exit 0 $(cat "$tmp"/err.* | head -c 300)"
is "$(grep -c 'kind shm sum 6 a2a ok' "$tmp/all")" 3 "ranks on one host pick shm; allreduce and alltoallv right"
contract_run 3 --transport tcp; rc=$?
is "$rc:$(grep -c 'kind tcp sum 6 a2a ok' "$tmp/all")" "0:3" "--transport tcp over the rendezvous table $(cat "$tmp"/err.* | head -c 300)"

# without the plugin: SLURM_* only, with a warning that no topology-aware layout is in effect
p=$(port)
for r in 0 1; do
	env -u MOE_RANK -u MOE_WORLD_SIZE -u MOE_MASTER_ADDR -u MOE_MASTER_PORT -u MOE_EP_RANK -u MOE_EP_SIZE \
		SLURM_PROCID=$r SLURM_NTASKS=2 SLURM_STEP_NUM_TASKS=2 SLURM_LOCALID=$r SLURM_NODEID=0 \
		SLURM_STEP_NODELIST=localhost SLURM_STEP_TASKS_PER_NODE=2 SLURM_JOB_ID=4242 SLURM_STEP_ID=0 \
		SLURM_STEP_RESV_PORTS=$p "$ML" --timeout 20 -- "$PEER" > "$tmp/fb.$r" 2> "$tmp/fberr.$r" &
	eval fb$r=$!
done
wait $fb0; rc0=$?
wait $fb1; rc1=$?
is "$rc0:$rc1" "0:0" "fallback to SLURM_* variables: both ranks exit 0 $(cat "$tmp"/fberr.* | grep -v warning | head -c 300)"
is "$(cat "$tmp"/fb.0 "$tmp"/fb.1 | grep -c 'sum 3 a2a ok.*ep [01]/2')" 2 "fallback contract: one EP group of the whole world"
ok "fallback warns that no topology-aware layout is in effect" grep -q "no topology-aware layout" "$tmp/fberr.0"

# without the plugin, with --spec: Slurm's own layout (rank = SLURM_PROCID, EP groups of consecutive
# ranks), 4 tasks on 2 pretend nodes; under block and cyclic distribution, with and without a domain map
SHOW='echo "$MOE_RANK $MOE_EP_GROUP $MOE_EP_RANK $MOE_EP_SIZE $MOE_DP_RANK $MOE_EXPERTS $MOE_DOMAIN"'
printf 'localhost rackA\nip6-localhost rackB\n' > "$tmp/domains"
spec_run() {  # spec_run DIST MOE-LAUNCH-ARGS...: 4 launchers on nodes localhost, ip6-localhost
	local dist=$1 p r node lid pids=() rc=0; p=$(port); shift
	for r in 0 1 2 3; do
		if [ "$dist" = cyclic ]; then node=$((r % 2)) lid=$((r / 2)); else node=$((r / 2)) lid=$((r % 2)); fi
		env -u MOE_RANK -u MOE_WORLD_SIZE -u MOE_MASTER_ADDR -u MOE_MASTER_PORT SLURM_PROCID=$r SLURM_NTASKS=4 \
			SLURM_STEP_NUM_TASKS=4 SLURM_LOCALID=$lid SLURM_NODEID=$node SLURM_STEP_NODELIST=localhost,ip6-localhost \
			SLURM_STEP_TASKS_PER_NODE='2(x2)' SLURM_JOB_ID=4243 SLURM_STEP_ID=0 SLURM_STEP_RESV_PORTS=$p \
			"$ML" --timeout 20 --master-addr 127.0.0.1 "$@" -- sh -c "$SHOW" > "$tmp/sp.$r" 2> "$tmp/sperr.$r" &
		pids+=($!)
	done
	for r in "${pids[@]}"; do wait "$r" || rc=$?; done
	cat "$tmp"/sp.[0-3] > "$tmp/sp"
	return $rc
}
spec_run block --spec ep=2,experts=8; rc=$?
is "$rc" 0 "--spec ep=2 without the plugin: 4 launchers exit 0 $(cat "$tmp"/sperr.* | head -c 300)"
is "$(cat "$tmp/sp")" "0 0 0 2 0 8 localhost
1 0 1 2 0 8 localhost
2 1 0 2 1 8 ip6-localhost
3 1 1 2 1 8 ip6-localhost" "rank = SLURM_PROCID, EP groups of 2 consecutive ranks, MOE_EXPERTS from the spec, nodes as domains"
ok "rank 0 says Slurm's layout is in effect, from --spec" grep -q "Slurm's own layout.*EP groups of 2 consecutive ranks" "$tmp/sperr.0"
ok "and no longer warns of a missing plan" bash -c "! grep -q 'no topology-aware' $tmp/sperr.0"
spec_run cyclic --spec ep=2,experts=8 --domains "$tmp/domains"; rc=$?
is "$rc:$(cat "$tmp/sp" | tr '\n' ' ')" "0:0 0 0 2 0 8 rackA 1 0 1 2 0 8 rackB 2 1 0 2 1 8 rackA 3 1 1 2 1 8 rackB " \
	"cyclic: consecutive ranks alternate nodes, so each EP group spans both domains of --domains"
spec_run block --spec ep=3; rc=$?
is "$rc:$(sort -u "$tmp"/sperr.* | wc -l)" "2:1" "--spec ep=3 over 4 tasks: exit 2, one line ($(head -c 150 "$tmp/sperr.0"))"
ok "which names the problem" grep -q "ep=3 does not divide the step's 4 tasks" "$tmp/sperr.0"
spec_run block --spec ep=2,tp=2; rc=$?
is "$rc" 2 "--spec tp=2 without a plan: exit 2 ($(head -c 150 "$tmp/sperr.0"))"
spec_run block --spec ep=2 --domains "$tmp/nosuch"; rc=$?
is "$rc" 2 "--domains of a missing file: exit 2 ($(head -c 150 "$tmp/sperr.0"))"
MOE_RANK=0 MOE_WORLD_SIZE=2 SLURM_PROCID=0 "$ML" --spec ep=2 -- true 2> "$tmp/e"; rc=$?
is "$rc:$(wc -l < "$tmp/e")" "2:1" "--spec where the plugin planned the task: exit 2, one line ($(head -c 150 "$tmp/e"))"

# rank 0 never comes: a clear error within the timeout, naming where rank 0 should be
p=$(port)
MOE_RANK=1 MOE_WORLD_SIZE=2 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
	timeout 30 "$ML" --timeout 1 -- "$PEER" > /dev/null 2> "$tmp/e0"; rc=$?
is "$rc" 1 "rank 0 missing: exit 1"
ok "rank 0 missing: the error names rank 0's address ($(head -c 200 "$tmp/e0"))" grep -q "cannot reach rank 0 at 127.0.0.1:$p" "$tmp/e0"

# one of the other ranks never comes: rank 0 names it
p=$(port)
MOE_RANK=0 MOE_WORLD_SIZE=3 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
	timeout 30 "$ML" --timeout 2 -- "$PEER" > /dev/null 2> "$tmp/e1" &
l0=$!
MOE_RANK=1 MOE_WORLD_SIZE=3 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
	timeout 30 "$ML" --timeout 2 -- "$PEER" > /dev/null 2> "$tmp/e2"
wait $l0; rc=$?
is "$rc" 1 "a rank missing: rank 0 exits 1"
ok "rank 0 names the missing rank ($(head -c 200 "$tmp/e1"))" grep -q "rank 2 never did" "$tmp/e1"

# another job's rank on the same port is turned away with a clear error; this job still starts
p=$(port)
MOE_RDV_KEY=jobA MOE_RANK=0 MOE_WORLD_SIZE=2 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
	timeout 30 "$ML" --timeout 10 -- "$PEER" > "$tmp/ja.0" 2> "$tmp/ja.e0" &
l0=$!
MOE_RDV_KEY=jobB MOE_RANK=1 MOE_WORLD_SIZE=2 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
	timeout 30 "$ML" --timeout 10 -- "$PEER" > /dev/null 2> "$tmp/jb.e1"; rcb=$?
MOE_RDV_KEY=jobA MOE_RANK=1 MOE_WORLD_SIZE=2 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=$p \
	timeout 30 "$ML" --timeout 10 -- "$PEER" > "$tmp/ja.1" 2> "$tmp/ja.e1"; rca=$?
wait $l0; rc0=$?
is "$rcb" 1 "a rank of another job on our port: exit 1"
ok "it is told the port belongs to another job ($(head -c 160 "$tmp/jb.e1"))" grep -q "belongs to job jobA, not to job jobB" "$tmp/jb.e1"
is "$rc0:$rca:$(cat "$tmp/ja.0" "$tmp/ja.1" | grep -c 'sum 3 a2a ok')" "0:0:2" "and the job itself still runs"

# outside Slurm and without --nproc there is nothing to join
env -u MOE_RANK -u MOE_WORLD_SIZE -u SLURM_PROCID "$ML" -- "$PEER" > /dev/null 2> "$tmp/e3"; rc=$?
is "$rc:$(wc -l < "$tmp/e3")" "2:1" "no Slurm, no --nproc: exit 2 with one line"
done_testing
