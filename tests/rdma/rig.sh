#!/bin/bash
# rig.sh - a real verbs device for tests on machines without RDMA hardware: a QEMU guest (TCG, no KVM
# needed) running a stock Debian kernel with Soft-RoCE (rdma_rxe) on a dummy device at 127.1.1.1.
#
#   rig.sh prepare        fetch the kernel, busybox and perftest (apt-get download, never installed),
#                         build the initramfs; cached, so later calls return at once
#   rig.sh up             prepare, then boot a guest that stays up and serves `run` calls
#   rig.sh run CMD...     run CMD in the guest (bash, in the current directory) with rxe0 up; exit
#                         status and output are CMD's.  Uses the guest `up` started, else boots one
#                         for this call only
#   rig.sh down           stop the guest `up` started
#   rig.sh status         what is cached and whether a guest is up
#   rig.sh check          exit 0 if the rig can run here, else print why (one line) and exit 1
#
# The guest's root file system is the host's, read-only over 9p, so binaries built on the host run
# there unchanged (same Debian 12 libraries, sanitizer runtimes included); /tmp, /dev/shm and /run are
# the guest's own; the directory tree given by MOE_RDMA_SHARE (default: the git work tree around the
# current directory, else the current directory) is shared read-write at the same path.  Inside CMD:
# MOE_RDMA_GUEST=1, MOE_IB_DEVICE=rxe0:1, RXE_GID_INDEX, RDMA_BIN (perftest's folder).
# Needs root, qemu-system-x86_64, kmod (depmod/modprobe, host side) and ibverbs-providers.
# Environment: MOE_RDMA_CACHE (default /var/cache/moetopo-rdma), MOE_RDMA_MEM (MiB, default 2048),
# MOE_RDMA_CPUS (default 2), MOE_RDMA_TIMEOUT (seconds per run, default 1200).
set -euo pipefail
CACHE=${MOE_RDMA_CACHE:-/var/cache/moetopo-rdma}
MEM=${MOE_RDMA_MEM:-2048}
CPUS=${MOE_RDMA_CPUS:-2}
RUN_TIMEOUT=${MOE_RDMA_TIMEOUT:-1200}
MODULES="virtio_pci 9pnet_virtio 9p dummy crc32_generic rdma_rxe"
GUEST_DEBS="busybox-static perftest librdmacm1 libibumad3 libpci3"

die() { echo "rig: $*" >&2; exit 1; }

kernel_version() {
	apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {sub("linux-image-", "", $2); print $2; exit}'
}

# Why the rig cannot run here, or nothing.
why_not() {
	[ "$(id -u)" = 0 ] || { echo "needs root (a 9p share of / and module tools)"; return; }
	command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"; return; }
	[ -f "$CACHE/ready" ] && return
	command -v depmod >/dev/null && command -v modprobe >/dev/null || { echo "depmod/modprobe missing (apt-get install kmod)"; return; }
	ls /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav*.so >/dev/null 2>&1 ||
		{ echo "no rxe verbs provider on the host (apt-get install ibverbs-providers)"; return; }
	[ -n "$(kernel_version)" ] || { echo "apt-cache knows no linux-image-amd64 (run apt-get update)"; return; }
}

