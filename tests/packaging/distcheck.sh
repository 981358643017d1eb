#!/bin/bash
# distcheck.sh - `make distcheck`: the release tarball builds out of tree from a read-only source (and
# writes nothing there: the top Makefile.am's distcleancheck_listfiles checks that where root ignores the
# read-only bit), its tests pass, it installs and uninstalls cleanly; and it holds every file git tracks
# but those named in NOT_SHIPPED below, so the build, the tests and both package formats find their files.
#
# Inside it, `make check` runs `make -C tests print-distcheck-tests` (the unit tests, not the long
# end-to-end runs the outer `make check` does), to keep CI short.  MOE_DISTCHECK_TESTS overrides the
# list ("all": every test, as a plain `make distcheck` runs them).  MOE_DISTCHECK=no skips this test.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/packaging/lib.sh"
# Tracked files the tarball leaves out on purpose: they only serve git (a release tarball is no checkout).
NOT_SHIPPED='(^|/)\.gitignore$|^(m4|build-aux)/\.keep$'
case "${MOE_DISTCHECK:-yes}" in no) skip_all "MOE_DISTCHECK=no" ;; esac
# A plain `make distcheck` runs every test, this one too: a distcheck in there would only repeat it.
[ "$top_builddir" = "$top_srcdir/_build/sub" ] && skip_all "inside make distcheck (nothing to repeat)"
command -v tar >/dev/null || skip_all "no tar"
log=$top_builddir/tests/packaging/distcheck.out
mkdir -p "$(dirname "$log")"
tests=${MOE_DISTCHECK_TESTS:-$(pkg_make -s --no-print-directory -C "$top_builddir/tests" print-distcheck-tests)}
if [ "$tests" = all ]; then set -- ; else set -- TESTS="$tests"; fi
echo "# tests inside distcheck: $(wc -w <<<"${tests}") (log: tests/packaging/distcheck.out)"
start=$(date +%s)
# without the CUDA backend: nvcc is the slowest part of a build, and the tarball check above already
# covers the .cu files (automake ships conditional sources either way)
pkg_make -j"$(nproc)" -C "$top_builddir" distcheck DISTCHECK_CONFIGURE_FLAGS=--without-cuda "$@" > "$log" 2>&1
rc=$?
echo "# make distcheck: $(($(date +%s) - start)) s"
is "$rc" 0 "make distcheck passes"
[ "$rc" = 0 ] || { grep -E '^(FAIL|ERROR)|rror' "$log" | head -20 | sed 's/^/# /'; tail -15 "$log" | sed 's/^/# /'; }
# what the inner `make check` counted (make distcheck removes the unpacked tree and its logs when it passes)
echo "# inner $(grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR): ' "$log" | tr -s ' ' | cut -c3- | paste -sd' ')"
ok "make distcheck ran the inner tests" grep -qE '^# TOTAL: +[1-9]' "$log"
tarball=$top_builddir/moetopo-$VERSION.tar.gz
ok "it leaves moetopo-$VERSION.tar.gz" [ -f "$tarball" ]
list=$(tar tzf "$tarball" 2>/dev/null | sed "s|^moetopo-$VERSION/||")
for f in configure LICENSE NEWS README.md tests/fixtures/MANIFEST.tsv tests/fixtures/hwloc/flux-core__ipa20.xml \
	doc/admin-guide.md doc/moetopo.1 doc/moe-launch.1 doc/moe-train.1 doc/moe-topology.8 \
	contrib/moetopo-prolog.sh contrib/plugstack.conf.d/moe_topology.conf examples/quickstart.sh \
	debian/rules debian/control debian/copyright packaging/rpm/moetopo.spec packaging/rpm/moetopo.spec.in \
	tests/slurm/testbed.sh tests/packaging/debs.sh; do
	ok "the tarball holds $f" grep -qx "$f" <<<"$list"
done
# every fixture and golden plan in the source tree is in the tarball (the tests read them all; tar
# formats that cut long names drop files with only a warning)
missing=$(cd "$top_srcdir" && find tests/fixtures tests/planner/golden -type f | sort | comm -23 - <(sort <<<"$list") | head -5)
is "$missing" "" "the tarball holds every file of tests/fixtures and tests/planner/golden"
# every file the repository tracks is in the tarball, except NOT_SHIPPED
if command -v git >/dev/null && git -C "$top_srcdir" rev-parse --git-dir >/dev/null 2>&1; then
	missing=$(git -C "$top_srcdir" ls-files | grep -vE "$NOT_SHIPPED" | sort |
		comm -23 - <(sort <<<"$list") | tr '\n' ' ')
	is "$missing" "" "the tarball holds every file git tracks (EXTRA_DIST is complete)"
else
	echo "ok $((_tap_n += 1)) # SKIP not a git checkout: tracked files not compared"
fi
done_testing
