#!/bin/sh
# cli.sh - `moetopo plan` and `moetopo simulate` end to end: real fixture topologies, a topology.conf
# with unavailable trays, the JSON schema, and exit 2 with one line on stderr for bad input.
. "$top_srcdir/tests/tap.sh"
M=$top_builddir/topology/cli/moetopo
FX=$top_srcdir/tests/fixtures
[ -x "$M" ] || skip_all "moetopo not built"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# bad input: exit 2, exactly one line on stderr naming the problem
bad() {  # bad "desc" "expected text" args...
	d=$1; want=$2; shift 2
	"$M" "$@" >"$T/out" 2>"$T/err"; rc=$?
	is "$rc" 2 "$d: exit 2"
	is "$(wc -l <"$T/err" | tr -d ' ')" 1 "$d: one line on stderr"
	ok "$d: stderr names '$want'" grep -q -- "$want" "$T/err"
	is "$(wc -c <"$T/out" | tr -d ' ')" 0 "$d: nothing on stdout"
}
bad "unknown spec key" "unknown key 'foo'" plan --nodes 'n[1-2]' --preset dgx-h100 --spec ep=8,foo=1
bad "ep not dividing the world" "valid ep: 1, 2, 3, 4, 6, 8, 12, 24" plan --nodes 'n[1-3]' --preset dgx-h100 --spec ep=16
bad "more tasks than GPUs" "9 tasks but has 8 GPUs" plan --nodes n1 --preset dgx-h100 --tasks-per-node 9 --spec ep=1
bad "bad hostlist" "without a closing" plan --nodes 'n[1-2' --preset dgx-h100
bad "no --nodes" "--nodes HOSTLIST is required" plan --preset dgx-h100
bad "unknown preset" "valid: dgx-h100, gb300-nvl72-tray" plan --nodes n1 --preset dgx-a100
bad "missing node XML" "nonexistent.xml" plan --nodes n1 --node-xml "$T/nonexistent.xml"
bad "missing node XML through %n" "node n1: .*n1.xml" plan --nodes 'n[1-2]' --node-xml "$FX/hwloc/%n.xml"
bad "bad --cpus" "bad --cpus" plan --nodes n1 --preset dgx-h100 --cpus 3-1
bad "unknown option" "unknown or incomplete option" plan --nodes n1 --preset dgx-h100 --frobnicate
bad "bad --tasks-per-node" "valid: a positive integer" plan --nodes n1 --preset dgx-h100 --tasks-per-node 2x
bad "bad --topk" "valid: a number >= 1" simulate --nodes n1 --preset dgx-h100 --topk 0
bad "simulation option without --simulate" "need --simulate" plan --nodes n1 --preset dgx-h100 --topk 4
bad "bad routing" "valid: uniform, group" simulate --nodes n1 --preset dgx-h100 --routing random
printf 'BlockName=b1 Nodes=n[1-2]\n' >"$T/short.conf"
bad "node missing from the domain map" "'n3' is not in the NVLink domain map" \
	plan --nodes 'n[1-3]' --preset dgx-h100 --domains "$T/short.conf" --spec ep=8
printf 'BlockName=b1 Nodes=n[1-2] Colour=red\n' >"$T/badkey.conf"
bad "bad domain map line" "unknown key 'Colour'" plan --nodes 'n[1-2]' --preset dgx-h100 --domains "$T/badkey.conf"

ok "plan --help documents --node-xml %n" sh -c "'$M' plan --help | grep -q '%n'"
ok "simulate --help states the model's assumptions" sh -c "'$M' simulate --help | grep -q 'Model assumptions'"
ok "--spec help prints the grammar" sh -c "'$M' plan --spec help | grep -q 'route-groups=M'"

