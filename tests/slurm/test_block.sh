#!/bin/bash
# test_block.sh - Slurm 24.11 with topology/block, the scheduler NVL72 sites run: Slurm places jobs by the
# testbed's racks (one block of two nodes each, the same topology.conf the plugin reads), and the plugin
# takes its domain map from Slurm's own file (no domains= at all, and domains=slurm), checks it against
# what the step sees (SLURM_TOPOLOGY_ADDR), and keeps EP groups inside blocks with --segment, without it,
# and on a fragmented allocation (blocks partly taken by other jobs).  Also what 24.11 does with a plugin
# built for 22.05.  Runs on the 24.11 testbed whatever MOE_SLURM_VERSION says.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
export MOE_SLURM_VERSION=24.11
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 6
E=$MOE_TESTBED/etc
TOPO=$MOE_TESTBED/topo/%n.xml
MOETOPO=$top_builddir/topology/cli/moetopo
machine_cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)

field() { awk -v k="$1" '$1 == "T" { v = ""; for (i = 3; i <= NF; i++) { p = index($i, "="); if (substr($i, 1, p - 1) == k) v = substr($i, p + 1) }
	print $2, substr($3, 6), v }' <<<"$out"; }   # field VAR: "procid node value" per task
# every rank's MOE_DOMAIN is the block Slurm puts its node in (SLURM_TOPOLOGY_ADDR=block.node)
domains_are_blocks() {
	[ -n "$out" ] && [ -z "$(awk '$1 == "T" { d = a = ""; for (i = 3; i <= NF; i++) { if ($i ~ /^MOE_DOMAIN=/) d = substr($i, 12);
		if ($i ~ /^SLURM_TOPOLOGY_ADDR=/) a = substr($i, 21) } if (d == "" || a != d "." substr($3, 6)) print $2 }' <<<"$out")" ]
}
# EP groups whose ranks all sit in one block
local_groups() {
	awk '$1 == "T" { g = d = ""; for (i = 3; i <= NF; i++) { if ($i ~ /^MOE_EP_GROUP=/) g = substr($i, 14); if ($i ~ /^MOE_DOMAIN=/) d = substr($i, 12) }
		if (!(g in dom)) dom[g] = d; else if (dom[g] != d) dom[g] = "*" } END { n = 0; for (g in dom) if (dom[g] != "*") n++; print n }' <<<"$out"
}
# the same count for Slurm's own order: groups of EP consecutive SLURM_PROCIDs
default_local_groups() {  # default_local_groups EP
	awk -v ep="$1" '$1 == "T" { g = int($2 / ep); for (i = 3; i <= NF; i++) if ($i ~ /^SLURM_TOPOLOGY_ADDR=/) { d = substr($i, 21); sub(/\..*/, "", d) }
		if (!(g in dom)) dom[g] = d; else if (dom[g] != d) dom[g] = "*" } END { n = 0; for (g in dom) if (dom[g] != "*") n++; print n }' <<<"$out"
}
# the most EP groups of EP ranks that can be block-local: sum over blocks of floor(ranks in it / EP)
best_local_groups() {  # best_local_groups EP
	awk -v ep="$1" '$1 == "T" { for (i = 3; i <= NF; i++) if ($i ~ /^SLURM_TOPOLOGY_ADDR=/) { d = substr($i, 21); sub(/\..*/, "", d); c[d]++ } }
		END { n = 0; for (d in c) n += int(c[d] / ep); print n }' <<<"$out"
}
nodes_of() { awk '$1 == "T" {print $2, substr($3, 6)}' <<<"$out" | sort -n | awk '{print $2}' | uniq | paste -sd, -; }
# the plugin's per-rank plan against moetopo plan for the same nodes (block distribution)
same_as_moetopo() {  # same_as_moetopo TASKS_PER_NODE SPEC
	local got want
	got=$(awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		print $2, v["MOE_RANK"], v["MOE_EP_GROUP"], v["MOE_EP_RANK"], v["MOE_DOMAIN"], v["MOE_GPU_PCI"] }' <<<"$out" | sort -n)
	want=$("$MOETOPO" plan --json --nodes "$(nodes_of)" --tasks-per-node "$1" --node-xml "$TOPO" --domains "$E/topology.conf" \
		--cpus "$machine_cpus" --spec "$2" | awk 'function s(k,  m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:"/, "", m); sub(/"$/, "", m); return m } return "" }
		function n(k,  m) { if (match($0, "\"" k "\":-?[0-9]+")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m } return "" }
		/^\{"procid":/ { print n("procid"), n("rank"), n("ep_group"), n("ep_rank"), s("domain"), s("gpu_pci") }' | sort -n)
	[ -n "$got" ] && [ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got") | sed 's/^/# /'; return 1; }
}

# Slurm itself runs topology/block on the file the plugin reads
run_client scontrol show topology
is "$(sed -n 's/^BlockName=\([^ ]*\) .*Nodes=\([^ ]*\) .*/\1 \2/p' <<<"$out" | tr '\n' ' ')" \
	"r1 gpu-r1-n[1-2] r2 gpu-r2-n[1-2] r3 gpu-r3-n[1-2] " "Slurm runs topology/block with the testbed's racks as blocks"
run_client srun --moe-topology=help
ok "the plugin says it was built for Slurm 24.11" grep -q 'built for Slurm 24\.11\.' <<<"$out"

# No domains= at all: under topology/block the plugin reads Slurm's own topology.conf (beside slurm.conf).
$TESTBED plugstack "topology=$TOPO" nvml=off
run_client srun -N4 --segment=2 --ntasks-per-node=2 -m cyclic --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
ok "--segment=2 -N4: the step runs" [ "$rc" = 0 ]
is "$(field SLURM_TOPOLOGY_ADDR | awk '{sub(/\..*/, "", $3); print $3}' | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')" "4 4 " \
	"--segment=2: Slurm gave two whole blocks"
ok "no domains=: every rank's domain is its node's block as Slurm sees it" domains_are_blocks
is "$(local_groups)" 2 "--segment=2, -m cyclic: both EP groups of 4 stay inside one block"
is "$(default_local_groups 4)" 0 "(Slurm's own order would put every EP group across both blocks)"

run_client srun -N2 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=8 "$REPORT"
ok "without --segment, -N2: Slurm keeps the job inside one block" \
	[ "$(field SLURM_TOPOLOGY_ADDR | awk '{sub(/\..*/, "", $3); print $3}' | sort -u | wc -l)" = 1 ]
is "$(local_groups)" 1 "without --segment: the EP group of 8 is block-local"
ok "without --segment: per-rank plan equals moetopo plan with topology.conf" same_as_moetopo 4 ep=8

# Fragmented: other jobs hold one node of r1 and one of r3, so only r2 is whole.
run_client sbatch --parsable -N1 -w gpu-r1-n1 --exclusive -o /dev/null --wrap "sleep 600"
hold1=$out
run_client sbatch --parsable -N1 -w gpu-r3-n1 --exclusive -o /dev/null --wrap "sleep 600"
hold2=$out
for ((i = 0; i < 60; i++)); do
	[ "$($TESTBED run squeue -h -t R -j "$hold1,$hold2" -o %i 2>/dev/null | wc -l)" = 2 ] && break
	sleep 0.5
done
run_client srun -N4 --segment=1 --ntasks-per-node=1 --gpus-per-node=4 --moe-topology=ep=2 "$REPORT"
ok "fragmented: the step runs" [ "$rc" = 0 ]
is "$(nodes_of)" "gpu-r1-n2,gpu-r2-n1,gpu-r2-n2,gpu-r3-n2" "fragmented: Slurm gave the free nodes of three blocks"
ok "fragmented: every rank's domain is its node's block" domains_are_blocks
is "$(local_groups)" "$(best_local_groups 2)" "fragmented: as many EP groups inside a block as the allocation allows (1 of 2)"
is "$(default_local_groups 2)" 0 "(Slurm's own order would keep none inside a block)"
ok "fragmented: per-rank plan equals moetopo plan" same_as_moetopo 1 ep=2
run_client srun -N3 --ntasks-per-node=2 --gpus-per-node=4 --moe-topology=ep=2 "$REPORT"
is "$(field SLURM_TOPOLOGY_ADDR | awk '{sub(/\..*/, "", $3); print $3}' | sort | uniq -c | awk '{print $1}' | sort | tr '\n' ' ')" "2 4 " \
	"fragmented, -N3 without --segment: a whole block plus one node"
ok "fragmented, -N3: per-rank plan equals moetopo plan" same_as_moetopo 2 ep=2
$TESTBED run scancel "$hold1" "$hold2"

# domains=slurm names Slurm's file explicitly; a copy that disagrees with what slurmctld loaded is caught.
$TESTBED plugstack domains=slurm "topology=$TOPO" nvml=off
run_client srun -N2 --ntasks-per-node=2 --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
ok "domains=slurm: ranks are planned, domains are Slurm's blocks" domains_are_blocks
cp "$E/topology.conf" "$MOE_TESTBED/topology.conf.orig"
printf 'BlockName=r1 Nodes=gpu-r1-n[1-2],gpu-r2-n1\nBlockName=r2 Nodes=gpu-r2-n2\nBlockName=r3 Nodes=gpu-r3-n[1-2]\nBlockSizes=1\n' > "$E/topology.conf"
run_client srun -N2 -w gpu-r2-n[1-2] --ntasks-per-node=2 --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
cat "$MOE_TESTBED/topology.conf.orig" > "$E/topology.conf"
ok "edited topology.conf (not reconfigured): the step still runs (strict=no)" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: Slurm places gpu-r2-n1 in r2 (SLURM_TOPOLOGY_ADDR) but .*topology.conf here says r1' <<<"$err")" 1 \
	"edited topology.conf: one warning names the node, Slurm's block and the file's"
is "$(awk '$1 == "T" && $3 == "node=gpu-r2-n1"' <<<"$out" | grep -c MOE_RANK=)" 0 "edited topology.conf: that node's tasks keep Slurm's binding"

# A plugin built for 22.05 (this machine's own build) in 24.11: Slurm refuses it before our code runs.
host_plugin=$top_builddir/plugin/.libs/moe_topology.so
if [ -f "$host_plugin" ] && grep -q 'SLURM_VERSION_NUMBER 0x1605' /usr/include/slurm/slurm_version.h 2>/dev/null; then
	echo "required $host_plugin" > "$E/plugstack.conf"
	run_client srun -N1 true
	ok "22.05 plugin, required: 24.11 refuses every srun" [ "$rc" != 0 ]
	ok "22.05 plugin: Slurm's message names the plugin's release" grep -q 'Incompatible Slurm plugin .*moe_topology.so version (22\.05' <<<"$err"
	echo "optional $host_plugin" > "$E/plugstack.conf"
	run_client srun -N1 --moe-topology=ep=1 true
	ok "22.05 plugin, optional: the option is unknown to srun" grep -q "unrecognized option '--moe-topology" <<<"$err"
	$TESTBED plugstack
else
	for i in 1 2 3; do echo "ok $((_tap_n + 1)) # SKIP no 22.05 build of the plugin here"; _tap_n=$((_tap_n + 1)); done
fi

run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
