#!/bin/bash
# ep_equivalence.sh - expert parallelism must not change training: the same model, seed and global
# batch trained for 20 steps as one process (EP=1) and under moe-launch with EP=2 and EP=4 (shm and
# tcp), and EP=2 x DP=2, gives the same loss at every step within 1e-5 relative and the same routing
# (max/mean expert load, and the per-expert loads when the metrics carry them).
# Group-limited routing is on (--groups 4 --group-topk 2) with a fast-moving router bias, so the
# routing, the exchanges and the bias update are all exercised.
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/driver/lib.sh"
trainer_need "$TRAIN" "$ML"
trainer_data "$top_srcdir"/trainer/*/*.c

args=(--data "$tmp/data.bin" --dim 32 --heads 2 --layers 3 --dense-layers 1 --ffn 64 --expert-ffn 32
      --experts 8 --top-k 2 --groups 4 --group-topk 2 --route-scale 2.5 --bias-gamma 0.01
      --seq-len 32 --global-batch 8 --steps 20 --seed 3 --threads 1 --quiet)

"$TRAIN" "${args[@]}" --metrics "$tmp/ep1.jsonl" > "$tmp/ep1.out" 2>&1
is "$? $(wc -l < "$tmp/ep1.jsonl")" "0 20" "EP=1 (one process) trains 20 steps"

# field NAME of every line of a metrics file, one per line
field() { grep -o "\"$1\":\(\[[^]]*\]\|[^,}]*\)" "$2" | cut -d: -f2-; }

# compare FILE WHAT [BASELINE]: same step count, loss within 1e-5 relative at each step, identical routing figures
compare() {
	local f=$1 what=$2 base=${3:-$tmp/ep1.jsonl}
	is "$(wc -l < "$f")" 20 "$what: 20 steps of metrics"
	local worst
	worst=$(paste <(field loss "$base") <(field loss "$f") |
		awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > w) w = r }
		     END { printf "%.2e", w + 0 }')
	ok "$what: loss at every step within 1e-5 relative of EP=1 (worst $worst)" \
		awk -v w="$worst" 'BEGIN { exit !(w + 0 <= 1e-5) }'
	is "$(field max_load_over_mean "$f" | md5sum)" "$(field max_load_over_mean "$base" | md5sum)" \
		"$what: max/mean expert load identical at every step"
	if grep -q '"load":\[' "$base"; then
		is "$(field load "$f" | md5sum)" "$(field load "$base" | md5sum)" \
			"$what: per-expert routing counts identical at every step"
	fi
}

# moe-launch puts every rank of this machine in one NVLink domain; the routing groups come from --groups
for run in "2 ep=2 shm" "4 ep=4 shm" "2 ep=2 tcp" "4 ep=4 tcp" "4 ep=2 shm"; do
	set -- $run
	name="nproc $1 $2 over $3"
	out=$tmp/run-$1-$2-$3
	"$ML" --nproc "$1" --spec "$2,experts=8" --transport "$3" -- \
		"$TRAIN" "${args[@]}" --metrics "$out.jsonl" > "$out.out" 2>&1
	rc=$?
	is "$rc" 0 "$name: moe-launch + moe-train exit 0"
	[ $rc -eq 0 ] || sed 's/^/# /' "$out.out" | tail -5
	ok "$name: the banner shows the layout" grep -q "ep ${2#ep=} x dp $(($1 / ${2#ep=}))" "$out.out"
	[ -s "$out.jsonl" ] && compare "$out.jsonl" "$name"
done
# routing groups from NVLink domains (--groups 0): EP=4 with EP ranks {0,1} in one domain and {2,3} in
# another routes exactly like one process with 2 forced groups of 4 experts; --group-topk 1 keeps every
# token inside one domain.  The domains are set per rank by a shell between the launcher and the trainer.
"$TRAIN" "${args[@]}" --groups 2 --group-topk 1 --metrics "$tmp/g2.jsonl" > "$tmp/g2.out" 2>&1
is "$?" 0 "EP=1 with 2 forced routing groups, 1 group per token"
"$ML" --nproc 4 --spec ep=4,experts=8 --transport shm -- \
	sh -c 'MOE_DOMAIN=$((MOE_EP_RANK / 2)) exec "$0" "$@"' "$TRAIN" "${args[@]}" --groups 0 --group-topk 1 \
	--metrics "$tmp/dom.jsonl" > "$tmp/dom.out" 2>&1
is "$?" 0 "EP=4 over two NVLink domains, groups from the domains"
[ -s "$tmp/dom.jsonl" ] && compare "$tmp/dom.jsonl" "groups from 2 domains" "$tmp/g2.jsonl"
ok "group limits change the routing (M=1 of 2 groups differs from M=2 of 4)" \
	test "$(field max_load_over_mean "$tmp/g2.jsonl" | md5sum)" != "$(field max_load_over_mean "$tmp/ep1.jsonl" | md5sum)"

# the model API alone (ep_probe: SGD, no driver) prints every step's per-expert routing counts: they
# must be identical at every EP size, and the loss within 1e-5 relative
PROBE=$top_builddir/tests/driver/ep_probe
if [ -x "$PROBE" ]; then
	OMP_NUM_THREADS=1 "$PROBE" "$tmp/data.txt" 20 > "$tmp/p1.out" 2> "$tmp/p1.err"
	is "$? $(wc -l < "$tmp/p1.out")" "0 20" "ep_probe EP=1: 20 steps"
	for run in "2 ep=2 shm" "4 ep=4 tcp" "4 ep=2 tcp"; do
		set -- $run
		out=$tmp/probe-$1-$2-$3.out
		OMP_NUM_THREADS=1 "$ML" --nproc "$1" --spec "$2,experts=8" --transport "$3" -- "$PROBE" "$tmp/data.txt" 20 \
			> "$out" 2> "$out.err"
		is "$?" 0 "ep_probe nproc $1 $2 over $3: exit 0"
		is "$(sed 's/.*routing//' "$out" | md5sum)" "$(sed 's/.*routing//' "$tmp/p1.out" | md5sum)" \
			"ep_probe nproc $1 $2 over $3: per-expert routing counts identical at all 20 steps"
		worst=$(paste <(awk '{ print $4 }' "$tmp/p1.out") <(awk '{ print $4 }' "$out") |
			awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > w) w = r } END { printf "%.2e", w + 0 }')
		ok "ep_probe nproc $1 $2 over $3: loss within 1e-5 relative at every step (worst $worst)" \
			awk -v w="$worst" 'BEGIN { exit !(w + 0 <= 1e-5) }'
	done
	ok "ep_probe: routing moves between steps (the bias and the router learn)" \
		test "$(sed -n 1p "$tmp/p1.out" | sed 's/.*routing//')" != "$(sed -n 20p "$tmp/p1.out" | sed 's/.*routing//')"
fi

# the exchanges really moved rows between ranks
a2a=$(field a2a_bytes "$tmp/run-4-ep=4-tcp.jsonl" | head -1)
ok "EP=4 moved expert rows between ranks (step 1: $a2a bytes)" test "${a2a:-0}" -gt 0
done_testing
