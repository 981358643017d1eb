#!/bin/bash
# fabric.sh - the plan against Slurm's default layout, measured: one training job on the testbed's
# emulated rack fabric (4 nodes x 2 ranks, 2 racks with interleaved node names, the spine shaped to
# FABRIC_SPINE_MBIT, each node's link to FABRIC_RACK_MBIT), run with --moe-topology=ep=4,... (the plan)
# and with --moe-topology=off + moe-launch --spec (Slurm's layout), same data, seed and global batch,
# alternating FABRIC_RUNS times.  The trainer runs with --a2a-timing sync (FABRIC_TIMING=off: without):
# all ranks meet before each all-to-all, so a2a_ms is the transfers alone, every EP group exchanges at
# once as the model assumes, and the wait for the slowest rank is a2a_wait_ms.  The default rig (spine
# 50, node links 100 Mbit/s) keeps the links slower than 8 ranks on 2 cores can move bytes through the
# emulated network (doc/planner.md); FABRIC_DIM and FABRIC_GB set the rows and tokens per exchange.
# Prints the median a2a_ms, a2a_wait_ms and step time of each layout and their ratios default/plan
# (over all runs, and the range of the per-run ratios), then `moetopo simulate` for the same job shape
# with the rig's bandwidths, its predicted ratio and measured/predicted, and the machine's load before
# and after.  Not a test: it prints figures (doc/planner.md).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
: "${top_srcdir:?}" "${top_builddir:?}"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
SPINE=${FABRIC_SPINE_MBIT:-50} RACK=${FABRIC_RACK_MBIT:-100} STEPS=${FABRIC_STEPS:-8} RUNS=${FABRIC_RUNS:-2}
DIM=${FABRIC_DIM:-256} GB=${FABRIC_GB:-32} TIMING=${FABRIC_TIMING:-sync}
SKIP=2   # warm-up steps left out of the medians
[ "$(id -u)" = 0 ] || { echo "fabric: needs root, skipped"; exit 0; }
[ -f "$top_builddir/plugin/.libs/moe_topology.so" ] || { echo "fabric: plugin not built, skipped"; exit 0; }
tb_start 4 --racks 2 --spine-mbit "$SPINE" --rack-mbit "$RACK"
W=$MOE_TESTBED/work
SPEC=ep=4,experts=8
TOPK=2 SEQ=32 RANKS=8
load_before=$(uptime)
"$top_builddir/trainer/driver/moe-train" prepare /usr/share/common-licenses/GPL-3 "$W/data.bin" >/dev/null
TRAIN="moe-train --data $W/data.bin --steps $STEPS --seed 7 --experts 8 --top-k $TOPK --dim $DIM --heads 4 --layers 1 --dense-layers 0
	--ffn 128 --expert-ffn 32 --seq-len $SEQ --global-batch $GB --lr 0.01 --warmup 2 --threads 1 --quiet
	--a2a-timing $TIMING"
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
# packets the shaped links dropped during each job (tbf queues of 50 ms overflowing; the gradient
# all-reduce's too, which crosses the spine in both layouts): the spine's 4 qdiscs and the nodes' 8, in
# the switch and node namespaces as testbed.sh names them
NS=${MOE_TESTBED_NS:-mtb$(printf '%s' "$MOE_TESTBED" | cksum | cut -c1-4)}
drops() {  # drops spine|nodes: packets dropped so far
	{ if [ "$1" = spine ]; then for d in up1 up2 sp1 sp2; do ip netns exec $NS-sw tc -s qdisc show dev $d; done
	  else for i in 1 2 3 4; do ip netns exec $NS-sw tc -s qdisc show dev v-$NS-n$i; ip netns exec $NS-n$i tc -s qdisc show dev eth0; done; fi
	} 2>/dev/null | awk '/dropped/ { for (i = 1; i < NF; i++) if ($i == "(dropped") { sub(",", "", $(i + 1)); s += $(i + 1) } } END { print s + 0 }'
}
drops_plan=0 drops_default=0 ndrops_plan=0 ndrops_default=0
for ((i = 1; i <= RUNS; i++)); do
	for l in plan default; do
		s0=$(drops spine) n0=$(drops nodes)
		job $l $i
		eval "drops_$l=\$((drops_$l + $(drops spine) - s0)) ndrops_$l=\$((ndrops_$l + $(drops nodes) - n0))"
	done
