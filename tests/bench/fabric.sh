#!/bin/bash
# fabric.sh - the plan against Slurm's default layout, measured: one training job on the testbed's
# emulated rack fabric (4 nodes x 2 ranks, 2 racks with interleaved node names, the spine shaped to
# FABRIC_SPINE_MBIT, each node's link to FABRIC_RACK_MBIT), run with --moe-topology=ep=4,... (the plan)
# and with --moe-topology=off + moe-launch --spec (Slurm's layout), same data, seed and global batch,
# alternating FABRIC_RUNS times.  Prints the median a2a_ms and step time of each and their ratios
# default/plan, then `moetopo simulate` for the same job shape with the rig's bandwidths and its
# predicted ratio, and measured/predicted.  Not a test: it prints figures (doc/planner.md).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
: "${top_srcdir:?}" "${top_builddir:?}"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
SPINE=${FABRIC_SPINE_MBIT:-200} RACK=${FABRIC_RACK_MBIT:-400} STEPS=${FABRIC_STEPS:-8} RUNS=${FABRIC_RUNS:-2}
SKIP=2   # warm-up steps left out of the medians
[ "$(id -u)" = 0 ] || { echo "fabric: needs root, skipped"; exit 0; }
[ -f "$top_builddir/plugin/.libs/moe_topology.so" ] || { echo "fabric: plugin not built, skipped"; exit 0; }
tb_start 4 --racks 2 --spine-mbit "$SPINE" --rack-mbit "$RACK"
W=$MOE_TESTBED/work
SPEC=ep=4,experts=8
DIM=256 TOPK=2 SEQ=32 GB=32 RANKS=8
"$top_builddir/trainer/driver/moe-train" prepare /usr/share/common-licenses/GPL-3 "$W/data.bin" >/dev/null
TRAIN="moe-train --data $W/data.bin --steps $STEPS --seed 7 --experts 8 --top-k $TOPK --dim $DIM --heads 4 --layers 2
	--ffn 128 --expert-ffn 32 --seq-len $SEQ --global-batch $GB --lr 0.01 --warmup 2 --threads 1 --quiet"
SRUN="srun -N4 --ntasks-per-node=2 --gpus-per-node=2"

job() {  # job LABEL RUN: one training job under LABEL's layout, metrics in $W/LABEL.RUN.jsonl
	local m=$W/$1.$2.jsonl
	if [ "$1" = plan ]; then
		# cpu=none: both layouts leave CPU placement to the kernel, so only the layout differs
		$TESTBED run $SRUN --moe-topology=$SPEC,cpu=none moe-launch --timeout 300 -- $TRAIN --metrics "$m" \
			> "$W/$1.$2.out" 2>&1
	else
		$TESTBED run $SRUN --moe-topology=off moe-launch --timeout 300 --spec $SPEC \
			--domains "$MOE_TESTBED/etc/topology.conf" -- $TRAIN --metrics "$m" > "$W/$1.$2.out" 2>&1
	fi || { echo "fabric: the $1 job failed:"; tail -5 "$W/$1.$2.out"; exit 1; }
}
for ((i = 1; i <= RUNS; i++)); do job plan $i; job default $i; done

