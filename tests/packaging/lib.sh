# lib.sh - what the packaging tests share: the programs of the build tree, the version from configure.ac.
: "${top_srcdir:?}" "${top_builddir:?}"
MOETOPO=$top_builddir/topology/cli/moetopo
MOE_LAUNCH=$top_builddir/launcher/moe-launch
MOE_TRAIN=$top_builddir/trainer/driver/moe-train
PLUGIN_SO=$top_builddir/plugin/.libs/moe_topology.so
# the one place the version is written: AC_INIT([moetopo], [VERSION], ...)
VERSION=$(sed -n 's/^AC_INIT(\[moetopo\], *\[\([^]]*\)\].*/\1/p' "$top_srcdir/configure.ac")
# make as a test calls it: not the enclosing `make check`'s flags, jobserver or command-line variables
pkg_make() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make "$@"; }
# release_tree DIR: the tree `make dist` would pack, written to DIR/moetopo-VERSION.  (make distdir takes
# only a relative distdir through the subfolders, so it is written beside the build, then moved.)
release_tree() {
	local rel=_pkgtest.$$.$RANDOM
	mkdir -p "$top_builddir/$rel" &&
		pkg_make -s -C "$top_builddir" distdir distdir="$rel/moetopo-$VERSION" &&
		mv "$top_builddir/$rel/moetopo-$VERSION" "$1/" && rmdir "$top_builddir/$rel"
	local rc=$?
	[ $rc = 0 ] || { chmod -R u+w "$top_builddir/$rel" 2>/dev/null; rm -rf "$top_builddir/$rel"; }
	return $rc
}
