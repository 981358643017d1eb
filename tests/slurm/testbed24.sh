# testbed24.sh - the Slurm 24.11 side of testbed.sh (sourced by it for `--slurm 24.11`; not run alone).
#
# Debian 12 ships Slurm 22.05; 24.11 (Debian 13) needs a newer glibc, so the whole cluster runs from a
# Debian 13 root filesystem used as a chroot: built once with debootstrap (from the mirror this machine's
# apt configuration names) and cached outside the repository.  The same namespaces, addresses, node names,
# fake GPUs and topology files as on 22.05; on top, Slurm itself runs topology/block with the very
# topology.conf the plugin reads as its domain map (one block per rack of two nodes).
#
# The plugin and the tools the tasks run (moetopo, moe-launch, moe-train) are built inside the chroot,
# with its compiler against its spank.h, glibc and hwloc: a build for 24.11 is one made on the system
# that runs 24.11.  The source and build trees and the state folder are bind-mounted at the same paths
# inside, so tests name files the same way on both versions.
#
# Environment (besides testbed.sh's):
#   MOE_SLURM24_ROOT    the cached root filesystem (default /var/cache/moetopo/slurm24-root)
#   MOE_SLURM24_BUILD   the build tree made inside the chroot (default $top_builddir/slurm24)
#   MOE_SLURM24_MIRROR  Debian mirror for debootstrap (default: the first one in /etc/apt)
#   MOE_SLURM24_TOOLS   non-empty: also build moe-launch and moe-train for the tasks (test_train)

R=${MOE_SLURM24_ROOT:-/var/cache/moetopo/slurm24-root}
B24=${MOE_SLURM24_BUILD:-$top_builddir/slurm24}
# What the chroot needs: Slurm and munge, and a toolchain for the plugin and the tools (no autotools: the
# source tree's configure is used as it is).  Changing this list rebuilds the root filesystem.
R_PKGS="slurmctld slurmd slurm-client libslurm-dev munge gcc make libhwloc-dev pkg-config libc6-dev"
R_STAMP=$R/.moetopo-rootfs
pkgs="iproute2 procps util-linux debootstrap"     # on the host; Slurm itself comes from the chroot
CENV=(/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C SLURM_CONF="$E/slurm.conf")

inroot() { chroot "$R" "${CENV[@]}" "$@"; }   # inside the chroot, host network namespace