prepare() {
	local why; why=$(why_not)
	[ -z "$why" ] || die "$why"
	mkdir -p "$CACHE"
	exec 8>"$CACHE/lock"
	flock 8
	local kv; kv=$(kernel_version)
	[ -n "$kv" ] || kv=$(cat "$CACHE/kernel.version" 2>/dev/null || true)
	local key; key="$kv $MODULES $GUEST_DEBS $(write_init | md5sum | cut -c1-12)"
	if [ -f "$CACHE/ready" ] && [ "$(cat "$CACHE/ready")" = "$key" ]; then
		exec 8>&-
		return 0
	fi
	echo "rig: preparing the guest in $CACHE (kernel $kv)" >&2
	rm -f "$CACHE/ready"
	local D="$CACHE/debs"
	mkdir -p "$D"
	(cd "$D" && for p in linux-image-$kv $GUEST_DEBS; do
		ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q -o APT::Sandbox::User=root "$p" >/dev/null ||
			die "apt-get download $p failed"
	done)
	rm -rf "$CACHE/kernel" "$CACHE/root"
	dpkg -x "$D"/linux-image-${kv}_*.deb "$CACHE/kernel"
	for p in $GUEST_DEBS; do dpkg -x "$D"/${p}_*.deb "$CACHE/root"; done
	depmod -b "$CACHE/kernel" "$kv"
	local R; R=$(mktemp -d "$CACHE/initramfs.XXXXXX")
	mkdir -p "$R"/{bin,dev,proc,sys,root,modules}
	cp "$CACHE/root/bin/busybox" "$R/bin/"
	for a in sh mount umount mkdir insmod cat sleep poweroff chroot hostname ls mv rm echo seq dd printf test \
		 sed grep tr cut timeout kill sync; do
		ln -s busybox "$R/bin/$a"
	done
	# in load order, each once; crc32_generic: rxe asks the crypto layer for crc32 and no module
	# loader runs in the guest to find it
	for m in $MODULES; do
		modprobe -d "$CACHE/kernel" -S "$kv" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
	done | awk '!s[$0]++' | while read -r f; do cp "$f" "$R/modules/"; basename "$f"; done > "$R/modules/order"
	write_init > "$R/init"
	chmod +x "$R/init"
	(cd "$R" && find . | "$CACHE/root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) > "$CACHE/initrd.gz"
	rm -rf "$R"
	cp "$CACHE/kernel/boot/vmlinuz-$kv" "$CACHE/vmlinuz"
	echo "$kv" > "$CACHE/kernel.version"
	echo "$key" > "$CACHE/ready"
	exec 8>&-
}

# The guest's /init (busybox): modules, the host root over 9p, rxe0 on dummy0, then a loop that runs
# the job scripts the host drops in the spool folder until it finds "shutdown".
write_init() {
	cat <<'INIT'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "rig guest: init $(cat /proc/uptime)"
for m in $(cat /modules/order); do insmod /modules/$m 2>/dev/null || echo "rig guest: insmod $m failed"; done
for a in $(cat /proc/cmdline); do case $a in moe_share=*) SHARE=${a#moe_share=} ;; moe_spool=*) SPOOL=${a#moe_spool=} ;; esac; done
R=/root
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose hostroot $R || { echo "rig guest: no host root"; poweroff -f; }
mount -t proc proc $R/proc; mount -t sysfs sys $R/sys; mount -t devtmpfs dev $R/dev
# what udev would make: bash's process substitution needs /dev/fd
ln -sf /proc/self/fd $R/dev/fd; ln -sf /proc/self/fd/0 $R/dev/stdin; ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mkdir -p $R/dev/shm
for d in tmp run dev/shm var/tmp; do mount -t tmpfs -o mode=1777 tmp $R/$d; done
mkdir -p $R$SHARE 2>/dev/null; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share $R$SHARE || echo "rig guest: share $SHARE not mounted"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 spool $R$SPOOL || { echo "rig guest: no spool"; poweroff -f; }
hostname rdma-guest
echo "rig guest: root mounted $(cat /proc/uptime)"
# loopback-range address only: rxe rides on a dummy device (loading dummy made dummy0), traffic
# never leaves the guest; MTU 9000 gives RoCE MTU 4096 (4x fewer packets to emulate than 1024)
echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet
chroot $R /bin/sh -c '
	ip link set lo up
	ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy
	ip link set dummy0 mtu 9000 && ip addr add 127.1.1.1/24 dev dummy0 && ip link set dummy0 up &&
	rdma link add rxe0 type rxe netdev dummy0' \
	> $R$SPOOL/setup.log 2>&1
echo "rig guest: rxe0 $(cat /proc/uptime)"
P=$R/sys/class/infiniband/rxe0/ports/1; G=
for i in $(seq 100); do
	for n in 0 1 2 3 4 5 6 7; do
		g=$(cat $P/gids/$n 2>/dev/null); t=$(cat $P/gid_attrs/types/$n 2>/dev/null)
		case "$g" in 0000:0000:0000:0000:0000:ffff:*) [ "$t" = "RoCE v2" ] && G=$n ;; esac
	done; [ -n "$G" ] && break; sleep 0.1
done
echo "rig guest: ready $(cat /proc/uptime)"
echo "$G" > $R$SPOOL/gid.tmp; mv $R$SPOOL/gid.tmp $R$SPOOL/ready
while [ ! -e $R$SPOOL/shutdown ]; do
	for j in $R$SPOOL/*.job; do
		[ -e "$j" ] || continue
		b=${j%.job}; mv "$j" "$b.running"
		chroot $R /bin/bash "${b#$R}.running" > "$b.out" 2>&1; echo $? > "$b.rc.tmp"
		mv "$b.rc.tmp" "$b.rc"
	done
	sleep 0.2
done
sync; umount $R$SPOOL $R$SHARE 2>/dev/null
poweroff -f
INIT
}

share_dir() {
	if [ -n "${MOE_RDMA_SHARE:-}" ]; then (cd "$MOE_RDMA_SHARE" && pwd -P)
	else git rev-parse --show-toplevel 2>/dev/null || pwd -P; fi
}

# boot VMDIR SHARE: starts qemu in the background; returns once the guest is ready (or failed).
boot() {
	local vm=$1 share=$2
	mkdir -p "$vm/spool"
	rm -f "$vm/spool"/*
	echo "$share" > "$vm/share"
	setsid qemu-system-x86_64 -nographic -no-reboot -m "$MEM" -smp "$CPUS" -cpu max -vga none -nic none \
		-kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.gz" \
		-append "console=ttyS0 quiet panic=-1 moe_share=$share moe_spool=$vm/spool" \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-virtfs local,path="$share",mount_tag=share,security_model=none \
		-virtfs local,path="$vm/spool",mount_tag=spool,security_model=none \
		</dev/null >"$vm/console.log" 2>&1 &
	echo $! > "$vm/pid"
	local t=0
	while [ ! -e "$vm/spool/ready" ]; do
		if ! kill -0 "$(cat "$vm/pid")" 2>/dev/null; then
			echo "rig: the guest stopped during boot; console:" >&2; tail -20 "$vm/console.log" >&2
			return 1
		fi
		t=$((t + 1)); [ $t -lt 1800 ] || { echo "rig: the guest did not come up in 180 s" >&2; stop "$vm"; return 1; }
		sleep 0.1
	done
	if [ -z "$(cat "$vm/spool/ready")" ]; then
		echo "rig: rxe0 has no RoCE v2 IPv4 GID; setup log:" >&2; cat "$vm/spool/setup.log" >&2
		stop "$vm"; return 1
	fi
}

stop() {
	local vm=$1 pid
	pid=$(cat "$vm/pid" 2>/dev/null) || return 0
	touch "$vm/spool/shutdown"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill "$pid" 2>/dev/null || true
	rm -f "$vm/pid"
}

alive() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

# job VMDIR CMD...: runs CMD in the guest from the current directory; CMD's status.
job() {
	local vm=$1; shift
	local spool=$vm/spool id=$$-$RANDOM
	local gid; gid=$(cat "$spool/ready")
	{
		echo "cd $(printf %q "$PWD") || exit 125"
		echo "export PATH=$(printf %q "$CACHE/root/usr/bin:$PATH") HOME=/tmp MOE_RDMA_GUEST=1 MOE_IB_DEVICE=rxe0:1"
		echo "export RXE_GID_INDEX=$gid RDMA_BIN=$(printf %q "$CACHE/root/usr/bin") RDMA_LIBS=$(printf %q "$CACHE/root/usr/lib/x86_64-linux-gnu")"
		local v
		for v in MOE_COMM_TIMEOUT MOE_IB_WINDOW MOE_VERBOSE TESTS; do
			[ -z "${!v:-}" ] || echo "export $v=$(printf %q "${!v}")"
		done
		printf '%q ' "$@"; echo
	} > "$spool/$id.tmp"
	mv "$spool/$id.tmp" "$spool/$id.job"
	touch "$spool/$id.out"
	tail -n +1 -f --pid=$$ "$spool/$id.out" &
	local tailpid=$! t=0 rc
	while [ ! -e "$spool/$id.rc" ]; do
		if ! alive "$vm"; then echo "rig: the guest died; console:" >&2; tail -20 "$vm/console.log" >&2; rc=125; break; fi
		t=$((t + 1)); [ $t -lt $((RUN_TIMEOUT * 5)) ] || { echo "rig: timed out after $RUN_TIMEOUT s" >&2; rc=124; break; }
		sleep 0.2
	done
	[ -n "${rc:-}" ] || rc=$(cat "$spool/$id.rc")
	sleep 0.3 # let tail print the last lines
	kill "$tailpid" 2>/dev/null || true
	wait "$tailpid" 2>/dev/null || true
	rm -f "$spool/$id".*
	return "$rc"
}

VM="$CACHE/vm"
cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
check) why=$(why_not); [ -z "$why" ] || { echo "$why"; exit 1; } ;;
prepare) prepare ;;
up)
	prepare
	alive "$VM" && { echo "rig: a guest is already up (share $(cat "$VM/share"))"; exit 0; }
	boot "$VM" "$(share_dir)"
	echo "rig: guest up, share $(cat "$VM/share"), rxe0 GID index $(cat "$VM/spool/ready")" ;;
run)
	[ $# -gt 0 ] || die "usage: rig.sh run CMD..."
	share=$(share_dir)
	if alive "$VM" && case "$PWD/" in "$(cat "$VM/share")"/*) true ;; *) false ;; esac; then
		job "$VM" "$@"
	else
		prepare
		vm=$(mktemp -d "$CACHE/run.XXXXXX")
		trap 'stop "$vm"; rm -rf "$vm"' EXIT
		boot "$vm" "$share" || exit 125
		set +e; job "$vm" "$@"; rc=$?; set -e
		exit $rc
	fi ;;
down) alive "$VM" && stop "$VM"; rm -rf "$VM"; echo "rig: down" ;;
status)
	if [ -f "$CACHE/ready" ]; then echo "cache: $CACHE (kernel $(cat "$CACHE/kernel.version"))"; else echo "cache: not prepared ($CACHE)"; fi
	if alive "$VM"; then echo "guest: up (pid $(cat "$VM/pid"), share $(cat "$VM/share"))"; else echo "guest: down"; fi
	why=$(why_not); [ -z "$why" ] || echo "cannot run here: $why" ;;
*) sed -n '2,22p' "$0"; exit 2 ;;
esac
