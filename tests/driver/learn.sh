#!/bin/bash
# learn.sh - moe-train learns real text: on GPL-3 (present on every Debian machine) the loss falls well
# below the byte-unigram entropy of the text, which is the best a model that ignores context can do;
# and from a skewed router the aux-loss-free bias brings max/mean expert load down over the steps.
. "$srcdir/tap.sh"
bin="$top_builddir/trainer/driver/moe-train"
text=/usr/share/common-licenses/GPL-3
[ -x "$bin" ] || skip_all "moe-train not built"
[ -r "$text" ] || skip_all "$text not present"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# tests run side by side: threads that spin while waiting would take the cores the others need
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

"$bin" prepare "$text" "$tmp/gpl.bin" > /dev/null
is "$?" 0 "prepare turns the text into a shard"
# entropy of the byte histogram in nats, computed here independently of moe-train
H=$(od -An -v -tu1 "$text" | awk '{for (i = 1; i <= NF; i++) { c[$i]++; n++ } }
	END { for (k in c) { p = c[k] / n; h -= p * log(p) }; printf "%.4f", h }')
echo "# byte-unigram entropy of GPL-3: $H nats"

# a small MoE (2 layers: one dense, one with 8 experts top-2) that fits the CI budget under ASan
model="--dim 32 --heads 2 --layers 2 --dense-layers 1 --ffn 64 --expert-ffn 16 --experts 8 --top-k 2 --seq-len 32 --init-std 0.1"
"$bin" --data "$tmp/gpl.bin" $model --batch 16 --steps 150 --lr 0.01 --min-lr 0.001 \
	--warmup 10 --bias-gamma 0.01 --seed 1 --metrics "$tmp/m.jsonl" --log-every 10 > "$tmp/out" 2> "$tmp/err"
is "$?" 0 "training runs 150 steps"
sed 's/^/# /' "$tmp/err"
is "$(wc -l < "$tmp/m.jsonl")" 150 "one metrics line per step"
loss() { sed -n "$1p" "$tmp/m.jsonl" | sed 's/.*"loss":\([^,]*\).*/\1/'; }
first=$(loss 1)
# the final loss is the mean of the last 10 steps, so one noisy batch does not decide
last=$(tail -n 10 "$tmp/m.jsonl" | sed 's/.*"loss":\([^,]*\).*/\1/' | awk '{ s += $1 } END { printf "%.4f", s / NR }')
echo "# loss: first $first, mean of the last 10 steps $last; unigram entropy $H"
ok "the first loss is near ln 256 = 5.545 (an untrained model guesses uniformly)" \
	awk -v l="$first" 'BEGIN { exit !(l > 5.0 && l < 6.2) }'
ok "the final loss is well below the unigram entropy (< 0.8 x $H)" awk -v l="$last" -v h="$H" 'BEGIN { exit !(l < 0.8 * h) }'
ok "every step has a progress line with parseable numbers" \
	awk '/^step / { n++; if ($2 !~ /^[0-9]+\/150$/ || $4 + 0 <= 0 || $12 + 0 <= 0 || $14 + 0 < 1) bad++ }
	     END { exit !(n == 15 && !bad) }' "$tmp/out"
ok "a final summary line" grep -q '^done: steps 1\.\.150 of 150, loss ' "$tmp/out"
ok "metrics lines carry the documented keys" \
	awk '!/^\{"step":[0-9]+,"loss":[0-9.e+-]+,.*"tokens_per_s":[0-9.]+,"max_load_over_mean":[0-9.]+,"a2a_bytes":[0-9]+/ { bad++ }
	     END { exit bad }' "$tmp/m.jsonl"

# skewed start: router bias of expert e = 0.5*(7-e)/7, so the first experts take most tokens; a small
# learning rate keeps the router weights nearly still, so what moves the load is the bias update
"$bin" --data "$tmp/gpl.bin" $model --batch 8 --steps 30 --lr 0.001 --warmup 5 \
	--router-skew 0.5 --bias-gamma 0.02 --seed 3 --metrics "$tmp/skew.jsonl" --quiet > /dev/null
is "$?" 0 "training from a skewed router runs"
load() { sed 's/.*"max_load_over_mean":\([^,]*\).*/\1/' "$tmp/skew.jsonl" | sed -n "$1"; }
l0=$(load 1p)
l1=$(load '21,30p' | awk '{ s += $1 } END { printf "%.4f", s / NR }')
echo "# max/mean expert load: step 1 $l0, mean of steps 21-30 $l1 (8 experts top-2: 4 = every token on the same two)"
ok "the skewed router starts unbalanced (max/mean > 3)" awk -v l="$l0" 'BEGIN { exit !(l > 3) }'
ok "the bias brings max/mean load down by more than a third" awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < 0.65 * a) }'
# control: the same run without bias updates stays unbalanced, so the bias is what balanced it
"$bin" --data "$tmp/gpl.bin" $model --batch 8 --steps 30 --lr 0.001 --warmup 5 \
	--router-skew 0.5 --bias-gamma 0 --seed 3 --metrics "$tmp/skew.jsonl" --quiet > /dev/null
l2=$(load '21,30p' | awk '{ s += $1 } END { printf "%.4f", s / NR }')
echo "# with --bias-gamma 0: mean of steps 21-30 $l2"
ok "without bias updates the load stays skewed" awk -v a="$l0" -v b="$l2" 'BEGIN { exit !(b > 0.9 * a) }'
done_testing