done

field() {  # field LABEL KEY [RUN]: KEY of every step after the warm-up, all runs of LABEL (or run RUN)
	cat "$W/$1".${3:-*}.jsonl | awk -v k="$2" -v s=$SKIP '{ if (match($0, "\"step\":[0-9]+")) st = substr($0, RSTART + 7, RLENGTH - 7) + 0
		if (st > s && match($0, "\"" k "\":[0-9.e+-]+")) print substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) }'
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
total() { field "$1" "$2" | awk '{ s += $1 } END { printf "%.0f", s }'; }
for l in plan default; do
	eval "a2a_$l=\$(field $l a2a_ms | median) ms_$l=\$(field $l ms | median) w_$l=\$(field $l a2a_wait_ms | median)"
	eval "x_$l=\$(total $l a2a_xdomain_bytes) d_$l=\$(total $l a2a_domain_bytes)"
done
# the spread: default/plan of each run's medians (run i of each layout ran back to back)
per_run=$(for ((i = 1; i <= RUNS; i++)); do
	awk -v p="$(field plan a2a_ms $i | median)" -v d="$(field default a2a_ms $i | median)" 'BEGIN { printf "%.2f\n", d / p }'
done)
# final loss of every run, distinct values: one when all runs of both layouts trained alike
losses=$(for f in "$W"/plan.*.jsonl "$W"/default.*.jsonl; do tail -1 "$f" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2; done | sort -u)

