#!/bin/bash
# test_contract.sh - every node of a step agrees on the ranks, whatever fails, and a real PyTorch job runs
# on the contract.  The testbed's first node has 8 GPUs (a real captured 8-GPU machine), the others 4:
#   - heterogeneous GPU counts: 8 tasks on the 8-GPU node and 4 on a 4-GPU node, every task planned,
#     equal to `moetopo plan`; and a node with more tasks than GPUs degrades only its own binding;
#   - a corrupt topology cache on one node: one warning from that node, every task keeps the plan's rank;
#   - a plan that fails everywhere: one warning, and export=torch still gives Slurm's layout;
#   - Debian's python3-torch: an unmodified torch.distributed (gloo) script under
#     --moe-topology=ep=4,export=torch, with -m block and -m cyclic, checks that consecutive torch ranks
#     form NVLink-local EP groups and runs all_to_all_single in them; the strict=no fallback completes.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
export MOE_TESTBED_GPUS="8 4 4 4"
export MOE_TESTBED_FIXTURES="mpibind__g4dnmetal.xml mpibind__coral-lassen.xml psmgmt__topo.jrc0323.xml psmgmt__topo.mel2001.xml"
tb_start 4
E=$MOE_TESTBED/etc
TOPO=$MOE_TESTBED/topo
MOETOPO=$top_builddir/topology/cli/moetopo
machine_cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)

# procid rank local_rank gpu_pci ep_group ep_rank domain node, per task (from report.sh lines) or per plan rank
from_tasks() {
	awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		print $2, v["MOE_RANK"], v["MOE_LOCAL_RANK"], (v["MOE_GPU_PCI"] == "" ? "-" : v["MOE_GPU_PCI"]), v["MOE_EP_GROUP"], v["MOE_EP_RANK"],
			v["MOE_DOMAIN"], substr($3, 6) }' <<<"$out" | sort -n
}
from_plan() {
	awk 'function s(k,  m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:"/, "", m); sub(/"$/, "", m); return m } return "" }
	     function n(k,  m) { if (match($0, "\"" k "\":-?[0-9]+")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m } return "" }
	     /^\{"procid":/ { print n("procid"), n("rank"), n("local_rank"), (s("gpu_pci") == "" ? "-" : s("gpu_pci")), n("ep_group"), n("ep_rank"),
			s("domain"), s("node") }' | sort -n
}
ranks_only() { awk '{ print $1, $2, $3, $5, $6, $7, $8 }'; }  # without the GPU: what every node must agree on
on_node() { awk -v n="node=$1" '$1 == "T" && $3 == n' <<<"$out"; }

is "$("$MOETOPO" show --json --input "$TOPO/gpu-r1-n1.xml" | grep -c '^ *{"index": [0-9]*, "pci_bus_id": .*"supported": true')" 8 \
	"the first node's topology is a real 8-GPU machine"

# 1. Heterogeneous: 8 tasks on the 8-GPU node, 4 on a 4-GPU node (one per GPU: --gpus=12 gives 8 + 4).
SHAPE=(-w 'gpu-r1-n[1-2]' -N2 -n12 --gpus=12)
run_client srun "${SHAPE[@]}" --moe-topology=ep=4,export=torch "$REPORT"
ok "8 + 4 GPUs: the step runs" [ "$rc" = 0 ]
is "$(grep -c '^T ' <<<"$out"):$(on_node gpu-r1-n1 | wc -l):$(on_node gpu-r1-n2 | wc -l)" "12:8:4" "8 tasks on the 8-GPU node, 4 on the other"
is "$(grep -c 'moe-topology:' <<<"$err")" 0 "8 + 4 GPUs: no warning from any node"
plan=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2]' --node-xml "$TOPO/%n.xml" --domains "$E/topology.conf" \
	--cpus "$machine_cpus" --spec ep=4,export=torch | from_plan)
