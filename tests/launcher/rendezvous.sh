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
