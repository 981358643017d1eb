#!/bin/sh
# test_show.sh - the `moetopo show` / `moetopo export` CLI: help, every fixture, JSON schema, the
# live machine, and bad input (one clear line on stderr, nothing on stdout, exit 2).
. "$top_srcdir/tests/tap.sh"
M="$top_builddir/topology/cli/moetopo"
FIX="$top_srcdir/tests/fixtures"
T=$(mktemp -d "${TMPDIR:-/tmp}/test_show.XXXXXX")
trap 'rm -rf "$T"' EXIT

# run CMD...: stdout in $T/out, stderr in $T/err, exit status in $rc
run() { "$@" >"$T/out" 2>"$T/err"; rc=$?; }
lines() { wc -l <"$1" | tr -d ' '; }

run "$M" show --help
is "$rc" 0 "show --help exits 0"
ok "show --help documents --input and --json" grep -q -- "--input FILE" "$T/out"
run "$M" export --help
is "$rc" 0 "export --help exits 0"
ok "export --help documents --output" grep -q -- "--output FILE" "$T/out"

# every fixture, and the manifest lists exactly the fixture files
for f in "$FIX"/hwloc/*.xml "$FIX"/nccl/*.xml; do
	rel=${f#"$FIX"/}
	run "$M" show --input "$f"
	is "$rc:$(lines "$T/err")" "0:0" "show $rel exits 0, nothing on stderr"
	ok "show $rel prints the legend" grep -q "PIX  = Connection traversing at most a single PCIe bridge" "$T/out"
	ok "$rel is in MANIFEST.tsv" grep -q "^$rel	" "$FIX/MANIFEST.tsv"
	ok "$rel has expected values in test_node_fixtures.c" grep -q "\"$rel\"" "$top_srcdir/tests/node/test_node_fixtures.c"
done
is "$(tail -n +2 "$FIX/MANIFEST.tsv" | wc -l | tr -d ' ')" "$(ls "$FIX"/hwloc/*.xml "$FIX"/nccl/*.xml | wc -l | tr -d ' ')" \
	"MANIFEST.tsv has one row per fixture"

# the human table: GPU0 of ipa20 (file: GPU 4e:00.0 with mlx5_0/mlx5_1 on one switch)
run "$M" show -i "$FIX/hwloc/flux-core__ipa20.xml"
ok "ipa20 table: GPU0 row has NVLink 150 GB/s and PIX to NIC0" grep -Eq "^GPU0 +X +NV150G +NV150G +NV150G +PIX " "$T/out"
ok "ipa20 table: CPU affinity and NUMA of GPU0" grep -Eq "^GPU0 .* 42-55,154-167 +3 +0$" "$T/out"
ok "ipa20 table: rail table row" grep -Eq "^0 +0000:4e:00.0 +3 +0 +cuda0 +nvml0 +mlx5_0 " "$T/out"

# JSON: valid, with the documented keys (python3 checks the structure when present)
run "$M" show --json --input "$FIX/nccl/oci-hpc__GB300MP.xml"
is "$rc" 0 "show --json exits 0"
if command -v python3 >/dev/null 2>&1; then
	ok "JSON schema: gpus/nics/pcie/nvlink as documented" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
g, n = d["gpus"], d["nics"]
assert d["schema"] == "moetopo-node/1"
assert [x["index"] for x in g] == [0, 1, 2, 3]
assert [x["pci_bus_id"] for x in g] == ["0008:06:00.0", "0009:06:00.0", "0018:06:00.0", "0019:06:00.0"]
assert [x["numa"] for x in g] == [0, 0, 1, 1] and g[0]["cpuset"] == "0-71"
assert [x["nics"] for x in g] == [["rdma_vf_rail1_dma"], ["rdma_vf_rail0_dma"], ["rdma_vf_rail3_dma"], ["rdma_vf_rail2_dma"]]
assert [x["rail"] for x in g] == [0, 1, 2, 3]
assert all(set(x) >= {"name", "pci_bus_id", "numa", "link_layer", "rdma"} for x in n) and all(x["rdma"] for x in n)
assert len(d["pcie"]) == 4 and all(len(r) == 8 for r in d["pcie"]) and d["pcie"][0][4] == "PXB"
assert d["nvlink"][0] == [0, 18, 18, 18] and d["nvlink_unit"] == "links" and d["nvswitch"] is True
' "$T/out"
	run "$M" show --json --input "$FIX/hwloc/mpibind__eas-tioga.xml"
	ok "JSON: unknown NVLink is null, unsupported GPUs have rail null" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["nvlink"] is None and all(x["rail"] is None and not x["supported"] for x in d["gpus"])
' "$T/out"
else
	ok "JSON starts with the schema tag (no python3 for a full check)" grep -q '"schema": "moetopo-node/1"' "$T/out"
fi

# live machine (ground truth for GPUs: NVIDIA display/3D controllers in sysfs)
want=0
for d in /sys/bus/pci/devices/*; do
	[ -r "$d/vendor" ] || continue
	case "$(cat "$d/vendor"):$(cat "$d/class")" in 0x10de:0x03*) want=$((want + 1)) ;; esac
done
run "$M" show --json
is "$rc" 0 "show on the live machine exits 0"
is "$(sed -n '/"gpus": \[/,/^  \]/p' "$T/out" | grep -c '"supported": true' | tr -d ' ')" "$want" "live NVIDIA GPU count matches sysfs ($want)"
run "$M" export --output "$T/node.xml"
is "$rc:$(lines "$T/err")" "0:0" "export writes the live hwloc XML"
run "$M" show --input "$T/node.xml"
is "$rc" 0 "the exported XML reads back"

# bad input: exit 2, exactly one line on stderr naming the problem, nothing on stdout
bad() { # bad DESC PATTERN ARGS...
	d=$1 p=$2; shift 2
	run "$M" "$@"
	is "$rc:$(lines "$T/err"):$(lines "$T/out")" "2:1:0" "$d: exit 2, one line on stderr, no stdout"
	ok "$d: message names the problem" grep -q -- "$p" "$T/err"
}
bad "missing file" "No such file" show --input "$T/nope.xml"
head -c 20000 "$FIX/hwloc/mpibind__cts1-pascal.xml" >"$T/trunc.xml"
bad "truncated hwloc XML" "not a valid hwloc XML" show --input "$T/trunc.xml"
printf 'garbage<<<\n' >"$T/garbage.xml"
bad "garbage file" "not an XML file" show --input "$T/garbage.xml"
printf '<?xml version="1.0"?>\n<topology version="2.0">\n  <object type="Machine" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" allowed_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" allowed_nodeset="0x00000001" gp_index="1">\n    <object type="NUMANode" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="2"/>\n    <object type="PU" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="3"/>\n  </object>\n</topology>\n' >"$T/noio.xml"
bad "hwloc XML without PCI objects" "no PCI objects" show --input "$T/noio.xml"
sed 's/link_width="16"/link_width="16" colour="red"/' "$FIX/nccl/azhpc-images__ndv4-topo.xml" >"$T/unk.xml"
bad "NCCL XML with an unknown attribute" "unknown attribute 'colour' on <pci>" show --input "$T/unk.xml"
bad "unknown option" "unknown option '--bogus'" show --bogus
bad "option without value" "needs a value" show --input
bad "export without --output" "--output FILE is required" export
bad "unexpected argument" "unexpected argument 'extra'" show extra
done_testing
