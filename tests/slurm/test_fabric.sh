#!/bin/bash
# test_fabric.sh - the testbed's emulated rack fabric (testbed.sh up N --racks R --spine-mbit X --rack-mbit Y):
# 4 nodes in 2 racks with interleaved names, a 50 Mbit/s spine and 200 Mbit/s node links (low enough
# that a loaded 2-core machine still fills them).  Checks that
# topology.conf names the racks, that Slurm runs across them, and that the shaping is real: a transfer
# between racks is held near the spine's rate, one inside a rack near the node links' rate, several times
# faster.  Rates are compared with the configured ones and with each other, never with a clock budget.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
[ "$MOE_SLURM_VERSION" = 22.05 ] || skip_all "the rack fabric runs on Slurm 22.05 only"
[ -x /usr/bin/python3 ] || skip_all "no /usr/bin/python3 (the transfer's receiver)"
command -v tc >/dev/null || skip_all "no tc (iproute2)"
SPINE=50 RACK=200
tb_start 4 --racks 2 --spine-mbit $SPINE --rack-mbit $RACK

is "$(cat "$MOE_TESTBED/etc/topology.conf")" "BlockName=rack1 Nodes=gpu-n1,gpu-n3
BlockName=rack2 Nodes=gpu-n2,gpu-n4" "topology.conf names the racks, node names interleaved"
run_client srun -N4 --ntasks-per-node=1 -l hostname
is "$(sort <<<"$out" | tr '\n' ' ')" "0: gpu-n1 1: gpu-n2 2: gpu-n3 3: gpu-n4 " "srun reaches every node of both racks"
run_client moetopo plan --nodes 'gpu-n[1-4]' --tasks-per-node 2 --domains "$MOE_TESTBED/etc/topology.conf" --node-xml "$MOE_TESTBED/topo/%n.xml" --spec ep=4
ok "the planner groups each rack's ranks: both EP groups NVLink-local" grep -q 'EP groups NVLink-local: 2 / 2' <<<"$out"

# Bytes per second from node A to node B's address: python on B reads to EOF, bash on A writes.
XFER_BYTES=$(( 6 * 1000 * 1000 ))
rate() {  # rate FROM TO: Mbit/s of one TCP transfer of XFER_BYTES
	local port=$(( 25000 + RANDOM % 1000 )) addr=127.1.0.$((10 + $2)) r
	$TESTBED node-exec "$2" /usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0; t0 = None
while True:
    b = c.recv(1 << 20)
    if t0 is None: t0 = time.monotonic()
    if not b: break
    n += len(b)
print(n, time.monotonic() - t0, flush=True)' "$addr" "$port" > "$W/rx.$2" &
	local rx=$!
	for ((r = 0; r < 100; r++)); do grep -q ready "$W/rx.$2" 2>/dev/null && break; sleep 0.1; done
	$TESTBED node-exec "$1" bash -c "head -c $XFER_BYTES /dev/zero > /dev/tcp/$addr/$port"
	wait $rx
	awk '$1 != "ready" { printf "%.1f\n", $1 * 8 / $2 / 1e6 }' "$W/rx.$2"
}
W=$(mktemp -d)
cross=$(rate 1 2)   # rack1 -> rack2: over the spine
intra=$(rate 1 3)   # inside rack1
back=$(rate 4 3)    # rack2 -> rack1: the other direction
rm -rf "$W"
echo "# rates (Mbit/s): rack1->rack2 $cross, rack2->rack1 $back, inside rack1 $intra; spine $SPINE, node links $RACK"
ok "a transfer across racks is held at the spine's rate ($cross <= 1.3 x $SPINE Mbit/s)" \
	awk -v r="$cross" -v x=$SPINE 'BEGIN { exit !(r > 0 && r <= 1.3 * x) }'
ok "and so is the other direction ($back Mbit/s)" awk -v r="$back" -v x=$SPINE 'BEGIN { exit !(r > 0 && r <= 1.3 * x) }'
ok "a transfer inside a rack is held at the node links' rate ($intra <= 1.3 x $RACK Mbit/s)" \
	awk -v r="$intra" -v y=$RACK 'BEGIN { exit !(r > 0 && r <= 1.3 * y) }'
ok "inside a rack is at least twice as fast as across racks ($intra vs $cross Mbit/s; shaped 4:1)" \
	awk -v a="$intra" -v b="$cross" 'BEGIN { exit !(b > 0 && a >= 2 * b) }'

# bad fabric flags: one line, nothing changes (the testbed above stays up)
for bad in "--racks 2" "--racks 0 --spine-mbit 100" "--spine-mbit 100" "--racks 2 --spine-mbit fast" "--racks 5 --spine-mbit 100"; do
	msg=$($TESTBED up 4 $bad 2>&1 >/dev/null); rc=$?
	ok "up 4 $bad: refused with one line ($msg)" test "$rc" != 0 -a "$(wc -l <<<"$msg")" = 1
done
run_client sinfo -h -N -o '%N %T'
is "$(tr '\n' ' ' <<<"$out")" "gpu-n1 idle gpu-n2 idle gpu-n3 idle gpu-n4 idle " "the fabric testbed is still up and idle"
done_testing