is "$(from_tasks)" "$plan" "8 + 4 GPUs: every task on both nodes has moetopo plan's rank, GPU, EP group, domain"
torch_is_moe() {
	[ -z "$(awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		if (v["RANK"] == "" || v["RANK"] != v["MOE_RANK"] || v["WORLD_SIZE"] != 12 || v["LOCAL_WORLD_SIZE"] != v["MOE_LOCAL_SIZE"] ||
		    v["MASTER_ADDR"] != "gpu-r1-n1" || v["MASTER_PORT"] != v["MOE_MASTER_PORT"]) print $2 }' <<<"$out")" ]
}
ok "8 + 4 GPUs: RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_* agree with the plan on every task" torch_is_moe
is "$(grep -o ' LOCAL_WORLD_SIZE=[0-9]*' <<<"$(on_node gpu-r1-n1)" | sort -u | tr -d ' '):$(grep -o ' LOCAL_WORLD_SIZE=[0-9]*' <<<"$(on_node gpu-r1-n2)" | sort -u | tr -d ' ')" \
	"LOCAL_WORLD_SIZE=8:LOCAL_WORLD_SIZE=4" "each node's local size is its own"

# 8 tasks on each node but 4 GPUs on the second: only that node's binding fails, its own warning says so,
# and every task of both nodes still has the plan's rank.
run_client srun -w 'gpu-r1-n[1-2]' -N2 -n16 --gpus=12 --moe-topology=ep=4,export=torch "$REPORT"
ok "8 tasks on a 4-GPU node: the step runs (strict=no)" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: node gpu-r1-n2: .*runs 8 tasks but has 4 GPUs' <<<"$err"):$(grep -c 'moe-topology:' <<<"$err")" "1:1" \
	"one warning, from the node that has too few GPUs, naming it"
plan=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2]' --tasks-per-node 8 --node-xml "$TOPO/gpu-r1-n1.xml" \
	--domains "$E/topology.conf" --spec ep=4,export=torch | from_plan | ranks_only)
is "$(from_tasks | ranks_only)" "$plan" "every task on both nodes has the plan's rank, EP group and domain"
is "$(on_node gpu-r1-n1 | grep -c MOE_GPU_PCI=):$(on_node gpu-r1-n2 | grep -c MOE_GPU_PCI=)" "8:0" \
	"the 8-GPU node binds its GPUs, the other keeps Slurm's"
is "$(grep -o ' RANK=[0-9]*' <<<"$out" | sort -t= -k2 -n | tr -d ' \n')" "$(seq 0 15 | sed 's/^/RANK=/' | tr -d '\n')" \
	"torch ranks 0..15, once each, across both nodes"

# 2. A corrupt topology cache on one node: that node warns once and loses its binding, nothing else changes.
cp "$TOPO/gpu-r2-n1.xml" "$MOE_TESTBED/work/r2n1.xml.good"
head -c 3000 "$MOE_TESTBED/work/r2n1.xml.good" > "$TOPO/gpu-r2-n1.xml"
run_client srun -N4 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=8 "$REPORT"
install -m 644 "$MOE_TESTBED/work/r2n1.xml.good" "$TOPO/gpu-r2-n1.xml"
ok "corrupt cache on one node: the step runs" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: node gpu-r2-n1: .*gpu-r2-n1.xml' <<<"$err"):$(grep -c 'moe-topology:' <<<"$err")" "1:1" \
	"corrupt cache: one warning, from that node, naming its file"
plan=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2],gpu-r2-n[1-2]' --tasks-per-node 4 --node-xml "$TOPO/%n.xml" \
	--domains "$E/topology.conf" --cpus "$machine_cpus" --spec ep=8 | from_plan)
is "$(from_tasks | ranks_only)" "$(ranks_only <<<"$plan")" "corrupt cache: all 16 tasks on all 4 nodes have the plan's ranks"
is "$(from_tasks | grep -v ' gpu-r2-n1$')" "$(grep -v ' gpu-r2-n1$' <<<"$plan")" "the other 3 nodes' tasks are bound as planned"
is "$(on_node gpu-r2-n1 | grep -c 'MOE_GPU_PCI=')$(on_node gpu-r2-n1 | grep -c ' CUDA_VISIBLE_DEVICES=0,1,2,3 ')" "04" \
	"that node's tasks keep Slurm's GPUs"

