#!/bin/sh
# report.sh - run as a task by the slurm tests: one line with the task's binding as the plugin left it.
#   T <SLURM_PROCID> node=<hostname> cpus=<Cpus_allowed_list> VAR=value ... (sorted)
cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
vars=$(env | grep -vE '^MOE_(TESTBED|PLUGIN)' | grep -E '^(MOE_[A-Z_]*|CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|NCCL_IB_HCA|UCX_NET_DEVICES|NVSHMEM_HCA_LIST|RANK|LOCAL_RANK|WORLD_SIZE|LOCAL_WORLD_SIZE|GROUP_RANK|MASTER_ADDR|MASTER_PORT|SLURM_TOPOLOGY_ADDR)=' | sort | tr '\n' ' ')
echo "T $SLURM_PROCID node=$(hostname) cpus=$cpus $vars"
