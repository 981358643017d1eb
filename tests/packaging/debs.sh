#!/bin/bash
# debs.sh - the Debian packages as an admin gets them: built with dpkg-buildpackage from the release
# tree, checked by lintian, installed with apt-get; then the Slurm testbed runs the end-to-end training
# job with the INSTALLED plugin (its path taken from the installed plugstack.conf.d snippet, enabled with
# the admin guide's line) and the installed programs (no build tree on PATH); then the packages are
# purged and nothing of them may be left.  Root only; changes this machine's package set while it runs.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/packaging/lib.sh"
. "$top_srcdir/tests/slurm/lib.sh"
PKGS="slurm-spank-moe-topology moetopo libmoetopo-dev"
[ "$(id -u)" = 0 ] || skip_all "needs root (installs packages, Slurm testbed)"
for t in dpkg-buildpackage dh apt-get dpkg-deb flock; do command -v $t >/dev/null || skip_all "no $t (apt-get install dpkg-dev debhelper)"; done
[ -f /usr/include/slurm/spank.h ] || skip_all "no slurm/spank.h (libslurm-dev): the plugin package cannot be built"
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed' &&
		skip_all "$p is already installed here: this test installs and purges it"
done
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
so_want=/usr/lib/$arch/slurm-wlm/moe_topology.so
conf=/etc/slurm/plugstack.conf.d/moe_topology.conf
W=$(mktemp -d /tmp/moetopo-debs.XXXXXX) || exit 1
chmod 755 "$W"
APT="apt-get -y -q -o DPkg::Lock::Timeout=300"
installed=no
testbed=no  # set once tb_start is called; the testbed is torn down only while we hold lib.sh's lock

# What of ours is on the machine: files named for us, and the packages' own files.
snapshot() {
	find /usr /etc /var/lib /var/cache /opt -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache/apt \
		-o -path /var/cache/man -o -path /var/cache/debconf \) -prune -o -iname '*moe*' -print 2>/dev/null | sort
}
purge() {
	[ "$installed" = yes ] || return 0
	$APT purge $PKGS > "$W/purge.log" 2>&1; local rc=$?
	installed=no
	return $rc
}
# lib.sh's tb_start traps EXIT with tb_cleanup: ours wraps it (testbed down only if this test brought
# it up), then purges and removes the scratch folder, whichever way the test ends
holds_lock() {  # fd 9 (lib.sh's) holds the testbed's flock: this test brought the testbed up, not waits
	grep -q '^lock:.*FLOCK' /proc/$$/fdinfo/9 2>/dev/null
}
eval "tb_cleanup_lib() $(declare -f tb_cleanup | sed 1d)"
tb_cleanup() {
	local rc=$?
	if [ "$testbed" = yes ] && holds_lock; then (exit $rc); tb_cleanup_lib; fi
	purge
	rm -rf "$W"
	return $rc
}
trap tb_cleanup EXIT

# ---- build from the release tree (what `make dist` ships), without its tests (the suite runs them)
src=$W/moetopo-$VERSION
release_tree "$W" > "$W/distdir.log" 2>&1
ok "make distdir writes the release tree" [ -f "$src/debian/rules" ]
(cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b) > "$W/build.log" 2>&1
rc=$?
is "$rc" 0 "dpkg-buildpackage -us -uc -b builds the packages"
[ "$rc" = 0 ] || tail -25 "$W/build.log" | sed 's/^/# /'
debver=$(cd "$src" && dpkg-parsechangelog -S Version)
debs=""
for p in $PKGS; do
	f=$(ls "$W"/${p}_${debver}_*.deb 2>/dev/null | head -1)
	ok "$p $debver built" [ -n "$f" ]
	debs="$debs $f"
done
[ "$rc" = 0 ] || { echo "Bail out! no packages"; exit 1; }
if command -v lintian >/dev/null; then
	lintian --fail-on error --suppress-tags-from-file /dev/null "$W"/moetopo_${debver}_*.changes > "$W/lintian.log" 2>&1
	is "$?" 0 "lintian: no errors ($(grep -c '^W:' "$W/lintian.log") warnings)"
	grep -E '^[EW]:' "$W/lintian.log" | sed 's/^/# /'
else
	echo "ok $((_tap_n += 1)) # SKIP lintian not installed"
fi