# Real fixture: JURECA-DC node (psmgmt__topo.jrc0323.xml).  Reading the XML: GPU 0000:03:00.0 sits
# under NUMANode P#3 whose cpuset is 48-63,176-191, beside mlx5_0 (0000:04:00.0) in the same NUMA
# node; the four GPUs share the node with four ConnectX-6, one each: rank 0 is GPU 03:00.0, rail 0.
"$M" plan --nodes 'j[1-2]' --node-xml "$FX/hwloc/psmgmt__topo.jrc0323.xml" --spec ep=8 >"$T/jrc" 2>&1
is "$?" 0 "plan on the JURECA-DC fixture"
is "$(awk '$1 == "0" {print $6, $7, $8, $10}' "$T/jrc")" "0000:03:00.0 mlx5_0 0 48-63,176-191" \
	"rank 0: GPU 03:00.0, mlx5_0, rail 0, NUMA 3 cpus"
ok "one EP group of 8 over two node-domains" grep -q 'EP groups NVLink-local: 0 / 1' "$T/jrc"

# Heterogeneous nodes through %n: j1 is the JURECA-DC node, i1 the LLNL ipa node (flux-core__ipa20.xml,
# first GPU 0000:4e:00.0 in PCI order; its rail-0 NIC is mlx5_0)
ln -s "$FX/hwloc/psmgmt__topo.jrc0323.xml" "$T/j1.xml"
ln -s "$FX/hwloc/flux-core__ipa20.xml" "$T/i1.xml"
"$M" plan --nodes 'j1,i1' --node-xml "$T/%n.xml" --spec ep=4 >"$T/het" 2>&1
is "$?" 0 "plan with --node-xml DIR/%n.xml"
is "$(awk '$1 == "4" {print $3, $6}' "$T/het")" "i1 0000:4e:00.0" "second node uses its own model"

# GB300 racks with unavailable trays (topology.conf block syntax, a continuation line, comments):
# racks of 16, 18 and 16 trays = 64, 72, 64 GPUs; ep=40 -> 1+1+1 local groups, leftovers 24+32+24
# make 2 groups of 2 racks each.  The smallest chunk is as large as it can be: rack2's 32 is cut
# 16 + 16 (rack1 24 + rack2 16, rack2 16 + rack3 24) rather than leaving an 8-GPU piece of rack1.
cat >"$T/topology.conf" <<'CONF'
# NVL72 racks; two trays out in rack 1 and rack 3
BlockName=rack1 Nodes=gb-r1-n[01-16]
BlockName=rack2 Nodes=gb-r2-n[01-09],\
    gb-r2-n[10-18]
BlockName=rack3 Nodes=gb-r3-n[01-07,09-17]
BlockSizes=18
CONF
H='gb-r1-n[01-16],gb-r2-n[01-18],gb-r3-n[01-07,09-17]'
"$M" plan --nodes "$H" --preset gb300-nvl72-tray --domains "$T/topology.conf" --spec ep=40,experts=320 >"$T/gb" 2>&1
is "$?" 0 "plan on fragmented GB300 racks"
ok "3 of 5 EP groups NVLink-local" grep -q 'EP groups NVLink-local: 3 / 5' "$T/gb"
ok "leftover groups span at most 2 racks" grep -q 'NVLink domains per EP group: max 2' "$T/gb"
ok "routing groups list each rack's experts" grep -q 'rack1\[experts 0-191\] rack2\[experts 192-319\]' "$T/gb"

if command -v python3 >/dev/null 2>&1; then
	"$M" plan --nodes "$H" --preset gb300-nvl72-tray --domains "$T/topology.conf" --spec ep=40,experts=320 --json >"$T/gb.json"
	ok "--json is valid JSON with the documented fields" python3 - "$T/gb.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "moetopo-plan/1"
