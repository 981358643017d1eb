#!/bin/bash
# test_binding.sh - what each task of a real step gets: the per-rank variables equal `moetopo plan --json`
# for the same job shape, CPU affinity is really applied (Cpus_allowed_list read inside the task), GPU
# lists and NIC variables follow the plan, export=torch, verbose, and the strict=no/yes failure policy.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 4
E=$MOE_TESTBED/etc
MOETOPO=$top_builddir/topology/cli/moetopo
SPEC=ep=8,experts=64,route-groups=2

# The plan as the plugin's tasks report it and as moetopo computes it, one normalised line per rank:
#   procid rank local_rank gpu_pci nics cpuset ep_group ep_rank dp_rank domain node
from_tasks() {
	awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		print $2, v["MOE_RANK"], v["MOE_LOCAL_RANK"], v["MOE_GPU_PCI"], v["MOE_NET_DEVICES"], v["MOE_CPUS"],
			v["MOE_EP_GROUP"], v["MOE_EP_RANK"], v["MOE_DP_RANK"], v["MOE_DOMAIN"], substr($3, 6) }' <<<"$out" | sort -n
}
from_plan() {  # the planner's JSON has one rank object per line
	awk 'function s(k,  m) { if (match($0, "\"" k "\":\"[^\"]*\"")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:"/, "", m); sub(/"$/, "", m); return m } return "" }
	     function n(k,  m) { if (match($0, "\"" k "\":-?[0-9]+")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m } return "" }
	     function l(k,  m) { if (match($0, "\"" k "\":\\[[^]]*\\]")) { m = substr($0, RSTART, RLENGTH); sub(/^[^[]*\[/, "", m); sub(/\]$/, "", m); gsub(/"/, "", m); return m } return "" }
	     /^\{"procid":/ { print n("procid"), n("rank"), n("local_rank"), s("gpu_pci"), l("nics"), s("cpuset"),
			n("ep_group"), n("ep_rank"), n("dp_rank"), s("domain"), s("node") }' | sort -n
}
cpus_ok() {  # Cpus_allowed_list inside each task equals the CPUs the plan gave it
	local bad
	bad=$(awk '$1 == "T" { c = substr($4, 6); m = ""; for (i = 5; i <= NF; i++) if ($i ~ /^MOE_CPUS=/) m = substr($i, 10);
		if (m == "" || c != m) print $2 ": " c " vs " m }' <<<"$out")
	[ -z "$bad" ] || { echo "# $bad"; return 1; }
}
machine_cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)

run_client srun -N4 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=$SPEC,verbose "$REPORT"
ok "a 4-node step with the plugin runs" [ "$rc" = 0 ]
is "$(procids)" "$(seq -s ' ' 0 15) " "16 ranks reported"
tasks=$(from_tasks)
plan=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2],gpu-r2-n[1-2]' --tasks-per-node 4 --node-xml "$MOE_TESTBED/topo/%n.xml" \
	--domains "$E/topology.conf" --cpus "$machine_cpus" --spec "$SPEC" | from_plan)
ok "moetopo plan gives a plan for the same shape" [ "$(wc -l <<<"$plan")" = 16 ]
is "$tasks" "$plan" "per-rank rank, GPU, NIC, CPUs, EP group/rank, DP rank, domain equal moetopo plan"
ok "affinity applied: Cpus_allowed_list in each task is its planned CPU list" cpus_ok
ok "affinity changed something: some task is narrower than the machine ($machine_cpus)" \
	grep -qv "cpus=$machine_cpus " <<<"$(grep '^T ' <<<"$out")"

gpus_ok() {  # own GPU first (its GRES index = position in PCI order), then the step's others; PCI order
	awk '$1 == "T" { for (i = 5; i <= NF; i++) { if ($i ~ /^CUDA_VISIBLE_DEVICES=/) c = substr($i, 22); if ($i ~ /^CUDA_DEVICE_ORDER=/) o = substr($i, 19);
		if ($i ~ /^MOE_LOCAL_RANK=/) lr = substr($i, 16) }
		n = split(c, a, ","); if (n != 4 || o != "PCI_BUS_ID") { print $2 ": " c " " o; next }
		seen = ""; for (k = 1; k <= 4; k++) seen = seen a[k]; if (length(seen) != 4) print $2 ": " c }' <<<"$out"
}
is "$(gpus_ok)" "" "gpus=all: each rank sees the step's 4 GPUs, CUDA_DEVICE_ORDER=PCI_BUS_ID"
own_first() {  # the first entry is the GPU the plan gave the rank: index of MOE_GPU_PCI among the node's GPUs
	local p bad=""
	while read -r p node pci; do
		want=$(grep "\"procid\":$p," <<<"$planjson" | sed 's/.*"gpu":\([0-9]*\),.*/\1/')
		got=$(value CUDA_VISIBLE_DEVICES "$p" | cut -d, -f1)
		[ "$want" = "$got" ] || bad="$bad $p:$got/$want"
	done < <(awk '$1 == "T" {print $2}' <<<"$out" | sed 's/$/ x y/')
	[ -z "$bad" ] || { echo "#$bad"; return 1; }
}
planjson=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2],gpu-r2-n[1-2]' --tasks-per-node 4 --node-xml "$MOE_TESTBED/topo/%n.xml" \
	--domains "$E/topology.conf" --cpus "$machine_cpus" --spec "$SPEC")