# ---- what the packages declare
plugin_deb=$(echo $debs | cut -d' ' -f1)
deps=$(dpkg-deb -f "$plugin_deb" Depends)
hex=$(sed -n 's/^#define SLURM_VERSION_NUMBER 0x\([0-9a-fA-F]*\).*/\1/p' /usr/include/slurm/slurm_version.h)
series=$(printf '%d.%02d' "0x${hex:0:2}" "0x${hex:2:2}")
ok "the plugin depends on Slurm $series's plugin ABI (>= $series~)" grep -qF "slurm-wlm-basic-plugins (>= $series~)" <<<"$deps"
ok "... and not on a later release series" grep -qE "slurm-wlm-basic-plugins \(<< [0-9]+\.[0-9]+~\)" <<<"$deps"
# every library the plugin really links (its NEEDED entries) has its package in Depends
dpkg-deb -x "$plugin_deb" "$W/x"
needed_pkgs=$(objdump -p "$W/x$so_want" | awk '$1 == "NEEDED" {print $2}' | while read -r lib; do
	dpkg -S "*/$lib" 2>/dev/null | head -1 | cut -d: -f1; done | sort -u | tr '\n' ' ')
missing=""
for p in $needed_pkgs; do grep -qE "(^|, )$p( |,|$)" <<<"$deps" || missing="$missing $p"; done
ok "the plugin depends on the package of every library it links ($needed_pkgs)" [ -n "$needed_pkgs" ] && [ -z "$missing" ]
[ -z "$missing" ] || echo "#   not in Depends:$missing"
echo "# plugin Depends: $deps"
tools_deb=$(echo $debs | cut -d' ' -f2)
ok "moetopo depends on libhwloc (from what its programs link)" grep -q 'libhwloc' <<<"$(dpkg-deb -f "$tools_deb" Depends)"
ok "the plugin package ships the plugin in Slurm's plugin folder" grep -q "\.$so_want\$" <<<"$(dpkg-deb -c "$plugin_deb")"

# ---- install
before=$(snapshot)
$APT install $debs > "$W/install.log" 2>&1
rc=$?
[ "$rc" = 0 ] && installed=yes
is "$rc" 0 "apt-get install of the three packages"
[ "$rc" = 0 ] || { tail -15 "$W/install.log" | sed 's/^/# /'; echo "Bail out! not installed"; exit 1; }
files=$(dpkg -L $PKGS | sort -u)
for b in moetopo moe-launch moe-train; do
	is "$(command -v $b)" "/usr/bin/$b" "$b is the installed /usr/bin/$b"
done
is "$(/usr/bin/moetopo --version)" "moetopo $VERSION" "installed moetopo --version is configure.ac's $VERSION"
is "$(/usr/bin/moe-launch --version)" "moe-launch (moetopo) $VERSION" "installed moe-launch --version"
is "$(/usr/bin/moe-train --version)" "moe-train (moetopo) $VERSION" "installed moe-train --version"
for m in moetopo.1 moe-launch.1 moe-train.1; do
	ok "man page $m installed" grep -q "/usr/share/man/man1/$m.gz" <<<"$files"
done
ok "man page moe-topology.8 installed" grep -q /usr/share/man/man8/moe-topology.8.gz <<<"$files"
for p in $PKGS; do
	ok "$p's /usr/share/doc/$p/copyright grants the MIT (Expat) license" grep -qx 'License: Expat' "/usr/share/doc/$p/copyright"
done

# -dev: a program built against the installed headers and library with pkg-config alone
cat > "$W/plan.c" <<'CEOF'
#include <mt_plan.h>
#include <stdio.h>
int main(void)
{
	char err[256], **names;
	int n, tasks[4] = {8, 8, 8, 8};
	struct mt_node *node;
	struct mt_plan *plan;
	struct mt_job job = {0};
	if (mt_hostlist_expand("dgx[1-4]", &names, &n, err, sizeof err) || mt_preset_node("dgx-h100", &node, err, sizeof err))
		return fprintf(stderr, "%s\n", err), 1;
	const struct mt_node *models[4] = {node, node, node, node};
	job.n_nodes = n; job.nodes = (const char *const *)names; job.tasks = tasks; job.models = models;
	if (mt_spec_parse("ep=16,experts=32", &job.spec, err, sizeof err) || mt_plan_build(&job, &plan, err, sizeof err))
		return fprintf(stderr, "%s\n", err), 1;
	printf("world %d groups %d rank0 %s\n", plan->world, plan->n_groups, plan->ranks[plan->by_rank[0]].gpu_pci);
	return 0;
}
CEOF
cc -o "$W/plan" "$W/plan.c" $(pkg-config --cflags --libs moetopo) > "$W/cc.log" 2>&1
is "$?" 0 "a program builds with \`pkg-config --cflags --libs moetopo\` against the -dev package"
sed 's/^/# /' "$W/cc.log"
got=$("$W/plan" 2>&1)
want=$(/usr/bin/moetopo plan --json --nodes 'dgx[1-4]' --tasks-per-node 8 --preset dgx-h100 --spec ep=16,experts=32 |
	sed -n 's/^{"procid":[0-9]*,"rank":0,.*"gpu_pci":"\([^"]*\)".*/world 32 groups 2 rank0 \1/p')