keys = {"procid", "rank", "node", "gpu_pci", "nics", "rail", "cpuset", "ep_group", "ep_rank", "dp_rank", "domain"}
assert all(keys <= set(r) for r in d["ranks"]) and len(d["ranks"]) == 200
s = d["summary"]
assert s["ep_groups"] == 5 and s["ep_groups_local"] == 3
assert 0 < s["nvlink_local_fraction"] <= 1 and 0 <= s["rail_aligned_fraction"] <= 1
assert sorted(r["rank"] for r in d["ranks"]) == list(range(200))
PY
	"$M" plan --nodes 'c[1-2]' --preset cpu-2socket --tasks-per-node 4 --spec ep=8 --json >"$T/cpu.json"
	ok "CPU-only JSON: GPU fields null, NUMA and cpuset set" python3 - "$T/cpu.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert all(r["gpu_pci"] is None and r["rail"] is None and r["nics"] == [] for r in d["ranks"])
assert all(r["numa"] in (0, 1) and r["cpuset"] for r in d["ranks"])
PY
else
	skip_py=1
fi

# simulate: plan vs Slurm's default when Slurm's (name) order interleaves racks
i=0; : >"$T/inter.map"
for n in $(seq -w 1 50); do echo "n$n rack$((i % 3))" >>"$T/inter.map"; i=$((i + 1)); done
"$M" simulate --nodes 'n[01-50]' --preset gb300-nvl72-tray --domains "$T/inter.map" --spec ep=40 >"$T/sim" 2>&1
is "$?" 0 "simulate runs"
ok "simulate prints both layouts and the ratio" sh -c "grep -q '^moetopo plan' '$T/sim' && grep -q '^slurm default' '$T/sim' && grep -q 'speedup' '$T/sim'"
ok "plan has 3 local groups, default none" sh -c "grep '^moetopo plan' '$T/sim' | grep -q ' 3/5 ' && grep '^slurm default' '$T/sim' | grep -q ' 0/5 '"
ok "plan --simulate --json gives the simulation as JSON" sh -c "'$M' plan --nodes 'n[01-50]' --preset gb300-nvl72-tray --domains '$T/inter.map' --spec ep=40 --simulate --json | tr -d '\\n' | grep -q '\"schema\":\"moetopo-simulate/1\".*\"speedup\"'"
# --oversub end to end, names interleaving 2 racks of 2 GB300 trays (4 GPUs, NIC 100 GB/s), ep=8:
# the plan keeps each rack's 8 GPUs in one local group (NVLink only, no spine), the default puts
# n1+n2 and n3+n4 together, 4 GPUs per rack.  A token needs the other rack with probability
# 1 - (1/2)^8 = 0.99609 (top-8 of 8 experts, half of them there): each GPU sends that many token sets
# of 4096 x 7168 x 2 B on its own rail (every rail has a peer), 584.9 us at 100 GB/s.  Each rack's 8
# GPUs send 8 x 0.99609 sets over uplinks of 8 x 100 GB/s / oversub: 584.9 us at oversub 1 (the NICs'
# time), 1169.8 us at oversub 2.  So the default's slowest group, dispatch + combine, doubles from
# 1169.8 to 2339.6 us with both groups spine-bound, and the plan does not change.
: >"$T/two.map"
for n in 1 2 3 4; do echo "n$n rack$((n % 2))" >>"$T/two.map"; done
for o in 1 2; do
	"$M" simulate --nodes 'n[1-4]' --preset gb300-nvl72-tray --domains "$T/two.map" --spec ep=8 --oversub $o --json \
		>"$T/over$o.json" 2>"$T/over$o.err"
	is "$?" 0 "simulate --oversub $o --json runs"
done
if [ -z "${skip_py:-}" ]; then
	ok "--oversub 2 doubles the interleaved default's slowest group, not the plan's; spine fields in JSON" \
		python3 - "$T/over1.json" "$T/over2.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