# The rig in the model's terms: a rank's NIC is its share of its node's link (2 ranks per node); a rack's
# 4 GPUs share the spine, so oversubscription = 4 x NIC / spine.  Inside a rack (the model's NVLink
# domain) the ranks of the two nodes meet over the node links: the model counts a rank's 1.5 copies per
# token to its 3 domain peers at the NVLink rate, the rig sends a third of them over shm to the node
# peer and the rest once per node (rail deduplication, 0.79 rows per token) over a link the node's 2
# ranks share, i.e. about the same bytes at Y: the prediction gives NVLink Y.  Simulate 1 (NVLink at
# the NIC's rate) is printed beside it, with the number of rack-local groups its own plan has: at that
# rate the planner plans another layout than the job's, so it is no prediction of this job.
nic=$(awk -v y="$RACK" 'BEGIN { printf "%.6g", y / 2 / 8000 }')
nvl2=$(awk -v y="$RACK" 'BEGIN { printf "%.6g", y / 8000 }')
ovs=$(awk -v y="$RACK" -v x="$SPINE" 'BEGIN { printf "%.6g", 4 * (y / 2) / x }')
tokens=$(( GB * SEQ / RANKS ))
simulate() {  # simulate NVLINK-GBS: the JSON of moetopo simulate for this job shape
	$TESTBED run moetopo simulate --nodes 'gpu-n[1-4]' --tasks-per-node 2 --domains "$MOE_TESTBED/etc/topology.conf" \
		--node-xml "$MOE_TESTBED/topo/%n.xml" --spec "$SPEC" --tokens $tokens --hidden $DIM --topk $TOPK --bytes 4 \
		--nic-gbs "$nic" --nvlink-gbs "$1" --oversub "$ovs" --json 2>&1
}
sim_us() {  # sim_us JSON plan|default [KEY]: the slowest group's total_us (or KEY) of that layout
	local k=${3:-total_us}
	awk -v w="\"$2\"" -v k="\"$k\":" 'index($0, w) && match($0, k "[0-9.e+-]+") { print substr($0, RSTART + length(k), RLENGTH - length(k)); exit }' <<<"$1"
}
sim=$(simulate "$nic")
sp=$(sim_us "$sim" plan) sd=$(sim_us "$sim" default)
sim2=$(simulate "$nvl2")
sp2=$(sim_us "$sim2" plan) sd2=$(sim_us "$sim2" default)
lg=$(sim_us "$sim" plan ep_groups_local) lg2=$(sim_us "$sim2" plan ep_groups_local)
if [ -n "${FABRIC_SAVE:-}" ]; then  # keep the runs' metrics and output, and both simulations
	mkdir -p "$FABRIC_SAVE" && cp "$W"/*.jsonl "$W"/*.out "$FABRIC_SAVE"/ && echo "$sim" > "$FABRIC_SAVE/sim1.json" &&
		echo "$sim2" > "$FABRIC_SAVE/sim2.json"
fi

echo "fabric: 4 nodes x 2 ranks, 2 racks (gpu-n1,gpu-n3 | gpu-n2,gpu-n4), spine $SPINE Mbit/s each way, node links $RACK Mbit/s;"
echo "fabric: moe-train d_model $DIM, top-$TOPK of 8 experts, ep=4, global batch $GB x $SEQ, --a2a-timing $TIMING, $STEPS steps x $RUNS runs per layout (median of steps > $SKIP)"
echo "fabric: $(date -u '+%F %H:%M UTC'); load before:${load_before#*load}; after:$(uptime | sed 's/.*load//')"
awk -v ap="$a2a_plan" -v ad="$a2a_default" -v mp="$ms_plan" -v md="$ms_default" -v xp="$x_plan" -v xd="$x_default" \
	-v dp="$d_plan" -v dd="$d_default" -v losses="$(echo $losses)" -v sp="$sp" -v sd="$sd" -v nic="$nic" -v ovs="$ovs" \
	-v sp2="$sp2" -v sd2="$sd2" -v nvl2="$nvl2" -v wp="$w_plan" -v wd="$w_default" -v runs="$(echo $per_run)" -v lg="$lg" -v lg2="$lg2" -v timing="$TIMING" \
	-v spp="$drops_plan" -v spd="$drops_default" -v npp="$ndrops_plan" -v npd="$ndrops_default" 'BEGIN {
	printf "fabric: a2a_ms median: plan %.1f, Slurm default %.1f: default/plan %.2fx (target >= 1.5); per run: %s\n", ap, ad, ad / ap, runs
	if (timing == "sync") printf "fabric: a2a_wait_ms median (at the barriers, not in a2a_ms): plan %.1f, default %.1f\n", wp, wd
	printf "fabric: packets dropped by the shaped queues, whole jobs, all runs: spine plan %d, default %d; node links plan %d, default %d\n", spp, spd, npp, npd
	printf "fabric: step ms median: plan %.1f, Slurm default %.1f: default/plan %.2fx\n", mp, md, md / mp
	printf "fabric: bytes across racks: plan %.0f, default %.0f; inside racks: plan %.0f, default %.0f; final loss of all runs: %s\n", xp, xd, dp, dd, losses
	if (sp > 0 && sd > 0 && sp2 > 0 && sd2 > 0) {
		n = split(runs, r, " "); lo = hi = r[1]; for (i = 2; i <= n; i++) { if (r[i] < lo) lo = r[i]; if (r[i] > hi) hi = r[i] }
		printf "fabric: predicted (simulate --nic-gbs %s --nvlink-gbs %s --oversub %s, the in-rack rate a rank gets): its plan %s rack-local groups, slowest group plan %.0f us, default %.0f us per layer: %.2fx; measured/predicted %.2f (target 0.75-1.25), per run %.2f..%.2f\n", nic, nvl2, ovs, lg2, sp2, sd2, sd2 / sp2, (ad / ap) / (sd2 / sp2), lo / (sd2 / sp2), hi / (sd2 / sp2)
		printf "fabric: time saved per step: measured default - plan %.1f ms, predicted %.1f ms (2 x the per-layer difference: forward and backward): measured/predicted %.2f\n", ad - ap, 2 * (sd2 - sp2) / 1000, (ad - ap) / (2 * (sd2 - sp2) / 1000)
		printf "fabric: simulate with --nvlink-gbs %s (NVLink at the NIC rate): its plan %s rack-local groups, plan %.0f us, default %.0f us: %.2fx; measured/that %.2f\n", nic, lg, sp, sd, sd / sp, (ad / ap) / (sd / sp)
	} else print "fabric: simulate gave no figures" }'
if [ "$(echo "$losses" | wc -l)" != 1 ]; then echo "fabric: the runs did not train alike (final losses differ)"; exit 1; fi
[ -n "$sp" ] && [ -n "$sd" ] || sed 's/^/# /' <<<"$sim" | head -20