is "$got" "$want" "it plans as the installed moetopo plan does (32 ranks, 2 EP groups, rank 0's GPU)"

# ---- the plugstack snippet: installed disabled, enabled by the admin guide's line
ok "the plugstack.conf.d snippet is installed" [ -f "$conf" ]
is "$(grep -c '^[[:space:]]*required' "$conf")" 0 "it is installed disabled (no active line)"
enable=$(grep -m1 "^sed -i .*$conf" "$top_srcdir/doc/admin-guide.md")
ok "the admin guide gives the line that enables it" [ -n "$enable" ]
bash -c "$enable"
so=$(awk '$1 == "required" {print $2}' "$conf")
is "$so" "$so_want" "after the admin guide's line the snippet loads the installed plugin"
ok "the installed plugin is root's and read-only to others" [ "$(stat -c '%U %a' "$so_want")" = "root 644" ]

# ---- the Slurm testbed with the installed plugin and programs
export MOE_PLUGIN=$so MOE_TESTBED_INSTALLED=1
testbed=yes
tb_start 4
run_client bash -c 'command -v moetopo moe-launch moe-train'
is "$(echo $out)" "/usr/bin/moetopo /usr/bin/moe-launch /usr/bin/moe-train" "the jobs' PATH finds the installed programs only"
ok "the testbed's plugstack.conf names the installed plugin" grep -q "^required $so_want " "$MOE_TESTBED/etc/plugstack.conf"
TW=$MOE_TESTBED/work
SPEC=ep=8,experts=16,route-groups=2
/usr/bin/moe-train prepare /usr/share/common-licenses/GPL-3 "$TW/gpl3.bin" >/dev/null
cat > "$TW/train.sbatch" <<JEOF
#!/bin/bash
#SBATCH -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=$SPEC,verbose
#SBATCH -o $TW/job.out -e $TW/job.err
srun moe-launch --timeout 120 -- moe-train --data $TW/gpl3.bin --steps 12 --seed 3 --experts 16 --top-k 2 \\
	--dim 64 --heads 4 --layers 2 --ffn 128 --expert-ffn 32 --seq-len 32 --global-batch 16 --lr 0.01 \\
	--warmup 3 --threads 1 --metrics $TW/metrics.jsonl
JEOF
run_client sbatch --parsable "$TW/train.sbatch"
is "$rc" 0 "sbatch accepts the job with --moe-topology (the installed plugin registers the option)"
job=$out
for ((i = 0; i < 600; i++)); do
	[ -z "$($TESTBED run squeue -h -j "$job" -o %T 2>/dev/null)" ] && break
	sleep 0.5
done
state=$($TESTBED run scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z]*' | head -1)
is "$state" "JobState=COMPLETED" "the training job completed"
[ "$state" = "JobState=COMPLETED" ] || tail -20 "$TW/job.err" | sed 's/^/# /'
is "$(grep -c 'moe-topology: rank' "$TW/job.err")" 8 "the installed plugin laid out the step: one binding line per rank"
ok "the installed trainer ran the planned world: 8 ranks, one EP group, shm+tcp" grep -q "world 8 (ep 8 x dp 1, transport shm+tcp)" "$TW/job.out"
first=$(head -1 "$TW/metrics.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
last=$(tail -1 "$TW/metrics.jsonl" | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
ok "loss falls: $first -> $last" awk -v a="$first" -v b="$last" 'BEGIN { exit !(a - b > 0.5) }'
is "$(cat "$MOE_TESTBED"/log/slurmd-*.log | grep -c "moe-topology: step $job\.0: planned 8 ranks on 4 nodes (moetopo $VERSION)")" 4 \
	"each node's slurmd log: the plugin's step line carries moetopo $VERSION"
(exit 0); tb_cleanup_lib; testbed=no
exec 9>&-

# ---- purge: nothing left
purge
is "$?" 0 "apt-get purge of the three packages"
for p in $PKGS; do
	# purged: dpkg either forgets the package or keeps it as not-installed ("un"); nothing else
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | tr -d ' ')
	ok "$p is gone from dpkg's database (${st:-unknown})" test "${st:-un}" = un
done
left=""
for f in $files; do
	[ -d "$f" ] && continue
	[ -e "$f" ] || [ -L "$f" ] && left="$left $f"
done
is "$left" "" "no file of the packages is left"
ok "the plugstack.conf.d snippet (edited by the admin) is gone" [ ! -e "$conf" ]
is "$(comm -13 <(echo "$before") <(snapshot) | tr '\n' ' ')" "" "nothing named for moetopo appeared anywhere"
done_testing