ok "each rank's own GPU comes first in CUDA_VISIBLE_DEVICES" own_first

contract_ok() {
	local bad
	bad=$(awk -v master="$(value MOE_MASTER_ADDR 0)" '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		if (v["MOE_WORLD_SIZE"] != 16 || v["MOE_LOCAL_SIZE"] != 4 || v["MOE_EP_SIZE"] != 8 || v["MOE_EXPERTS"] != 64 ||
		    v["MOE_ROUTE_GROUPS"] != 2 || v["MOE_MASTER_ADDR"] != master || v["MOE_MASTER_PORT"] !~ /^[0-9]+$/ ||
		    v["MOE_NODE_RANK"] != int(v["MOE_RANK"] / 4)) print $2 }' <<<"$out")
	[ -z "$bad" ] || { echo "# ranks with a wrong contract: $bad"; return 1; }
}
ok "rank contract: world, local size, EP size, experts, route groups, node rank, one master" contract_ok
is "$(value MOE_MASTER_ADDR 0)" "$(awk '$1 == "T" && $0 ~ / MOE_RANK=0 / {print substr($3, 6)}' <<<"$out")" \
	"MOE_MASTER_ADDR is the node of rank 0"
is "$(grep -o 'MOE_MASTER_PORT=[0-9]*' <<<"$out" | sort -u | wc -l)" 1 "one MOE_MASTER_PORT for the whole step"
one_domain_per_group() {
	[ -z "$(awk '$1 == "T" { g = d = ""; for (i = 3; i <= NF; i++) { if ($i ~ /^MOE_EP_GROUP=/) g = $i; if ($i ~ /^MOE_DOMAIN=/) d = $i }
		if (g in dom && dom[g] != d) print g; dom[g] = d }' <<<"$out")" ]
}
ok "ep=8 on two 2-node racks: every EP group stays in one NVLink domain" one_domain_per_group

nccl_ok() {  # NCCL_IB_HCA identical on every rank of a node; the rank's own NIC is one of them
	local bad
	bad=$(awk '$1 == "T" { h = n = ""; for (i = 3; i <= NF; i++) { if ($i ~ /^NCCL_IB_HCA=/) h = substr($i, 13); if ($i ~ /^MOE_NET_DEVICES=/) n = substr($i, 17) }
		node = $3; if (node in hca && hca[node] != h) print $2 " differs"; hca[node] = h
		if (h == "" || n == "" || index("," substr(h, 2) ",", "," n ",") == 0) print $2 ": " n " not in " h }' <<<"$out")
	[ -z "$bad" ] || { echo "# $bad"; return 1; }
}
ok "NCCL_IB_HCA is the same on every rank of a node and holds the rank's rail NIC" nccl_ok
ucx_ok() {
	[ -z "$(awk '$1 == "T" { u = n = s = ""; for (i = 3; i <= NF; i++) { if ($i ~ /^UCX_NET_DEVICES=/) u = substr($i, 17);
		if ($i ~ /^MOE_NET_DEVICES=/) n = substr($i, 17); if ($i ~ /^NVSHMEM_HCA_LIST=/) s = substr($i, 18) }
		w = n; gsub(/,/, ":1,", w); w = w ":1"; if (u != w || s != w) print $2 }' <<<"$out")" ]
}
ok "UCX_NET_DEVICES and NVSHMEM_HCA_LIST name the rank's own NIC" ucx_ok
is "$(grep -c '^moe-topology: rank [0-9]*/16 node gpu-r[12]-n[12] gpu [0-9a-f:.]* cuda [0-9,]* nic [a-z0-9_,]* cores [0-9,-]* ep-group [01] ep-rank [0-7] domain r[12]$' <<<"$err")" 16 \
	"verbose: one binding line per rank on the user's stderr"

