#!/bin/bash
# man_options.sh - each man page lists exactly the options its program's --help lists (moetopo: per
# command), so neither can gain or lose an option without the other.  --help/--version are left out of
# the comparison (moe-train names them only in its usage line); the pages must still mention --version.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/packaging/lib.sh"
for p in "$MOETOPO" "$MOE_LAUNCH" "$MOE_TRAIN"; do [ -x "$p" ] || skip_all "$p not built"; done
doc=$top_srcdir/doc

# long options of a --help text: the first column of its option lines ("  -x, --opt ARG  text", "  --opt")
help_opts() {
	sed -n 's/^ \{1,6\}\(-[A-Za-z0-9], \)\{0,1\}\(--[a-z0-9-]*\).*/\2/p' | grep -vxE -- '--(help|version)' | sort -u
}
# long options of a man page part: the tag line after each .TP between START and the next STOP line
man_opts() {  # man_opts FILE START STOP
	awk -v start="$2" -v stop="$3" '
		on && $0 ~ stop { on = 0 }
		on && tp { print; tp = 0 }
		on && /^\.TP/ { tp = 1 }
		$0 ~ start { on = 1 }' "$1" |
		sed 's/\\-/-/g; s/\\f[BIRP]//g' | grep -o -- '--[a-z0-9-]*' | grep -vxE -- '--(help|version)' | sort -u
}
same() {  # same DESC MAN_OPTS HELP_OPTS
	local only_man only_help
	only_man=$(comm -23 <(echo "$2") <(echo "$3") | tr '\n' ' ')
	only_help=$(comm -13 <(echo "$2") <(echo "$3") | tr '\n' ' ')
	ok "$1 ($(echo "$3" | grep -c .) options)" [ -z "$only_man$only_help" ] && [ -n "$3" ]
	[ -z "$only_man" ] || echo "#   only in the man page: $only_man"
	[ -z "$only_help" ] || echo "#   only in --help: $only_help"
}

for cmd in show export plan simulate; do
	same "moetopo(1) \"moetopo $cmd\" lists the options of moetopo $cmd --help" \
		"$(man_opts "$doc/moetopo.1" "^\\.SS \"moetopo $cmd\"" '^\.S[SH] ')" "$("$MOETOPO" "$cmd" --help | help_opts)"
done
same "moe-launch(1) OPTIONS lists the options of moe-launch --help" \
	"$(man_opts "$doc/moe-launch.1" '^\.SH OPTIONS' '^\.SH ')" "$("$MOE_LAUNCH" --help | help_opts)"
same "moe-train(1) OPTIONS lists the options of moe-train --help" \
	"$(man_opts "$doc/moe-train.1" '^\.SH OPTIONS' '^\.SH ')" "$("$MOE_TRAIN" --help | help_opts)"
# the comparison itself: an option missing from a page is reported
ok "an option dropped from a page is noticed" \
	[ "$(sed '/^\.B \\-\\-dry\\-run$/d' "$doc/moe-launch.1" > "${TMPDIR:-/tmp}/ml.$$.1"; man_opts "${TMPDIR:-/tmp}/ml.$$.1" '^\.SH OPTIONS' '^\.SH ' | grep -c -- --dry-run; rm -f "${TMPDIR:-/tmp}/ml.$$.1")" = 0 ]
for page in moetopo.1 moe-launch.1 moe-train.1; do
	ok "$page mentions --version" grep -q -- '\\-\\-version' "$doc/$page"
done
if command -v man >/dev/null; then
	for page in moetopo.1 moe-launch.1 moe-train.1 moe-topology.8; do
		w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$doc/$page" 2>&1 >/dev/null)
		is "$w" "" "$page formats without groff warnings"
	done
else
	echo "ok $((_tap_n += 1)) # SKIP man not installed: pages not formatted"
fi
done_testing