# 3. A plan that fails on every node (ep=3 does not divide 8): one warning, Slurm's layout in torch's names.
run_client srun -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=ep=3,export=torch "$REPORT"
ok "plan failing everywhere: the step runs (strict=no)" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology:' <<<"$err")" 1 "plan failing everywhere: reported once for the step"
ok "the warning says torch's variables follow Slurm's layout" grep -q 'moe-topology: warning: .*ep=3.*export=torch: RANK' <<<"$err"
slurm_layout() {
	[ -z "$(awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		if (v["RANK"] != $2 || v["WORLD_SIZE"] != 8 || v["LOCAL_WORLD_SIZE"] != 2 || v["MASTER_ADDR"] != "gpu-r1-n1" ||
		    v["MASTER_PORT"] !~ /^[0-9]+$/ || v["MOE_RANK"] != "" || v["LOCAL_RANK"] !~ /^[01]$/) print $2 }' <<<"$out")" ] &&
	[ "$(grep -o ' MASTER_PORT=[0-9]*' <<<"$out" | sort -u | wc -l)" = 1 ] && [ "$(grep -c '^T ' <<<"$out")" = 8 ]
}
ok "every task on every node: RANK = SLURM_PROCID, WORLD_SIZE, LOCAL_*, one MASTER_ADDR:PORT, no MOE_RANK" slurm_layout

# 4. Real PyTorch: an unmodified torch.distributed (gloo) script on the contract.
if ! /usr/bin/python3 -c 'import torch.distributed as d; assert d.is_gloo_available()' 2>/dev/null; then
	for i in 1 2 3 4; do _tap_n=$((_tap_n + 1)); echo "ok $_tap_n # SKIP python3-torch with gloo is not installed"; done
else
	DOMS=$(awk '/^BlockName=/ { split($1, b, "="); split($2, n, "="); print b[2], n[2] }' "$E/topology.conf" |
		while read -r dom nodes; do for h in $($TESTBED run scontrol show hostnames "$nodes"); do echo "$h=$dom"; done; done |
		tr '\n' ' ')
	PY=(/usr/bin/python3 "$top_srcdir/tests/slurm/torch_ep.py")
	# two racks, one node each, two tasks per node: under -m cyclic Slurm's order alternates racks
	TSHAPE=(-w gpu-r1-n1,gpu-r2-n1 -N2 --ntasks-per-node=2 --gpus-per-node=2)
	for dist in block cyclic; do
		run_client srun "${TSHAPE[@]}" -m $dist --moe-topology=ep=2,export=torch "${PY[@]}" 2 $DOMS
		is "$rc:$(grep -c '^TORCH [0-3] 4 .* local=yes a2a=ok via=all_to_all_single$' <<<"$out")" "0:4" \
			"torch -m $dist: 4 ranks, consecutive ranks form NVLink-local EP groups of 2, all_to_all_single in each"
	done
	# the check can fail: with Slurm's own order under -m cyclic the same groups span both racks
	run_client srun "${TSHAPE[@]}" -m cyclic --moe-topology=off sh -c \
		'RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS MASTER_ADDR=gpu-r1-n1 MASTER_PORT=29411 exec "$@"' sh "${PY[@]}" 2 $DOMS
	is "$rc:$(grep -c ' local=no a2a=ok ' <<<"$out")" "0:4" "torch -m cyclic with Slurm's order: the same check sees groups spanning racks"
	run_client srun "${TSHAPE[@]}" -m cyclic --moe-topology=ep=3,export=torch "${PY[@]}" 0
	is "$rc:$(grep -c '^TORCH [0-3] 4 .* a2a=ok ' <<<"$out"):$(grep -c 'moe-topology: warning' <<<"$err")" "0:4:1" \
		"torch with a failed plan (strict=no): runs to completion on Slurm's layout, one warning"
fi

run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