run_client srun -N2 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=gpus=single,export=torch,cpu=none "$REPORT"
ok "gpus=single,export=torch,cpu=none step runs" [ "$rc" = 0 ]
torch_ok() {
	[ -z "$(awk '$1 == "T" { delete v; for (i = 3; i <= NF; i++) { p = index($i, "="); v[substr($i, 1, p - 1)] = substr($i, p + 1) }
		if (v["RANK"] != v["MOE_RANK"] || v["LOCAL_RANK"] != v["MOE_LOCAL_RANK"] || v["WORLD_SIZE"] != 8 ||
		    v["MASTER_ADDR"] != v["MOE_MASTER_ADDR"] || v["MASTER_PORT"] != v["MOE_MASTER_PORT"] || v["RANK"] == "") print $2 }' <<<"$out")" ]
}
ok "export=torch: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT follow the plan" torch_ok
single_ok() {
	[ -z "$(awk '$1 == "T" { for (i = 3; i <= NF; i++) if ($i ~ /^CUDA_VISIBLE_DEVICES=/) c = substr($i, 22);
		if (c !~ /^[0-3]$/ || (($3 ":" c) in seen)) print $2; seen[$3 ":" c] = 1 }' <<<"$out")" ]
}
ok "gpus=single: each rank sees only its own GPU, no two ranks of a node share one" single_ok
is "$(grep '^T ' <<<"$out" | grep -vc "cpus=$machine_cpus ")" 0 "cpu=none: Slurm's CPU binding is left as it was"

run_client srun -N4 --ntasks-per-node=2 -m cyclic --gpus-per-node=4 --moe-topology=auto "$REPORT"
is "$(grep -o ' MOE_RANK=[0-9]*' <<<"$out" | sort -t= -k2 -n | tr -d ' \n')" \
	"$(seq 0 7 | sed 's/^/MOE_RANK=/' | tr -d '\n')" "-m cyclic: the ranks are a permutation of 0..7"

# Failure policy on an impossible plan (ep=3 does not divide 8 ranks).
run_client srun -N2 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=3 "$REPORT"
ok "strict=no: the step still runs" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: .*ep=3' <<<"$err")" 1 "strict=no: exactly one warning for the step"
all_unset_and_slurm_gpus() { ! grep -q 'MOE_RANK=' <<<"$out" && [ "$(grep -c 'CUDA_VISIBLE_DEVICES=0,1,2,3 ' <<<"$out")" = 8 ]; }
ok "strict=no: Slurm's own binding is untouched" all_unset_and_slurm_gpus
$TESTBED plugstack "domains=$E/topology.conf" "topology=$MOE_TESTBED/topo/%n.xml" nvml=off strict=yes
run_client srun -N2 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=3 "$REPORT"
ok "strict=yes: the step fails" [ "$rc" != 0 ]
ok "strict=yes: no task ran" [ -z "$(grep '^T ' <<<"$out")" ]
ok "strict=yes: the reason is on the user's stderr" grep -q 'moe-topology: ep=3 .*valid ep: 1, 2, 4, 8 (strict=yes' <<<"$err"
run_client srun -N2 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
ok "strict=yes: a possible plan still runs" [ "$rc" = 0 ]
# Under a batch job a failure in slurmstepd's init would drain the node: only the step's tasks may fail.
run_client sbatch --wait -N2 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=3 \
	-o "$MOE_TESTBED/work/strict.out" --wrap "srun $REPORT"
ok "strict=yes under sbatch: the job fails" [ "$rc" != 0 ]
ok "strict=yes under sbatch: the reason is in the job's output" \
	grep -q 'moe-topology: ep=3 .*(strict=yes' "$MOE_TESTBED/work/strict.out"
run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "strict=yes under sbatch: no node drained"
$TESTBED plugstack

run_client srun -N2 --ntasks-per-node=2 --gpus-per-task=1 --moe-topology=auto "$REPORT"
ok "--gpus-per-task: the step runs with Slurm's binding" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: Slurm bound GPUs per task.*--gpus-per-node' <<<"$err")" 1 \
	"--gpus-per-task: one warning says what to request instead"