one = 2 * (1 - 0.5 ** 8) * 4096 * 7168 * 2 / 100e9 * 1e6  # dispatch + combine at oversub 1, us
assert a["params"]["oversub"] == 1 and b["params"]["oversub"] == 2
assert abs(a["default"]["total_us"] - one) < 0.5, a["default"]
assert abs(b["default"]["total_us"] - 2 * one) < 0.5, b["default"]
assert abs(b["default"]["spine_us_max"] - one) < 0.5 and b["default"]["spine_bound_groups"] == 2
assert a["default"]["spine_bound_groups"] == 0  # at oversub 1 the uplinks take exactly the NICs' time
assert a["plan"]["total_us"] == b["plan"]["total_us"] and b["plan"]["ep_groups_local"] == 2
assert b["plan"]["spine_us_max"] == 0 and b["plan"]["spine_bound_groups"] == 0
assert isinstance(b["default"]["spine_bound_groups"], int)
assert abs(b["speedup"] - 2 * a["speedup"]) < 1e-3
PY
fi
# The fabric known (plan --oversub, as plugstack fabric=oversub:N): 12 racks of 18 GB300 trays in Slurm's
# order and a last rack of 8 trays (32 GPUs), ep=64.  The most-local plan (12 local groups) puts the last
# rack's 32 GPUs with small tails of the others, all their tokens over their rack's uplinks: at oversub 4 its
# slowest group is 0.44x as fast as Slurm's layout.  Told the fabric, the plan gives up 3 local groups to
# pair that rack with a large chunk of another, and ties the default's slowest group with 9 local groups.
: >"$T/racks.map"
for r in 01 02 03 04 05 06 07 08 09 10 11 12; do echo "gb-r$r-n[01-18] rack$r" >>"$T/racks.map"; done
echo "gb-r13-n[01-08] rack13" >>"$T/racks.map"
for f in "" --fabric-unknown; do
	"$M" simulate --nodes 'gb-r[01-12]-n[01-18],gb-r13-n[01-08]' --preset gb300-nvl72-tray --domains "$T/racks.map" \
		--spec ep=64 --oversub 4 $f --json >"$T/fab${f:+-blind}.json" 2>"$T/fab.err"
	is "$?" 0 "simulate --oversub 4 ${f:-(fabric known)} runs"
done
if [ -z "${skip_py:-}" ]; then
	ok "fabric known: the slowest group ties the default (1.00x, 9 local groups); unknown: 0.44x with 12" \
		python3 - "$T/fab.json" "$T/fab-blind.json" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
assert a["plan"]["total_us"] <= a["default"]["total_us"] * (1 + 1e-9), a
assert a["plan"]["ep_groups_local"] == 9 and b["plan"]["ep_groups_local"] == 12, (a["plan"], b["plan"])
assert abs(b["speedup"] - 0.4375) < 0.01, b["speedup"]
assert a["plan"]["mean_group_us"] < a["default"]["mean_group_us"]
PY
fi
"$M" plan --nodes 'gb-r[01-12]-n[01-18],gb-r13-n[01-08]' --preset gb300-nvl72-tray --domains "$T/racks.map" \
	--spec ep=64 --oversub 4 --json >"$T/fab-plan.json"
is "$?" 0 "plan --oversub 4 runs without --simulate"
"$M" plan --nodes 'gb-r[01-12]-n[01-18],gb-r13-n[01-08]' --preset gb300-nvl72-tray --domains "$T/racks.map" \
	--spec ep=64 --json >"$T/nofab-plan.json"
ok "plan --oversub 4 gives other ranks than the plan without it" sh -c "! cmp -s '$T/fab-plan.json' '$T/nofab-plan.json'"
"$M" plan --nodes 'n[1-4]' --preset gb300-nvl72-tray --nic-gbs 50 >/dev/null 2>"$T/nic.err"
is "$?" 2 "plan --nic-gbs without --oversub is bad input"
ok "one line naming --oversub" sh -c "[ \$(wc -l <'$T/nic.err') -eq 1 ] && grep -q -- '--oversub' '$T/nic.err'"
"$M" plan --nodes 'n[1-4]' --preset gb300-nvl72-tray --oversub 0.5 >/dev/null 2>"$T/ov.err"
is "$?" 2 "plan --oversub 0.5 is bad input (valid: >= 1)"
done_testing
