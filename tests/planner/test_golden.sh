#!/bin/sh
# test_golden.sh - golden plans, as LLNL mpibind keeps golden mappings: for every real fixture and a few
# job shapes (tests/planner/golden/cases.tsv), `moetopo plan --json` must print exactly the checked-in
# tests/planner/golden/NAME.json (rank, GPU, NIC, cpuset, EP group... one rank per line), so any change
# in planner or node-model behaviour shows as a diff.
#
# After an intended change, regenerate explicitly and review the diff before committing:
#   top_builddir=BUILD sh tests/planner/test_golden.sh --regenerate     (from the source tree)
# The test itself never writes the files.
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
. "$top_srcdir/tests/tap.sh"
M=$top_builddir/topology/cli/moetopo
[ -x "$M" ] || skip_all "moetopo not built"
G=$top_srcdir/tests/planner/golden
FX=$top_srcdir/tests/fixtures
regen=no
[ "${1:-}" = --regenerate ] && regen=yes
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

tab=$(printf '\t')
grep -v '^#' "$G/cases.tsv" | while IFS="$tab" read -r name args; do
	[ -n "$name" ] || continue
	# shellcheck disable=SC2086  # the arguments are words; $FX is the only expansion
	set -f
	set -- $(echo "$args" | sed "s|\\\$FX|$FX|g")
	set +f
	if "$M" plan "$@" --json >"$T/out" 2>"$T/err"; then
		if [ $regen = yes ]; then
			cp "$T/out" "$G/$name.json"
			echo "# wrote $name.json"
		fi
		if [ -f "$G/$name.json" ] && diff -u "$G/$name.json" "$T/out" >"$T/diff"; then
			echo "ok - $name"
		else
			echo "not ok - $name: the plan differs from golden/$name.json"
			sed 's/^/#   /' "$T/diff" | head -40
		fi
	else
		echo "not ok - $name: moetopo plan failed: $(head -1 "$T/err")"
	fi
done >"$T/tap"
n=0
while IFS= read -r l; do
	case $l in
	"ok - "* | "not ok - "*) n=$((n + 1)); echo "$l" | sed "s/^\(not \)\{0,1\}ok -/&/;s/^ok -/ok $n -/;s/^not ok -/not ok $n -/" ;;
	*) echo "$l" ;;
	esac
done <"$T/tap"
echo "1..$n"
! grep -q '^not ok' "$T/tap"
