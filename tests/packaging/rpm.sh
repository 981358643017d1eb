#!/bin/bash
# rpm.sh - `rpmbuild -bb` of packaging/rpm/moetopo.spec from the release tarball, on this machine's rpm
# tooling.  On Debian (rpm from apt) the BuildRequires are Debian packages rpm cannot see (--nodeps), and
# the spec's Slurm plugin folder is pointed at Debian's with --define _slurm_plugindir; on an RPM
# distribution `rpmbuild -ta moetopo-VERSION.tar.gz` needs neither.  Checks the three packages, their
# files and the plugin's Slurm requirement.  Skips without rpmbuild.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/packaging/lib.sh"
command -v rpmbuild >/dev/null || skip_all "no rpmbuild (apt-get install rpm)"
[ -f /usr/include/slurm/spank.h ] || skip_all "no slurm/spank.h: the plugin package cannot be built"
W=$(mktemp -d /tmp/moetopo-rpm.XXXXXX) || exit 1
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/SOURCES"
release_tree "$W" > "$W/distdir.log" 2>&1
tar -C "$W" -czf "$W/SOURCES/moetopo-$VERSION.tar.gz" "moetopo-$VERSION"
defs=(--define "_topdir $W" --define "_smp_mflags -j$(nproc)" --without check)
if [ -f /etc/debian_version ]; then
	plugindir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/slurm-wlm
	defs+=(--nodeps --define "_slurm_plugindir $plugindir" --define "debug_package %{nil}")
else
	plugindir=$(rpm --eval '%{_libdir}')/slurm
fi
rpmbuild -bb "${defs[@]}" "$W/moetopo-$VERSION/packaging/rpm/moetopo.spec" > "$W/build.log" 2>&1
rc=$?
is "$rc" 0 "rpmbuild -bb packaging/rpm/moetopo.spec"
[ "$rc" = 0 ] || tail -25 "$W/build.log" | sed 's/^/# /'
for p in moetopo moetopo-devel slurm-spank-moe-topology; do
	f=$(ls "$W"/RPMS/*/$p-$VERSION-1*.rpm 2>/dev/null | head -1)
	ok "$p-$VERSION built" [ -n "$f" ]
	eval "rpm_${p//-/_}=\$f"
done
[ "$rc" = 0 ] || { done_testing; exit 1; }
plist=$(rpm -qpl "$rpm_slurm_spank_moe_topology" 2>/dev/null)
ok "the plugin package holds $plugindir/moe_topology.so" grep -qx "$plugindir/moe_topology.so" <<<"$plist"
ok "... and the plugstack.conf.d snippet" grep -qx /etc/slurm/plugstack.conf.d/moe_topology.conf <<<"$plist"
ok "the snippet is a %config file" grep -qx /etc/slurm/plugstack.conf.d/moe_topology.conf <<<"$(rpm -qpc "$rpm_slurm_spank_moe_topology" 2>/dev/null)"
hex=$(sed -n 's/^#define SLURM_VERSION_NUMBER 0x\([0-9a-fA-F]*\).*/\1/p' /usr/include/slurm/slurm_version.h)
series=$(printf '%d.%02d' "0x${hex:0:2}" "0x${hex:2:2}")
req=$(rpm -qp --requires "$rpm_slurm_spank_moe_topology" 2>/dev/null)
ok "the plugin requires Slurm's $series series (slurm >= $series)" grep -qx "slurm >= $series" <<<"$req"
ok "... and not a later one (slurm < ...)" grep -qE '^slurm < [0-9]+\.[0-9]+$' <<<"$req"
# every library the plugin really links (its NEEDED entries) is required
mkdir -p "$W/x" && (cd "$W/x" && rpm2cpio "$rpm_slurm_spank_moe_topology" | cpio -id --quiet)
so=$(find "$W/x" -name moe_topology.so | head -1)
needed=$(objdump -p "$so" 2>/dev/null | awk '$1 == "NEEDED" {print $2}')
missing=""
for l in $needed; do grep -q "^$l" <<<"$req" || missing="$missing $l"; done
ok "the plugin requires every library it links ($(echo $needed))" [ -n "$needed" ] && [ -z "$missing" ]
[ -z "$missing" ] || echo "#   not required:$missing"
ok "moetopo holds the programs and man pages" bash -c 'for f in /usr/bin/moetopo /usr/bin/moe-launch /usr/bin/moe-train; do grep -qx $f <<<"$1" || exit 1; done; grep -q "man1/moe-train.1" <<<"$1"' _ "$(rpm -qpl "$rpm_moetopo")"
ok "moetopo-devel holds the headers and moetopo.pc" bash -c 'grep -q "/usr/include/moetopo/mt_plan.h" <<<"$1" && grep -q "pkgconfig/moetopo.pc" <<<"$1"' _ "$(rpm -qpl "$rpm_moetopo_devel")"
# moetopo-devel requires moetopo, so it needs no license file of its own; the plugin package does not
for p in moetopo slurm-spank-moe-topology; do
	v=rpm_${p//-/_}
	ok "$p: License MIT, LICENSE as its %license" bash -c '[ "$(rpm -qp --qf "%{LICENSE}" "$1")" = MIT ] &&
		rpm -qpL "$1" | grep -q "/LICENSE$"' _ "${!v}"
done
done_testing
