#!/bin/bash
# quickstart.sh - the main job end to end on a real local Slurm cluster (Debian 12, root):
# installs what it needs, builds moetopo, starts slurmctld + 4 slurmd nodes in their own network
# namespaces (two "racks" = two NVLink domains, real captured hwloc topologies, fake GPUs), submits
# a DeepSeek-V3-style MoE training job with --moe-topology, shows what the job printed, tears down.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$top/build}
steps=${STEPS:-30}
spec=${SPEC:-ep=8,experts=16,route-groups=2}

say() { printf '\n== %s\n' "$*"; }
say "installing build and cluster packages (apt-get, first run only)"
bash "$top/tests/deps.sh"
say "building into $build"
(cd "$top" && autoreconf -fi >/dev/null 2>&1)
mkdir -p "$build"
(cd "$build" && { [ -f Makefile ] || "$top/configure" -q >/dev/null; } && make -j"$(nproc)" >/dev/null)

export top_srcdir=$top top_builddir=$build
tb="bash $top/tests/slurm/testbed.sh"
trap '$tb down >/dev/null 2>&1' EXIT
say "starting a 4-node Slurm cluster (munge, slurmctld, 4 x slurmd in network namespaces)"
$tb up 4
W=${MOE_TESTBED:-/run/moetopo-testbed}/work
"$build/trainer/driver/moe-train" prepare /usr/share/common-licenses/GPL-3 "$W/gpl3.bin"
cat > "$W/train.sbatch" <<JOB
#!/bin/bash
#SBATCH -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=$spec,verbose
#SBATCH -o $W/job.out -e $W/job.err
srun moe-launch -- moe-train --data $W/gpl3.bin --steps $steps --seed 3 --experts 16 --top-k 2 \\
	--dim 64 --heads 4 --layers 2 --ffn 128 --expert-ffn 32 --seq-len 32 --global-batch 16 \\
	--lr 0.01 --warmup 5 --threads 1 --metrics $W/metrics.jsonl
JOB
say "sbatch -N4 --ntasks-per-node=2 --gpus-per-node=2 --moe-topology=$spec,verbose  (srun moe-launch -- moe-train ...)"
job=$($tb run sbatch --parsable "$W/train.sbatch")
echo "submitted job $job"
while [ -n "$($tb run squeue -h -j "$job" -o %T 2>/dev/null)" ]; do sleep 1; done
state=$($tb run scontrol show job "$job" | grep -o 'JobState=[A-Z]*' | head -1)
say "binding the plugin applied (job stderr: one line per rank)"
cat "$W/job.err"
say "training output (job stdout)"
cat "$W/job.out"
cp "$W/metrics.jsonl" "$build/quickstart-metrics.jsonl"
say "job $job: $state; per-step metrics (JSON lines) saved to $build/quickstart-metrics.jsonl"
[ "$state" = JobState=COMPLETED ]
