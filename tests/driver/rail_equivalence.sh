#!/bin/bash
# rail_equivalence.sh - the rail-aligned all-to-all (MOE_A2A=rail) must not change training: 4 ranks on
# two pretend nodes (MOE_COMM_HOST: ranks 0,1 on one, 2,3 on the other, shm inside, tcp between them)
# trained for 20 steps give bit-identical losses and routing in rail and direct mode; in rail mode every
# cross-node byte stays on its rail (a2a_rail_fraction 1) and tokens bound for two experts on one node
# cross it once (a2a_dedup_bytes > 0), in direct mode neither.  The per-step all-to-all figures add up:
# bytes inside + across NVLink domains (MOE_DOMAIN = the pretend node) = a2a_bytes, across = the
# cross-node bytes in direct mode, a2a_ms > 0; on one real node nothing crosses a domain.
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/driver/lib.sh"
trainer_need "$TRAIN" "$ML"
trainer_data "$top_srcdir"/trainer/*/*.c
args=(--data "$tmp/data.bin" --dim 32 --heads 2 --layers 3 --dense-layers 1 --ffn 64 --expert-ffn 32
      --experts 8 --top-k 4 --route-scale 2.5 --bias-gamma 0.01
      --seq-len 32 --global-batch 8 --steps 20 --seed 3 --threads 1 --quiet)
field() { grep -o "\"$1\":\(\[[^]]*\]\|[^,}]*\)" "$2" | cut -d: -f2-; }

# each rank leaves the launcher's table and meets the others through the rendezvous, publishing
# its pretend node's name
pretend='unset MOE_COMM_PEERS MOE_COMM_FD; MOE_COMM_HOST=node$((MOE_RANK / 2)) MOE_DOMAIN=node$((MOE_RANK / 2)) exec "$0" "$@"'
for mode in rail direct; do
	MOE_A2A=$mode "$ML" --nproc 4 --spec ep=4,experts=8 -- sh -c "$pretend" "$TRAIN" "${args[@]}" \
		--metrics "$tmp/$mode.jsonl" > "$tmp/$mode.out" 2>&1
	rc=$?
	is "$rc $(wc -l < "$tmp/$mode.jsonl")" "0 20" "MOE_A2A=$mode: 4 ranks on 2 pretend nodes train 20 steps"
	[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/$mode.out" | tail -5
	ok "MOE_A2A=$mode: shm inside a node, tcp between, a2a $mode" \
		grep -q "transport shm+tcp), .*a2a $mode" "$tmp/$mode.out"
done
is "$(field loss "$tmp/rail.jsonl" | md5sum)" "$(field loss "$tmp/direct.jsonl" | md5sum)" \
	"rail and direct: the same loss bits at all 20 steps"
is "$(field max_load_over_mean "$tmp/rail.jsonl" | md5sum)" "$(field max_load_over_mean "$tmp/direct.jsonl" | md5sum)" \
	"rail and direct: the same routing balance at all 20 steps"
is "$(field a2a_bytes "$tmp/rail.jsonl" | md5sum)" "$(field a2a_bytes "$tmp/direct.jsonl" | md5sum)" \
	"rail and direct: the same all-to-all payload per step"
is "$(field a2a_rail_fraction "$tmp/rail.jsonl" | sort -u)" "1.000000" "rail: every cross-node byte on its rail"
ok "direct: half of the cross-node bytes leave their rail (2 local ranks)" \
	awk '{ if ($1 >= 0.9 || $1 <= 0.1) bad++ } END { exit bad > 0 || NR != 20 }' <(field a2a_rail_fraction "$tmp/direct.jsonl")
ok "rail: deduplication kept bytes off the network at every step" \
	awk '{ if ($1 <= 0) bad++ } END { exit bad > 0 || NR != 20 }' <(field a2a_dedup_bytes "$tmp/rail.jsonl")
is "$(field a2a_dedup_bytes "$tmp/direct.jsonl" | sort -u)" 0 "direct: nothing deduplicated"
ok "rail: fewer bytes crossed nodes than in direct mode" \
	test "$(field a2a_cross_bytes "$tmp/rail.jsonl" | awk '{ s += $1 } END { print s }')" \
	-lt "$(field a2a_cross_bytes "$tmp/direct.jsonl" | awk '{ s += $1 } END { print s }')"

# bytes by NVLink domain and time in the all-to-alls, per step
sums() {  # sums FILE: per step, "a2a_bytes domain+xdomain xdomain cross"
	paste -d' ' <(field a2a_bytes "$1") <(field a2a_domain_bytes "$1") <(field a2a_xdomain_bytes "$1") \
		<(field a2a_cross_bytes "$1") | awk '{ print $1, $2 + $3, $3, $4 }'
}
for mode in rail direct; do
	ok "$mode: bytes inside + across domains = a2a_bytes, both > 0, at every step" \
		awk '{ if ($1 != $2 || $3 <= 0 || $3 >= $1) bad++ } END { exit bad > 0 || NR != 20 }' <(sums "$tmp/$mode.jsonl")
	ok "$mode: a2a_ms > 0 and below the step's ms at every step" \
		awk '{ if ($1 <= 0 || $1 >= $2) bad++ } END { exit bad > 0 || NR != 20 }' \
		<(paste -d' ' <(field a2a_ms "$tmp/$mode.jsonl") <(field ms "$tmp/$mode.jsonl"))
done
ok "direct: the bytes across domains are the bytes across nodes (domains = pretend nodes)" \
	awk '{ if ($3 != $4) bad++ } END { exit bad > 0 || NR != 20 }' <(sums "$tmp/direct.jsonl")
"$ML" --nproc 4 --spec ep=4,experts=8 -- "$TRAIN" "${args[@]:0:${#args[@]}-1}" --steps 5 --metrics "$tmp/one.jsonl" > "$tmp/one.out" 2>&1
is "$?:$(field a2a_xdomain_bytes "$tmp/one.jsonl" | sort -u)" "0:0" "one node, progress lines on (no --quiet): no byte crosses a domain"
ok "one node: every a2a byte stays inside the domain" \
	awk '{ if ($1 != $2 || $1 <= 0) bad++ } END { exit bad > 0 || NR != 5 }' <(sums "$tmp/one.jsonl")
ok "the progress line shows a2a_ms" grep -q '^step .* a2a [0-9.]*[KMG]*i*B a2a_ms [0-9.]* cpu/fp32' "$tmp/one.out"

MOE_A2A=sideways "$TRAIN" "${args[@]}" > "$tmp/bad.out" 2>&1
rc=$?
ok "MOE_A2A=sideways: refused with one line naming the choices (exit $rc)" \
	sh -c "[ $rc -ne 0 ] && grep -q \"MOE_A2A='sideways' is not an all-to-all mode (valid: direct, rail\" '$tmp/bad.out'"
MOE_WORLD_SIZE=2 MOE_RANK=1 MOE_MASTER_ADDR=127.0.0.1 MOE_MASTER_PORT=9 MOE_COMM_HOST='node 1' \
	"$TRAIN" "${args[@]}" > "$tmp/badhost.out" 2>&1
rc=$?
ok "MOE_COMM_HOST with a blank: refused before the rendezvous (exit $rc)" \
	sh -c "[ $rc -ne 0 ] && grep -q \"MOE_COMM_HOST='node 1' is not a node name\" '$tmp/badhost.out'"
done_testing
