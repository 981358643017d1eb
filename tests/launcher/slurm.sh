#!/bin/bash
# slurm.sh - moe-launch under a real Slurm cluster (the testbed: slurmctld + 4 slurmd in network
# namespaces, fake GPUs, the freshly built plugin): srun starts one moe-launch per task, which runs the
# TCP or PMI2 rendezvous across nodes and execs comm_peer; ranks on different nodes talk tcp, ranks on
# one node shm (shm+tcp when both).  Also the fallback without the plugin (with --spec: Slurm's layout in
# EP groups, block and cyclic), and a killed rank seen by the others.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
PEER=$top_builddir/tests/launcher/comm_peer
[ -x "$PEER" ] && [ -x "$top_builddir/launcher/moe-launch" ] || skip_all "moe-launch or comm_peer not built"
tb_start 2

# lines of $out saying "kind K sum S a2a ok"
count() { grep -c "kind $1 sum $2 a2a ok" <<<"$out"; }
bound() {  # each rank's affinity inside the program is the plugin's MOE_CPUS
	awk '/^rank/ { for (i = 1; i < NF; i++) { if ($i == "cpus") c = $(i+1); if ($i == "moe_cpus") m = $(i+1) }
		if (c != m || m == "-") print "rank " $2 ": " c " vs " m }' <<<"$out"
}

run_client srun -N2 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=4,experts=8 moe-launch -- "$PEER"
is "$rc" 0 "srun -N2 x 2 tasks with the plugin through moe-launch: exit 0 $(head -c 300 <<<"$err")"
is "$(count 'shm+tcp' 10)" 4 "2 nodes x 2 ranks: shm inside a node, tcp between nodes; allreduce and alltoallv right"
is "$(bound)" "" "the plugin's CPU binding survives moe-launch"
is "$(grep -o 'ep [0-3]/4' <<<"$out" | sort | tr '\n' ' ')" "ep 0/4 ep 1/4 ep 2/4 ep 3/4 " "EP ranks 0..3 of one group of 4"

run_client srun -N1 --ntasks-per-node=3 --gpus-per-node=3 --moe-topology=ep=3 moe-launch -- "$PEER"
is "$rc:$(count shm 6)" "0:3" "3 ranks on one node: shm"
run_client srun -N2 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=4 moe-launch --transport tcp -- "$PEER"
is "$rc:$(count tcp 10)" "0:4" "--transport tcp: tcp between all ranks"

run_client srun --mpi=pmi2 -N2 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=4 moe-launch --verbose -- "$PEER"
is "$rc:$(count 'shm+tcp' 10)" "0:4" "srun --mpi=pmi2: the rendezvous goes through PMI2 $(head -c 300 <<<"$err")"
ok "moe-launch used PMI2" grep -q "rendezvous (pmi2) done" <<<"$err"

run_client srun -N2 --ntasks-per-node=1 --moe-topology=off moe-launch -- "$PEER"
is "$rc:$(count tcp 3)" "0:2" "--moe-topology=off: fallback to SLURM_* works $(grep -v warning <<<"$err" | head -c 300)"
is "$(grep -c 'no topology-aware layout is in effect' <<<"$err")" 2 "and each task warns"

# --moe-topology=off + moe-launch --spec: Slurm's own layout, EP groups of consecutive ranks (block and cyclic)
run_client srun -N2 --ntasks-per-node=2 --moe-topology=off moe-launch --spec ep=2,experts=4 -- "$PEER"
is "$rc:$(count 'shm+tcp' 10)" "0:4" "--moe-topology=off with --spec ep=2: 4 ranks run $(head -c 300 <<<"$err")"
is "$(grep -o 'ep [0-3]/[0-9]' <<<"$out" | sort | tr '\n' ' ')" "ep 0/2 ep 0/2 ep 1/2 ep 1/2 " "two EP groups of 2"
ok "no missing-plan warning; rank 0 names Slurm's layout" \
	test "$(grep -c 'no topology-aware' <<<"$err"):$(grep -c "Slurm's own layout" <<<"$err")" = 0:1
show='echo R $MOE_RANK $MOE_EP_GROUP $MOE_EP_RANK $MOE_EXPERTS $(hostname)'
run_client srun -N2 --ntasks-per-node=2 --moe-topology=off moe-launch --spec ep=2,experts=4 -- sh -c "$show"
is "$(sort <<<"$out" | tr '\n' ' ')" "R 0 0 0 4 gpu-r1-n1 R 1 0 1 4 gpu-r1-n1 R 2 1 0 4 gpu-r1-n2 R 3 1 1 4 gpu-r1-n2 " \
	"block: rank = SLURM_PROCID, each EP group on one node"
run_client srun -N2 --ntasks-per-node=2 -m cyclic --moe-topology=off moe-launch --spec ep=2,experts=4 -- sh -c "$show"
is "$(sort <<<"$out" | tr '\n' ' ')" "R 0 0 0 4 gpu-r1-n1 R 1 0 1 4 gpu-r1-n2 R 2 1 0 4 gpu-r1-n1 R 3 1 1 4 gpu-r1-n2 " \
	"srun -m cyclic: consecutive ranks alternate nodes, so each EP group spans both"
run_client srun -N2 --ntasks-per-node=2 --moe-topology=ep=4 moe-launch --spec ep=2 -- "$PEER"
ok "--spec where the plugin planned the step: refused ($(head -1 <<<"$err" | head -c 200))" \
	grep -q -- "--spec applies only without the plugin's plan" <<<"$err"

# a rank killed by SIGKILL: the other ranks fail with an error naming it and its node, no hang
# (each task's stderr goes to a file: srun stops forwarding output once a task was killed)
rm -f "$MOE_TESTBED"/work/kill.*.err
run_client srun -N2 --ntasks-per-node=1 --moe-topology=off --error=kill.%t.err moe-launch --timeout 20 -- "$PEER" --die 1
ok "a killed rank fails the step" [ "$rc" != 0 ]
for _ in $(seq 50); do grep -q "rank 0:" "$MOE_TESTBED/work/kill.0.err" 2>/dev/null && break; sleep 0.1; done
ok "rank 0 names rank 1 as gone ($(grep 'rank 0:' "$MOE_TESTBED/work/kill.0.err" 2>/dev/null | head -c 200))" \
	grep -q "rank 0: tcp: rank 1 (gpu-r1-n2 at 127.1.0.12:[0-9]*) closed the connection" "$MOE_TESTBED/work/kill.0.err"
done_testing