# Paths shared with the chroot at the same name: state, sources, builds (the tasks run the tools from there).
shared_paths() {
	local p
	for p in "$TB" "$top_srcdir" "$top_builddir" "$B24"; do echo "$p"; done | awk '!seen[$0]++' |
		while read -r p; do
			# a path inside another listed path comes along with it
			for q in "$TB" "$top_srcdir" "$top_builddir"; do
				[ "$p" != "$q" ] && case "$p/" in "$q"/*) continue 2 ;; esac
			done
			echo "$p"
		done
}

apt_mirror() {
	local m=${MOE_SLURM24_MIRROR:-}
	[ -n "$m" ] && { echo "$m"; return; }
	m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[ -n "$m" ] || die "no Debian mirror in /etc/apt (set MOE_SLURM24_MIRROR)"
	echo "$m"
}

mounted_under() { awk -v r="$1/" 'index($2 "/", r) == 1 {print $2}' /proc/self/mounts; }

# Builds the root filesystem once (in a side folder, renamed when complete); later calls find the stamp.
ensure_rootfs() {
	local m tmp=$R.new
	[ "$(cat "$R_STAMP" 2>/dev/null)" = "$R_PKGS" ] && return 0
	mkdir -p "$(dirname "$R")"
	exec 8>"$R.lock"
	flock 8
	if [ "$(cat "$R_STAMP" 2>/dev/null)" != "$R_PKGS" ]; then
		m=$(apt_mirror)
		echo "testbed: building the Slurm 24.11 root filesystem in $R (Debian 13 from $m, once)" >&2
		[ -z "$(mounted_under "$tmp")" ] || die "$tmp has mounts under it; not touching it"
		rm -rf "$tmp"
		debootstrap --variant=minbase trixie "$tmp" "$m" > "$R.log" 2>&1 ||
			die "debootstrap failed (log: $R.log)"
		echo "deb $m trixie main" > "$tmp/etc/apt/sources.list"
		# debootstrap --include cannot install these (a virtual dependency): apt-get inside, afterwards
		chroot "$tmp" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
			sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $R_PKGS && apt-get clean" \
			>> "$R.log" 2>&1 || die "installing Slurm in the root filesystem failed (log: $R.log)"
		echo "$R_PKGS" > "$tmp/.moetopo-rootfs"
		if [ -e "$R" ]; then
			[ -z "$(mounted_under "$R")" ] || die "$R has mounts under it (a testbed still up?)"
			rm -rf "$R"
		fi
		mv "$tmp" "$R"
	fi
	exec 8>&-
}

# One testbed at a time uses the root filesystem's mounts: the one named in its owner file.
R_OWNER=$R/.moetopo-owner
release_root() {   # unmounts everything below the root filesystem (deepest first), if they are ours
	local m owner
	owner=$(cat "$R_OWNER" 2>/dev/null || true)
	[ -z "$owner" ] || [ "$owner" = "$TB" ] || [ ! -f "$owner/nodes" ] || return 0
	for m in $(mounted_under "$R" | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}

mount_root() {  # everything but /etc/hosts, which write_configs_extra binds once it is written
	local p owner
	owner=$(cat "$R_OWNER" 2>/dev/null || true)
	[ -z "$owner" ] || [ "$owner" = "$TB" ] || [ ! -f "$owner/nodes" ] ||
		die "the Slurm 24.11 root filesystem is in use by the testbed in $owner"
	release_root
	echo "$TB" > "$R_OWNER"
	mount --bind /proc "$R/proc"
	mount --rbind /sys "$R/sys"
	mount --make-rslave "$R/sys"           # without rbind the cgroup mounts are missing and slurmd dies
	mount --bind /dev "$R/dev"
	mount --bind /dev/pts "$R/dev/pts"
	mount --bind /dev/shm "$R/dev/shm"
	mount -t tmpfs -o mode=755,size=64m moetopo-run "$R/run"
	mkdir -p "$R/run/lock" && chmod 1777 "$R/run/lock"
	for p in $(shared_paths); do
		mkdir -p "$p" "$R$p"
		mount --bind "$p" "$R$p"
	done
}

# The plugin and the tools, configured and built inside the chroot against its Slurm (incremental).
build24() {
	[ -f "$top_srcdir/configure" ] || die "no configure in $top_srcdir (autoreconf -fi first)"
	[ ! -f "$top_srcdir/config.status" ] || [ "$B24" = "$top_srcdir" ] ||
		die "$top_srcdir is configured in place: the 24.11 build needs a clean source tree (make distclean)"
	mkdir -p "$B24"
	# the plugin and moetopo always; the launcher and trainer (what test_train's tasks run) on request
	local what="make -j2 -C topology && make -j2 -C plugin"
	[ -z "${MOE_SLURM24_TOOLS:-}" ] || what="make -j2"
	inroot sh -c "cd '$B24' && { [ -f Makefile ] || '$top_srcdir/configure' --without-cuda --with-verbs=no; } &&
		$what" \
		> "$B24/build.log" 2>&1 || { tail -20 "$B24/build.log" >&2; die "building for Slurm 24.11 failed (log: $B24/build.log)"; }
}

plugin_path() {
	local p=${MOE_PLUGIN:-$B24/plugin/.libs/moe_topology.so}
	[ -f "$p" ] || die "no plugin at $p"
	(cd "$(dirname "$p")" && echo "$(pwd)/$(basename "$p")")
}

tools_path() { echo "$B24/topology/cli:$B24/launcher:$B24/trainer/driver"; }

# Slurm 24.11 itself reads topology.conf: topology/block on the testbed's racks.
write_configs_extra() {
	sed -i '/^SwitchType=/d' "$E/slurm.conf"
	echo "TopologyPlugin=topology/block" >> "$E/slurm.conf"
	echo "BlockSizes=2" >> "$E/topology.conf"
	# the clients run in the head namespace under this machine's hostname: without a name for it every
	# lookup waits for a timeout (slurmctld stalls, steps hang in COMPLETING)
	sed -i "s/^127\.1\.0\.1 head\$/127.1.0.1 head $(hostname)/" "$E/hosts"
	[ -e "$R/etc/hosts" ] || : > "$R/etc/hosts"
	mountpoint -q "$R/etc/hosts" || mount --bind "$E/hosts" "$R/etc/hosts"
}

check_nodes() {
	[ $(( $1 % 2 )) = 0 ] || die "Slurm 24.11 testbed: node count must be even (blocks of 2 nodes), got $1"
}

prepare_cache() {
	ensure_packages
	ensure_rootfs
}

prepare_up() {
	prepare_cache
	mount_root
	build24
}

start_munge() {
	chmod 755 "$TB/munge"
	[ -f "$TB/munge/munge.key" ] || inroot mungekey --create --keyfile="$TB/munge/munge.key"
	chmod 400 "$TB/munge/munge.key"
	inroot munged --socket="$TB/munge/munge.sock" --key-file="$TB/munge/munge.key" \
		--log-file="$TB/munge/munged.log" --pid-file="$TB/munge/munged.pid" \
		--seed-file="$TB/munge/munged.seed"
}

in_node() {  # in_node HOSTNAME NS CMD...: the chroot's /etc/hosts is already the testbed's
	local h=$1 ns=$2; shift 2
	nsenter --net=/run/netns/"$ns" unshare --uts chroot "$R" "${CENV[@]}" sh -c "hostname $h && exec $*"
}

client() {
	[ -f "$TB/nodes" ] || die "not up (testbed.sh up first)"
	# the caller's environment goes along (tests set MOE_TOPOLOGY); chroot starts in /, so cd first
	nsenter --net=/run/netns/$NS-head chroot "$R" /usr/bin/env PATH="$(tools_path):/usr/sbin:/usr/bin:/sbin:/bin" \
		SLURM_CONF="$E/slurm.conf" /bin/sh -c 'cd "$0" && exec "$@"' "$TB/work" "$@"
}
