#!/bin/bash
# a2a_timing.sh - --a2a-timing sync (all ranks meet at a barrier before each timed MoE all-to-all)
# changes what is timed, never what is trained: 4 ranks as EP=2 x DP=2 (two EP groups, both meeting at
# the barriers) train 6 steps with and without it and write the same metrics bit for
# bit apart from the wall-clock figures; with it every step reports a2a_wait_ms (a number >= 0, and
# a2a_ms + a2a_wait_ms within the step's time), without it a2a_wait_ms is null; the banner and the
# progress line say so.  A bad value is refused in tests/driver/cli.sh.
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/driver/lib.sh"
trainer_need "$TRAIN" "$ML"
trainer_data "$top_srcdir"/trainer/model/*.c
args=(--data "$tmp/data.bin" --dim 32 --heads 2 --layers 2 --dense-layers 0 --ffn 32 --expert-ffn 16
      --experts 8 --top-k 2 --seq-len 16 --global-batch 8 --steps 6 --seed 5 --threads 1)
field() { grep -o "\"$1\":[^,}]*" "$2" | cut -d: -f2-; }

for t in off sync; do
	"$ML" --nproc 4 --spec ep=2,experts=8 -- "$TRAIN" "${args[@]}" --a2a-timing $t --metrics "$tmp/$t.jsonl" \
		> "$tmp/$t.out" 2>&1
	rc=$?
	is "$rc $(wc -l < "$tmp/$t.jsonl")" "0 6" "--a2a-timing $t: EP=2 x DP=2 trains 6 steps"
	[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/$t.out" | tail -5
done
is "$(field loss "$tmp/sync.jsonl" | md5sum)" "$(field loss "$tmp/off.jsonl" | md5sum)" \
	"the same loss bits at all 6 steps with and without the barriers"
is "$(metrics_keys "$tmp/sync.jsonl" | md5sum)" "$(metrics_keys "$tmp/off.jsonl" | md5sum)" \
	"the same metrics apart from the wall-clock figures (routing, bytes by domain, norms)"
ok "sync: a2a_wait_ms a number >= 0 at every step (> 0 in all), a2a_ms + a2a_wait_ms below the step's ms" \
	awk '{ if ($1 !~ /^[0-9.]+$/ || $2 + $1 >= $3) bad++; w += $1 } END { exit bad > 0 || NR != 6 || w <= 0 }' \
	<(paste -d' ' <(field a2a_wait_ms "$tmp/sync.jsonl") <(field a2a_ms "$tmp/sync.jsonl") <(field ms "$tmp/sync.jsonl"))
is "$(field a2a_wait_ms "$tmp/off.jsonl" | sort -u)" null "off (the default): a2a_wait_ms is null"
ok "sync: the banner says sync timing" grep -q '^moe-train: world 4 .*, a2a [a-z]*, sync timing$' "$tmp/sync.out"
is "$(grep -c '^step .* a2a_ms [0-9.]* a2a_wait_ms [0-9.]* cpu/fp32' "$tmp/sync.out")" 6 \
	"sync: every progress line shows a2a_wait_ms after a2a_ms"
is "$(grep -c 'a2a_wait_ms\|sync timing' "$tmp/off.out")" 0 "off: neither the banner nor the progress lines mention it"
done_testing
