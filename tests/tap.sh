# tap.sh - TAP helpers for shell tests; source it.  ok COND-CMD... / is GOT WANT DESC / done_testing
_tap_n=0; _tap_fail=0
ok() {  # ok "desc" cmd args...   (passes when the command succeeds)
	local d=$1; shift
	_tap_n=$((_tap_n + 1))
	if "$@"; then echo "ok $_tap_n - $d"; else echo "not ok $_tap_n - $d"; _tap_fail=$((_tap_fail + 1)); fi
}
is() {  # is GOT WANT "desc"
	_tap_n=$((_tap_n + 1))
	if [ "$1" = "$2" ]; then echo "ok $_tap_n - $3"
	else echo "not ok $_tap_n - $3"; printf '#   got:  %s\n#   want: %s\n' "$1" "$2"; _tap_fail=$((_tap_fail + 1)); fi
}
skip_all() { echo "1..0 # SKIP $*"; exit 0; }
done_testing() { echo "1..$_tap_n"; [ $_tap_fail -eq 0 ]; }
# metrics_keys FILE: moe-train's metrics JSON lines without their wall-clock figures (runs that must
# agree bit for bit differ only in those)
metrics_keys() { sed -E 's/"(ms|tokens_per_s|a2a_ms|a2a_wait_ms|mfu)":[^,}]*,?//g' "$1"; }
