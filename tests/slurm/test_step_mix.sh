#!/bin/bash
# test_step_mix.sh - many consecutive steps in one allocation with a mix of valid, invalid and impossible
# specs: each ends as its kind must (valid: planned; invalid: refused by srun with one line; impossible:
# runs with Slurm's binding and one warning), no node is drained, and nothing leaks: slurmstepd's file
# descriptors and memory (read from inside each step's task) stay flat, slurmd holds no more descriptors,
# no file or shared-memory segment is left behind.
#   MOE_MIX_STEPS   number of steps (default 80, about 2 minutes; 1000 by hand, figures in doc/admin-guide.md)
#   MOE_MIX_REPORT  file to which the per-step measurements are copied (for the figures)
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/slurm/lib.sh"
tb_skip_unless_possible
tb_start 4
W=$MOE_TESTBED/work
STEPS=${MOE_MIX_STEPS:-80}
scratch=$W/mix-tmp
mkdir -p "$scratch" && chmod 1777 "$scratch"

# One line per task: its rank (or -), and from local task 0 the RSS (kB) and open descriptors of its
# parent, the step's slurmstepd, plus the number of entries in /dev/shm.
cat > "$W/probe.sh" <<'EOF'
#!/bin/sh
m=""
if [ "$SLURM_LOCALID" = 0 ]; then
	m="stepd=$(cat /proc/$PPID/comm) rss=$(awk '/^VmRSS/ {print $2}' /proc/$PPID/status) fds=$(ls /proc/$PPID/fd | wc -l) shm=$(ls -A /dev/shm | wc -l)"
fi
echo "T $SLURM_PROCID $(hostname) rank=${MOE_RANK:--} $m"
EOF
# kinds, in turn: valid, invalid (refused at submit), impossible (ep or experts that cannot divide 8 ranks)
cat > "$W/mix.sh" <<EOF
#!/bin/bash
specs=(ep=8 ep=banana ep=4,experts=16,gpus=single ep=3 export=torch,cpu=none colour=red auto ep=8,experts=12)
kinds=(valid invalid valid impossible valid invalid valid impossible)
for ((i = 1; i <= $STEPS; i++)); do
	k=\$(( (i - 1) % 8 ))
	srun --moe-topology=\${specs[k]} sh $W/probe.sh > $W/mix.step 2> $W/mix.err
	rc=\$?
	echo "S \$i \${kinds[k]} rc=\$rc tasks=\$(grep -c '^T ' $W/mix.step) planned=\$(grep -c ' rank=[0-9]' $W/mix.step) lines=\$(grep -c 'moe-topology' $W/mix.err) other=\$(grep -vc 'moe-topology' $W/mix.err)"
	sed "s/^T /M \$i \${kinds[k]} /" $W/mix.step | grep ' stepd='
done
EOF

# What a step could leave: anything in the job's TMPDIR and the nodes' spool folders (but Slurm's own
# cred_state and hwloc_topo_whole.xml, which slurmd writes once per node, at its first step); in /dev/shm
# and /tmp, which other programs on the machine use too (other test suites: moetopo-*, mt_*, *slurm*
# names of their own), only names the plugin, the libraries it loads or Slurm could use.
leftovers() {
	{ find "$scratch" "$MOE_TESTBED"/var/gpu-* -mindepth 1 -maxdepth 1 ! -name 'cred_state*' ! -name hwloc_topo_whole.xml
	  find /dev/shm /tmp -mindepth 1 -maxdepth 1 \( -iname '*moe_topology*' -o -iname '*moe-topology*' -o -iname 'spank*' \
		-o -iname 'hwloc*' -o -iname '*nvml*' \)
	  find /dev/shm -mindepth 1 -maxdepth 1 \( -name 'mt_*' -o -iname '*slurm*' \); } 2>/dev/null | sort
}
slurmd_fds() { for p in $(cat "$MOE_TESTBED"/run/slurmd-*.pid); do ls /proc/"$p"/fd | wc -l; done | tr '\n' ' '; }
slurmd_rss() { for p in $(cat "$MOE_TESTBED"/run/slurmd-*.pid); do awk '/^VmRSS/ {print $2}' /proc/"$p"/status; done | tr '\n' ' '; }
before=$(leftovers)
fds_before=$(slurmd_fds)
rss_before=$(slurmd_rss)

