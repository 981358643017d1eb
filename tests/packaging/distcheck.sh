#!/bin/bash
# distcheck.sh - `make distcheck`: the release tarball builds out of tree with a read-only source, its
# tests pass, it installs and uninstalls cleanly; and it holds what a build, a test run and the packages
# need (fixtures, docs, man pages, contrib/, debian/, the RPM spec).
#
# Inside it, `make check` runs the self-contained tests (`make -C tests print-build-tests`: all but those
# that bring up the Slurm testbed or build packages), to keep CI short; the full suite inside distcheck
# is `make distcheck` by hand.  MOE_DISTCHECK_TESTS overrides the list ("all": every test).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/packaging/lib.sh"
case "${MOE_DISTCHECK:-yes}" in no) skip_all "MOE_DISTCHECK=no" ;; esac
command -v tar >/dev/null || skip_all "no tar"
log=$top_builddir/tests/packaging/distcheck.out
mkdir -p "$(dirname "$log")"
tests=${MOE_DISTCHECK_TESTS:-$(pkg_make -s -C "$top_builddir/tests" print-build-tests)}
if [ "$tests" = all ]; then set -- ; else set -- TESTS="$tests"; fi
echo "# tests inside distcheck: $(wc -w <<<"${tests}") (log: tests/packaging/distcheck.out)"
pkg_make -C "$top_builddir" distcheck "$@" > "$log" 2>&1
rc=$?
is "$rc" 0 "make distcheck passes"
[ "$rc" = 0 ] || { grep -E '^(FAIL|ERROR)|rror' "$log" | head -20 | sed 's/^/# /'; tail -15 "$log" | sed 's/^/# /'; }
tarball=$top_builddir/moetopo-$VERSION.tar.gz
ok "it leaves moetopo-$VERSION.tar.gz" [ -f "$tarball" ]
list=$(tar tzf "$tarball" 2>/dev/null | sed "s|^moetopo-$VERSION/||")
for f in configure NEWS README.md tests/fixtures/MANIFEST.tsv tests/fixtures/hwloc/flux-core__ipa20.xml \
	doc/admin-guide.md doc/moetopo.1 doc/moe-launch.1 doc/moe-train.1 doc/moe-topology.8 \
	contrib/moetopo-prolog.sh contrib/plugstack.conf.d/moe_topology.conf debian/rules debian/control \
	packaging/rpm/moetopo.spec tests/slurm/testbed.sh tests/packaging/debs.sh; do
	ok "the tarball holds $f" grep -qx "$f" <<<"$list"
done
# every fixture in the source tree is in the tarball (the tests read them all)
missing=$(cd "$top_srcdir" && find tests/fixtures -type f | sort | comm -23 - <(sort <<<"$list") | head -5)
is "$missing" "" "the tarball holds every file of tests/fixtures"
# every file the repository tracks is in the tarball, except the few that only serve git
if command -v git >/dev/null && git -C "$top_srcdir" rev-parse --git-dir >/dev/null 2>&1; then
	missing=$(git -C "$top_srcdir" ls-files | grep -vE '(^|/)\.gitignore$|^(m4|build-aux)/\.keep$' | sort |
		comm -23 - <(sort <<<"$list") | tr '\n' ' ')
	is "$missing" "" "the tarball holds every file git tracks (EXTRA_DIST is complete)"
else
	echo "ok $((_tap_n += 1)) # SKIP not a git checkout: tracked files not compared"
fi
done_testing