field() {  # field LABEL KEY: KEY of every step after the warm-up, all runs of LABEL
	cat "$W/$1".*.jsonl | awk -v k="$2" -v s=$SKIP '{ if (match($0, "\"step\":[0-9]+")) st = substr($0, RSTART + 7, RLENGTH - 7) + 0
		if (st > s && match($0, "\"" k "\":[0-9.e+-]+")) print substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
total() { field "$1" "$2" | awk '{ s += $1 } END { printf "%.0f", s }'; }
for l in plan default; do
	eval "a2a_$l=\$(field $l a2a_ms | median) ms_$l=\$(field $l ms | median)"
	eval "x_$l=\$(total $l a2a_xdomain_bytes) d_$l=\$(total $l a2a_domain_bytes)"
done
loss_p=$(tail -1 "$W/plan.1.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
loss_d=$(tail -1 "$W/default.1.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)

# The rig in the model's terms: a rank's NIC is its share of its node's link (2 ranks per node); a rack's
# 4 GPUs share the spine, so oversubscription = 4 x NIC / spine.  Inside a rack (the model's NVLink domain)
# the ranks of the two nodes meet over the same links: prediction 1 gives NVLink the NIC's rate; prediction
# 2 the rate a rank's in-domain copies actually get (a quarter over shm to its node peer, the rest over the
# node link, deduplicated per node in rail mode: 3/4 of the copies in the time of 3/8 at Y/2, i.e. Y).
nic=$(awk -v y="$RACK" 'BEGIN { printf "%.6g", y / 2 / 8000 }')
nvl2=$(awk -v y="$RACK" 'BEGIN { printf "%.6g", y / 8000 }')
ovs=$(awk -v y="$RACK" -v x="$SPINE" 'BEGIN { printf "%.6g", 4 * (y / 2) / x }')
tokens=$(( GB * SEQ / RANKS ))
simulate() {  # simulate NVLINK-GBS: the JSON of moetopo simulate for this job shape
	$TESTBED run moetopo simulate --nodes 'gpu-n[1-4]' --tasks-per-node 2 --domains "$MOE_TESTBED/etc/topology.conf" \
		--node-xml "$MOE_TESTBED/topo/%n.xml" --spec "$SPEC" --tokens $tokens --hidden $DIM --topk $TOPK --bytes 4 \
		--nic-gbs "$nic" --nvlink-gbs "$1" --oversub "$ovs" --json 2>&1
}
sim_us() {  # sim_us JSON plan|default: the slowest group's total_us
	awk -v w="\"$2\"" 'index($0, w) && match($0, /"total_us":[0-9.e+-]+/) { print substr($0, RSTART + 11, RLENGTH - 11); exit }' <<<"$1"
}
sim=$(simulate "$nic")
sp=$(sim_us "$sim" plan) sd=$(sim_us "$sim" default)
sim2=$(simulate "$nvl2")
sp2=$(sim_us "$sim2" plan) sd2=$(sim_us "$sim2" default)

echo "fabric: 4 nodes x 2 ranks, 2 racks (gpu-n1,gpu-n3 | gpu-n2,gpu-n4), spine $SPINE Mbit/s each way, node links $RACK Mbit/s;"
echo "fabric: moe-train d_model $DIM, top-$TOPK of 8 experts, ep=4, global batch $GB x $SEQ, $STEPS steps x $RUNS runs per layout (median of steps > $SKIP)"
awk -v ap="$a2a_plan" -v ad="$a2a_default" -v mp="$ms_plan" -v md="$ms_default" -v xp="$x_plan" -v xd="$x_default" \
	-v dp="$d_plan" -v dd="$d_default" -v lp="$loss_p" -v ld="$loss_d" -v sp="$sp" -v sd="$sd" -v nic="$nic" -v ovs="$ovs" \
	-v sp2="$sp2" -v sd2="$sd2" -v nvl2="$nvl2" 'BEGIN {
	printf "fabric: a2a_ms median: plan %.1f, Slurm default %.1f: default/plan %.2fx (target >= 1.5)\n", ap, ad, ad / ap
	printf "fabric: step ms median: plan %.1f, Slurm default %.1f: default/plan %.2fx\n", mp, md, md / mp
	printf "fabric: bytes across racks: plan %.0f, default %.0f; inside racks: plan %.0f, default %.0f; final loss %s vs %s\n", xp, xd, dp, dd, lp, ld
	if (sp > 0 && sd > 0 && sp2 > 0 && sd2 > 0) {
		printf "fabric: simulate 1 (--nic-gbs %s --nvlink-gbs %s --oversub %s): slowest group plan %.0f us, default %.0f us: predicted %.2fx; measured/predicted %.2f (target 0.75-1.25)\n", nic, nic, ovs, sp, sd, sd / sp, (ad / ap) / (sd / sp)
		printf "fabric: simulate 2 (--nvlink-gbs %s, the in-rack rate a rank gets): plan %.0f us, default %.0f us: predicted %.2fx; measured/predicted %.2f\n", nvl2, sp2, sd2, sd2 / sp2, (ad / ap) / (sd2 / sp2)
	} else print "fabric: simulate gave no figures" }'
[ -n "$sp" ] && [ -n "$sd" ] || sed 's/^/# /' <<<"$sim" | head -20