run_client env TMPDIR="$scratch" salloc -N4 --ntasks-per-node=2 --gpus-per-node=2 bash "$W/mix.sh"
ok "salloc with $STEPS steps exits 0" [ "$rc" = 0 ]
[ -n "${MOE_MIX_REPORT:-}" ] && printf '%s\n' "$out" > "$MOE_MIX_REPORT"
is "$(grep -c '^S ' <<<"$out")" "$STEPS" "$STEPS steps ran"
# what each kind must give: valid 8 planned tasks, nothing said; invalid refused (no task) with one line;
# impossible 8 tasks with Slurm's binding and one warning.  Nothing else on stderr.
unexpected() {
	awk '$1 == "S" { want = $3 == "valid" ? "rc=0 tasks=8 planned=8 lines=0" : $3 == "invalid" ? "rc=255 tasks=0 planned=0 lines=2" : "rc=0 tasks=8 planned=0 lines=1"
		if ($4 " " $5 " " $6 " " $7 != want || $8 != "other=0") print }' <<<"$out"
}
is "$(unexpected | head -5)" "" "every step ended as its kind must, nothing else failed"
is "$(awk '$1 == "M" && $7 != "stepd=slurmstepd"' <<<"$out" | head -3)" "" "the probe's parent was slurmstepd"
measured=$(awk '$1 == "M" && $3 != "invalid"' <<<"$out" | wc -l)
is "$measured" "$(( $(grep -c '^S [0-9]* \(valid\|impossible\)' <<<"$out") * 4 ))" "one measurement per node per step that ran"

# slurmstepd: each step has its own, so growth would come from state kept on the node (slurmd's, or files
# the plugin reopens).  Its descriptors at the probe are 14 in most steps, 15-16 in some (Slurm's own
# transient sockets: 84% / 16% over 1,000 steps), so the fewest per node are compared, last tenth of the
# steps vs the first; RSS as the mean of the valid steps, same tenths.
fds_growth=$(awk -v n="$STEPS" '$1 == "M" { split($9, f, "="); k = $5
		if ($2 <= n / 10 && (!(k in a) || f[2] < a[k])) a[k] = f[2]; if ($2 > n - n / 10 && (!(k in b) || f[2] < b[k])) b[k] = f[2] }
	END { for (k in b) if (b[k] > a[k]) print k ": " a[k] " -> " b[k] }' <<<"$out")
is "$fds_growth" "" "slurmstepd's open descriptors do not grow (fewest per node in the last tenth of the steps vs the first)"
rss_growth=$(awk -v n="$STEPS" '$1 == "M" && $3 == "valid" { split($8, r, "="); if ($2 <= n / 10) { a += r[2]; na++ } if ($2 > n - n / 10) { b += r[2]; nb++ } }
	END { printf "%d %d %d", a / na, b / nb, b / nb - a / na }' <<<"$out")
echo "# slurmstepd RSS (kB, mean over nodes): first tenth, last tenth, growth: $rss_growth"
ok "slurmstepd RSS does not grow over $STEPS steps (less than 1 MiB: $rss_growth)" [ "${rss_growth##* }" -lt 1024 ]
is "$(leftovers)" "$before" "no file or shared memory left in /dev/shm, /tmp, the job's TMPDIR or the spool folders"
is "$(slurmd_fds)" "$fds_before" "slurmd holds no more file descriptors than before ($fds_before)"
echo "# slurmd RSS (kB) before: $rss_before after: $(slurmd_rss)"
run_client sinfo -h -o '%T'
is "$(sort -u <<<"$out")" "idle" "no node drained or down"
done_testing
