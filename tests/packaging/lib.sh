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
