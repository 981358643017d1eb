#!/bin/bash
# deps.sh - install what moetopo needs to build and test on Debian 12 (idempotent; root).
set -euo pipefail
pkgs="build-essential autoconf automake libtool pkg-config libhwloc-dev hwloc libibverbs-dev
      slurmctld slurmd slurm-client libslurm-dev munge iproute2 bats procps util-linux"
# fuzzing (tests/fuzz): clang with libFuzzer
pkgs="$pkgs clang libclang-rt-14-dev"
# a real client of the rank contract: torch.distributed (gloo) under srun (tests/slurm/test_contract.sh)
pkgs="$pkgs python3-torch"
# the Slurm 24.11 testbed builds a Debian 13 root filesystem with it (tests/slurm/testbed24.sh)
pkgs="$pkgs debootstrap"
# the Soft-RoCE guest for the verbs tests (tests/rdma/rig.sh; its kernel and tools are fetched with
# apt-get download, not installed)
pkgs="$pkgs qemu-system-x86 kmod ibverbs-providers"
# tests/packaging/debs.sh builds the .debs and checks them with lintian
pkgs="$pkgs debhelper fakeroot lintian"
# tests/packaging/rpm.sh builds the RPMs with Debian's rpm tooling and unpacks them to check
pkgs="$pkgs rpm cpio"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends $missing >/dev/null