# Without domains= on 22.05, NVML fabric cliques in every node's cached topology could define the domains
# (these fixtures have none), so each node is its own domain: still exactly moetopo's plan.
# On 24.11 Slurm runs topology/block, and its own topology.conf is the map.
$TESTBED plugstack "topology=$MOE_TESTBED/topo/%n.xml" nvml=off
run_client srun -N4 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
tasks=$(from_tasks)
if [ "$MOE_SLURM_VERSION" = 22.05 ]; then
	plan=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2],gpu-r2-n[1-2]' --tasks-per-node 4 --node-xml "$MOE_TESTBED/topo/%n.xml" \
		--cpus "$machine_cpus" --spec ep=4 | from_plan)
	is "$tasks" "$plan" "no domain map: per-rank plan equals moetopo plan, one domain per node"
	is "$(awk '$1 == "T" { for (i = 3; i <= NF; i++) if ($i ~ /^MOE_DOMAIN=/) d = substr($i, 12); if ("node=" d != $3) print $2 }' <<<"$out")" "" \
		"no domain map: MOE_DOMAIN is the rank's node"
else
	plan=$("$MOETOPO" plan --json --nodes 'gpu-r1-n[1-2],gpu-r2-n[1-2]' --tasks-per-node 4 --node-xml "$MOE_TESTBED/topo/%n.xml" \
		--domains "$E/topology.conf" --cpus "$machine_cpus" --spec ep=4 | from_plan)
	is "$tasks" "$plan" "no domains= under topology/block: per-rank plan equals moetopo plan with Slurm's topology.conf"
	is "$(awk '$1 == "T" { d = a = ""; for (i = 3; i <= NF; i++) { if ($i ~ /^MOE_DOMAIN=/) d = substr($i, 12); if ($i ~ /^SLURM_TOPOLOGY_ADDR=/) a = substr($i, 21) }
		if (a != d "." substr($3, 6)) print $2 }' <<<"$out")" "" "no domains= under topology/block: MOE_DOMAIN is the rank's block"
fi
$TESTBED plugstack

# Caches are read as root: a file others can write is refused, on that node only, with one warning; the
# ranks are job-wide, so that node's tasks keep them and lose only their binding.
chmod 666 "$MOE_TESTBED/topo/gpu-r2-n1.xml"
run_client srun -N4 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
chmod 644 "$MOE_TESTBED/topo/gpu-r2-n1.xml"
ok "untrusted cache: the step still runs (strict=no)" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: .*gpu-r2-n1.xml: refused' <<<"$err")" 1 "untrusted cache: one warning names the file"
unbound_node() {  # node $1's tasks: the plan's ranks, Slurm's GPUs, no planned GPU or CPUs
	[ -z "$(awk -v n="node=$1" '$1 == "T" && $3 == n && !(/ MOE_RANK=[0-9]+ / && / CUDA_VISIBLE_DEVICES=0,1,2,3 / &&
		/ MOE_CPUS= / && !/MOE_GPU_PCI=/)' <<<"$out")" ] && [ "$(grep -c "^T .* node=$1 " <<<"$out")" = 4 ]
}
ranks_all() { grep -o ' MOE_RANK=[0-9]*' <<<"$out" | sort -t= -k2 -n | tr -d ' \n'; }
all16=$(seq 0 15 | sed 's/^/MOE_RANK=/' | tr -d '\n')
ok "untrusted cache: that node's tasks keep the plan's ranks with Slurm's GPU and CPU binding" unbound_node gpu-r2-n1
is "$(ranks_all)" "$all16" "untrusted cache: every task of every node has its rank, 0..15 once each"
is "$(awk '$1 == "T" && $3 != "node=gpu-r2-n1"' <<<"$out" | grep -c MOE_GPU_PCI=)" 12 "untrusted cache: the other nodes' tasks are bound"

# A symlink in the cache's place could be retargeted by whoever controls its target: refused the same way.
TOPO=$MOE_TESTBED/topo
mv "$TOPO/gpu-r2-n1.xml" "$TOPO/gpu-r2-n1.real"
ln -s gpu-r2-n1.real "$TOPO/gpu-r2-n1.xml"
run_client srun -N4 --ntasks-per-node=4 --gpus-per-node=4 --moe-topology=ep=4 "$REPORT"
rm -f "$TOPO/gpu-r2-n1.xml"
mv "$TOPO/gpu-r2-n1.real" "$TOPO/gpu-r2-n1.xml"
ok "symlinked cache: the step still runs (strict=no)" [ "$rc" = 0 ]
is "$(grep -c 'moe-topology: warning: .*gpu-r2-n1.xml: refused: a symbolic link' <<<"$err")" 1 \
	"symlinked cache: one warning names the file"
ok "symlinked cache: that node's tasks keep the plan's ranks with Slurm's binding" unbound_node gpu-r2-n1
is "$(ranks_all)" "$all16" "symlinked cache: every task has its rank"

run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
