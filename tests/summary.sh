#!/bin/bash
# summary.sh BUILDDIR - count TAP test points over every .trs automake wrote; print the CI line.
dir=${1:-.}
pass=0 fail=0 skip=0
while IFS= read -r r; do
	case "$r" in
	PASS|XFAIL) pass=$((pass + 1)) ;;
	SKIP) skip=$((skip + 1)) ;;
	*) fail=$((fail + 1)) ;;
	esac
done < <(find "$dir" -name '*.trs' -exec sed -n 's/^:test-result: *//p' {} +)
# a test script that ran no test point or died still counts as a failure through its global result
while IFS= read -r f; do
	g=$(sed -n 's/^:global-test-result: *//p' "$f")
	n=$(grep -c '^:test-result:' "$f")
	case "$g" in FAIL|ERROR) [ "$n" -eq 0 ] && fail=$((fail + 1)) ;; esac
done < <(find "$dir" -name '*.trs')
echo "$pass passed, $fail failed, $skip skipped"
