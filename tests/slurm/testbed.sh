#!/bin/bash
# testbed.sh - a real multi-node Slurm cluster on one Debian 12 machine, for the moe_topology plugin.
#
#   testbed.sh up [N] [--slurm 22.05|24.11]   install packages if missing, start munged, slurmctld and
#                            N slurmd (default 4) of that Slurm (default 22.05, or $MOE_SLURM_VERSION)
#   testbed.sh prepare [--slurm 22.05|24.11]   only what `up` fetches once and caches (packages; for 24.11
#                            its root filesystem), so that it can overlap with a build
#   testbed.sh up N --racks R --spine-mbit X [--rack-mbit Y] [--rack-order interleaved|block]
#                            an emulated rack fabric (22.05 only): below
#   testbed.sh run CMD...    run a client command (srun, sbatch, salloc, sinfo...) against the cluster
#   testbed.sh plugstack [ARGS...]   rewrite the plugin's plugstack.conf line (no restart needed)
#   testbed.sh down          stop every daemon and step, delete the namespaces and the state folder
#   testbed.sh status        print nodes and state
#   testbed.sh node-kill I   node I (1..N) dies: its network goes down, then its slurmd, steps and tasks get SIGKILL
#   testbed.sh node-start I  node I comes back: network up, slurmd started again; waits until all nodes are idle
#   testbed.sh slurmd-restart I   stop node I's slurmd (SIGTERM; running steps stay) and start it again
#   testbed.sh node-exec I CMD...  run CMD in node I's network namespace (0 = the head node)
#
# Each node runs in its own network namespace (addresses 127.1.0.0/24 on a bridge with no uplink), with
# its own hostname, four fake GPUs (character devices + gres.conf) and a different real captured
# topology, handed to the plugin through `topology=` (one hwloc XML per node name).  Node names are
# rack-like, gpu-r<R>-n<K> with two nodes per rack, and a topology.conf maps racks to NVLink domains, so
# domain-local grouping shows in the plans.  Runs as root.
#
# Rack fabric (--racks R): nodes gpu-n1..gpu-nN, node i in rack ((i-1) mod R)+1 (interleaved, as a
# fragmented allocation; --rack-order block: consecutive nodes share a rack).  Each rack's nodes hang on
# the rack's own bridge; every rack bridge reaches one spine bridge (where the head sits) over a veth
# uplink shaped with tc tbf to X Mbit/s in each direction, so traffic between racks shares X.  With
# --rack-mbit Y each node's own link is shaped to Y in each direction as well; without it traffic inside
# a rack is not shaped.  topology.conf names the racks (BlockName=rack1 Nodes=gpu-n1,gpu-n3): one
# NVLink domain per rack.  $TB/fabric records the shape (racks=, spine_mbit=, rack_mbit=, order=).
#
# Environment:
#   MOE_TESTBED     state folder (default /run/moetopo-testbed; short, because it holds a unix socket);
#                   testbeds with different folders are independent and may run at the same time
#   top_builddir    build tree holding plugin/.libs/moe_topology.so and the tools (set by `make check`)
#   MOE_PLUGIN      the plugin to load (default $top_builddir/plugin/.libs/moe_topology.so)
#   MOE_TESTBED_CPUS   CPUs each node claims (default 8; more than the machine has, so task/none)
#   MOE_SLURM_VERSION  22.05 (Debian 12's own Slurm) or 24.11 (a Debian 13 chroot with topology/block:
#                   testbed24.sh); `run`, `plugstack`, `status` and `down` use the version that is up
#   MOE_TESTBED_INSTALLED=1   jobs find moetopo's programs on the system PATH, not in top_builddir
#                   (installed packages; set MOE_PLUGIN to the installed plugin too)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
TB=${MOE_TESTBED:-/run/moetopo-testbed}
E=$TB/etc
CPUS=${MOE_TESTBED_CPUS:-8}
GPUS=4
# GPUs of each node (MOE_TESTBED_GPUS="8 4 4 4": heterogeneous nodes; default 4 each)
read -r -a NODE_GPUS <<<"${MOE_TESTBED_GPUS:-}"
node_gpus() { echo "${NODE_GPUS[$(( $1 - 1 ))]:-$GPUS}"; }
# Prefix of every network namespace this testbed creates, derived from its state folder so that two
# testbeds (two MOE_TESTBED folders) never touch each other's namespaces or processes.
NS=${MOE_TESTBED_NS:-mtb$(printf '%s' "$TB" | cksum | cut -c1-4)}
export SLURM_CONF=$E/slurm.conf

# One fixture per node, each a different real machine with 4 NVIDIA GPUs (tests/fixtures/hwloc).
# MOE_TESTBED_FIXTURES replaces the list (say, an 8-GPU machine first, with MOE_TESTBED_GPUS).
read -r -a FIXTURES <<<"${MOE_TESTBED_FIXTURES:-flux-core__ipa20.xml mpibind__coral-lassen.xml psmgmt__topo.jrc0323.xml psmgmt__topo.mel2001.xml}"

pkgs="slurmctld slurmd slurm-client munge iproute2 procps util-linux hwloc"

die() { echo "testbed: $*" >&2; exit 1; }

# Which Slurm: `up ... --slurm V`, else the testbed that is up, else MOE_SLURM_VERSION, else 22.05.
SLURM_VERSIONS="22.05 24.11"
slurm_version() {  # slurm_version SUBCOMMAND ARGS...
	local v="" up=$(case ${1:-} in up | prepare) echo 1 ;; esac)
	while [ -n "$up" ] && [ $# -gt 0 ]; do
		case $1 in
		--slurm) v=${2:-}; shift $(( $# > 1 ? 2 : 1 )) ;;
		--slurm=*) v=${1#--slurm=}; shift ;;
		*) shift ;;
		esac
	done
	[ -n "$v" ] || [ -n "$up" ] || v=$(cat "$TB/slurm-version" 2>/dev/null || true)
	[ -n "$v" ] || v=${MOE_SLURM_VERSION:-22.05}
	case " $SLURM_VERSIONS " in *" $v "*) echo "$v" ;; *) die "unknown Slurm version '$v' (valid: $SLURM_VERSIONS)" ;; esac
}

# Fabric of the testbed being brought up (from `up`'s flags) or of the one that is up ($TB/fabric).
RACKS=0 SPINE_MBIT=0 RACK_MBIT=0 RACK_ORDER=interleaved
[ "${1:-}" != up ] && [ -f "$TB/fabric" ] && . "$TB/fabric"
node_name() {
	if [ "$RACKS" -gt 0 ]; then echo "gpu-n$1"; else echo "gpu-r$(( ($1 - 1) / 2 + 1 ))-n$(( ($1 - 1) % 2 + 1 ))"; fi
}
rack_of() {  # rack_of I N: the rack (1..RACKS) of node I of N
	if [ "$RACK_ORDER" = block ]; then echo $(( ($1 - 1) * RACKS / $2 + 1 )); else echo $(( ($1 - 1) % RACKS + 1 )); fi
}
node_count() { cat "$TB/nodes" 2>/dev/null || echo 0; }

ensure_packages() {
	local p missing=""
	for p in $pkgs; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	echo "testbed: installing$missing" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
}

plugin_path() {
	local p=${MOE_PLUGIN:-$top_builddir/plugin/.libs/moe_topology.so}
	[ -f "$p" ] || die "no plugin at $p (build first, or set MOE_PLUGIN or top_builddir)"
	(cd "$(dirname "$p")" && echo "$(pwd)/$(basename "$p")")
}

# The plugstack line the suite uses by default: the testbed's domain map and per-node topology files.
default_args() { echo "domains=$E/topology.conf topology=$TB/topo/%n.xml nvml=off"; }

write_plugstack() {  # write_plugstack ARGS...  (an empty ARGS list means the default arguments)
	local args="$*" so
	[ -f "$TB/plugin" ] || die "not up (testbed.sh up first)"
	so=$(cat "$TB/plugin")
	[ -z "$args" ] && args=$(default_args)
	echo "required $so $args" > "$E/plugstack.conf.new"
	mv "$E/plugstack.conf.new" "$E/plugstack.conf"
}

write_configs() {
	local n=$1 i name addr
	mkdir -p "$E" "$TB/log" "$TB/run" "$TB/var/ctld" "$TB/dev" "$TB/munge" "$TB/topo" "$TB/work"
	chmod 755 "$TB" "$E" "$TB/topo"
	chmod 1777 "$TB/work"
	# fake GPUs: slurmd accepts only character devices in gres.conf File=
	local max=$GPUS g
	for g in "${NODE_GPUS[@]}"; do [ "$g" -gt "$max" ] && max=$g; done
	for ((i = 0; i < max; i++)); do
		[ -c "$TB/dev/nvidia$i" ] || { rm -f "$TB/dev/nvidia$i"; mknod -m 666 "$TB/dev/nvidia$i" c 195 $i; }
	done
	cat > "$E/slurm.conf" <<EOF
ClusterName=moetb
SlurmctldHost=head(127.1.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TB/munge/munge.sock
StateSaveLocation=$TB/var/ctld
SlurmdSpoolDir=$TB/var/%n
SlurmctldPidFile=$TB/run/slurmctld.pid
SlurmdPidFile=$TB/run/slurmd-%n.pid
SlurmctldLogFile=$TB/log/slurmctld.log
SlurmdLogFile=$TB/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$E/plugstack.conf
GresTypes=gpu
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=5
Waittime=0
EOF
	{
		echo "127.0.0.1 localhost"
		echo "127.1.0.1 head"
	} > "$E/hosts"
	: > "$E/topology.conf"
	: > "$E/gres.conf.new"
	for ((i = 1; i <= n; i++)); do
		name=$(node_name $i)
		addr=127.1.0.$((10 + i))
		g=$(node_gpus $i)
		echo "NodeName=$name NodeAddr=$addr CPUs=$CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=2000 Gres=gpu:h100:$g State=UNKNOWN" >> "$E/slurm.conf"
		echo "NodeName=$name Name=gpu Type=h100 File=$TB/dev/nvidia[0-$((g - 1))]" >> "$E/gres.conf.new"
		echo "$addr $name" >> "$E/hosts"
		# the plugin reads cached topologies only when root owns them and nobody else may write them
		install -m 644 "$top_srcdir/tests/fixtures/hwloc/${FIXTURES[$(( (i - 1) % 4 ))]}" "$TB/topo/$name.xml"
	done
	echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >> "$E/slurm.conf"
	# two nodes per rack, one NVLink domain per rack (topology/block syntax; the plugin also reads tree syntax)
	for ((i = 1; RACKS == 0 && i <= n; i += 2)); do
		local r=$(( (i - 1) / 2 + 1 )) last=$(( i + 1 > n ? 1 : 2 ))
		echo "BlockName=r$r Nodes=gpu-r$r-n[1-$last]" >> "$E/topology.conf"
	done
	# the fabric's racks, each one NVLink domain
	local members r
	for ((r = 1; r <= RACKS; r++)); do
		members=""
		for ((i = 1; i <= n; i++)); do
			[ "$(rack_of $i $n)" = $r ] && members="$members${members:+,}$(node_name $i)"
		done
		[ -n "$members" ] && echo "BlockName=rack$r Nodes=$members" >> "$E/topology.conf"
	done
	{
		echo "AutoDetect=off"
		cat "$E/gres.conf.new"
	} > "$E/gres.conf"
	rm -f "$E/gres.conf.new"
	write_configs_extra
	chmod 644 "$E"/*
	plugin_path > "$TB/plugin"
	write_plugstack ${MOE_TESTBED_PLUGSTACK:-}
	echo "$n" > "$TB/nodes"
}

start_munge() {
	chmod 755 "$TB/munge"
	[ -f "$TB/munge/munge.key" ] || mungekey --create --keyfile="$TB/munge/munge.key"
	chmod 400 "$TB/munge/munge.key"
	munged --socket="$TB/munge/munge.sock" --key-file="$TB/munge/munge.key" \
		--log-file="$TB/munge/munged.log" --pid-file="$TB/munge/munged.pid" \
		--seed-file="$TB/munge/munged.seed"
}

netns_attach() {  # netns_attach NS ADDR [BRIDGE]: a namespace with one leg on the bridge (br0), loopback-range address
	ip netns add "$1"
	ip link add "v-$1" type veth peer name eth0 netns "$1"
	ip link set "v-$1" netns $NS-sw
	ip -n $NS-sw link set "v-$1" master "${3:-br0}" up
	# an address in 127.1.0.0/24 on eth0 needs route_localnet, and lo must shrink to 127.0.0.1/32
	ip netns exec "$1" sysctl -qw net.ipv4.conf.all.route_localnet=1 \
		net.ipv4.conf.default.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1
	ip -n "$1" link set lo up
	ip -n "$1" addr del 127.0.0.1/8 dev lo
	ip -n "$1" addr add 127.0.0.1/32 dev lo
	ip -n "$1" addr add "$2/24" dev eth0
	ip -n "$1" link set eth0 up
}

# A daemon with its own hostname, private /etc/hosts and network namespace.  nsenter, not
# `ip netns exec`: the latter remounts /sys, hides /sys/fs/cgroup, and slurmd 22.05 dies.
in_node() {  # in_node HOSTNAME NS CMD...
	local h=$1 ns=$2; shift 2
	nsenter --net=/run/netns/"$ns" unshare --uts --mount --propagation private sh -c \
		"hostname $h && mount --bind $E/hosts /etc/hosts && exec $*"
}

tools_path() { echo "$top_builddir/topology/cli:$top_builddir/launcher:$top_builddir/trainer/driver"; }

client() {
	[ -f "$TB/nodes" ] || die "not up (testbed.sh up first)"
	# tasks inherit this environment: the build's tools on PATH, a working folder every node shares
	local path=$(tools_path):$PATH
	[ "${MOE_TESTBED_INSTALLED:-}" = 1 ] && path=$PATH
	(cd "$TB/work" && PATH=$path ip netns exec $NS-head "$@")
}

wait_idle() {
	local i st
	for ((i = 0; i < 120; i++)); do
		st=$(client sinfo -h -N -o '%N %T' 2>/dev/null || true)
		if [ -n "$st" ] && ! grep -qv ' idle$' <<<"$st"; then echo "$st"; return 0; fi
		sleep 0.5
	done
	echo "testbed: nodes not idle after 60 s" >&2
	client sinfo -N -l >&2 || true
	return 1
}

# What a version changes (testbed24.sh redefines these and the daemons' and clients' runners).
prepare_cache() { ensure_packages; }
prepare_up() { prepare_cache; }
check_nodes() { :; }
write_configs_extra() { :; }
release_root() { :; }

start_slurmd() {  # start_slurmd I
	local name
	name=$(node_name "$1")
	mkdir -p "$TB/var/$name"
	in_node "$name" $NS-n$1 slurmd -f "$SLURM_CONF" -N "$name"
}

node_index() {  # node_index I: dies unless I names a node of the running testbed
	[[ "${1:-}" =~ ^[1-9][0-9]*$ ]] && [ "$1" -le "$(node_count)" ] || die "node index must be 1..$(node_count), got '${1:-}'"
}

# A crash, not a shutdown: the network goes first, so no peer sees a connection close (as with a node
# that loses power), then every process of the node is killed.
do_node_kill() {
	local p
	node_index "${1:-}"
	ip -n $NS-n$1 link set eth0 down
	for p in $(ip netns pids $NS-n$1); do kill -9 "$p" 2>/dev/null || true; done
}

do_node_start() {  # and wait until every node is idle again (no node left down or drained)
	node_index "${1:-}"
	ip -n $NS-n$1 link set eth0 up
	start_slurmd "$1"
	wait_idle
}

do_slurmd_restart() {
	local pid i name log starts
	node_index "${1:-}"
	name=$(node_name "$1")
	log=$TB/log/slurmd-$name.log
	pid=$(cat "$TB/run/slurmd-$name.pid")
	starts=$(grep -c 'slurmd started on' "$log")
	kill "$pid"
	for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && die "slurmd of node $1 (pid $pid) did not stop"
	start_slurmd "$1"
	# ready once it says so (after registering with slurmctld)
	for ((i = 0; i < 300; i++)); do
		[ "$(grep -c 'slurmd started on' "$log")" -gt "$starts" ] && return 0
		sleep 0.1
	done
	die "slurmd of node $1 did not start again within 30 s"
}

# tbf on the egress of one veth end: RATE Mbit/s.  The bucket holds at least one 64 KiB GSO packet (veth
# hands the bridge unsegmented super-packets) and 2 ms at the rate; the queue holds 50 ms of it.
shape() {  # shape NS DEV MBIT
	local burst=$(( $3 * 1000000 / 8 / 500 ))
	[ $burst -lt 65536 ] && burst=65536
	ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "${3}mbit" burst $burst latency 50ms
}

# The rack bridges and their shaped uplinks to the spine bridge, inside the switch namespace.
fabric_up() {
	local r
	ip -n $NS-sw link add brsp type bridge
	ip -n $NS-sw link set brsp up
	for ((r = 1; r <= RACKS; r++)); do
		ip -n $NS-sw link add br$r type bridge
		ip -n $NS-sw link set br$r up
		ip -n $NS-sw link add up$r type veth peer name sp$r
		ip -n $NS-sw link set up$r master br$r up
		ip -n $NS-sw link set sp$r master brsp up
		shape $NS-sw up$r "$SPINE_MBIT"   # rack -> spine
		shape $NS-sw sp$r "$SPINE_MBIT"   # spine -> rack
	done
}

parse_fabric() {  # parse_fabric UP-ARGS...: sets RACKS SPINE_MBIT RACK_MBIT RACK_ORDER, or dies
	local num='^[1-9][0-9]*$'
	while [ $# -gt 0 ]; do
		case $1 in
		--racks|--spine-mbit|--rack-mbit|--rack-order)
			[ $# -gt 1 ] || die "$1 needs a value"
			case $1 in
			--racks) [[ $2 =~ $num ]] || die "--racks must be a whole number >= 1, got '$2'"; RACKS=$2 ;;
			--spine-mbit) [[ $2 =~ $num ]] || die "--spine-mbit must be a whole number of Mbit/s >= 1, got '$2'"; SPINE_MBIT=$2 ;;
			--rack-mbit) [[ $2 =~ $num ]] || die "--rack-mbit must be a whole number of Mbit/s >= 1, got '$2'"; RACK_MBIT=$2 ;;
			--rack-order) case $2 in interleaved|block) RACK_ORDER=$2 ;; *) die "--rack-order must be interleaved or block, got '$2'" ;; esac ;;
			esac
			shift 2 ;;
		--slurm) shift $(( $# > 1 ? 2 : 1 )) ;;
		--slurm=*|[0-9]*) shift ;;
		*) die "unknown option '$1' for up (valid: N --slurm V --racks R --spine-mbit X --rack-mbit Y --rack-order interleaved|block)" ;;
		esac
	done
	if [ "$RACKS" -gt 0 ]; then
		[ "$SPINE_MBIT" -gt 0 ] || die "--racks needs --spine-mbit X (the shaped spine's Mbit/s)"
		[ "$SLURM_VERSION" = 22.05 ] || die "--racks runs on Slurm 22.05 only (24.11's topology/block has its own block sizes)"
	else
		[ "$SPINE_MBIT$RACK_MBIT" = 00 ] && [ "$RACK_ORDER" = interleaved ] ||
			die "--spine-mbit, --rack-mbit and --rack-order need --racks R"
	fi
}

do_up() {
	local n=${1:-4} i
	[[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 8 ] || die "node count must be 1..8, got '$n'"
	[ "$RACKS" -le "$n" ] || die "--racks $RACKS is more racks than the $n nodes"
	check_nodes "$n"
	[ "$(id -u)" = 0 ] || die "must run as root (namespaces, mknod, daemons)"
	for i in "${FIXTURES[@]}"; do
		[ -f "$top_srcdir/tests/fixtures/hwloc/$i" ] || die "missing fixture tests/fixtures/hwloc/$i"
	done
	# whatever testbed is up in this state folder goes first, under the version it was started with
	[ -f "$TB/slurm-version" ] && { bash "${BASH_SOURCE[0]}" down >/dev/null 2>&1 || true; }
	do_down >/dev/null 2>&1 || true
	mkdir -p "$TB" && echo "$SLURM_VERSION" > "$TB/slurm-version"   # from here on, `down` undoes it all
	prepare_up
	plugin_path >/dev/null || exit 1
	write_configs "$n"
	[ "$RACKS" -gt 0 ] && printf 'RACKS=%s SPINE_MBIT=%s RACK_MBIT=%s RACK_ORDER=%s\n' \
		"$RACKS" "$SPINE_MBIT" "$RACK_MBIT" "$RACK_ORDER" > "$TB/fabric"
	rm -rf "$TB/var/ctld"/*
	start_munge
	ip netns add $NS-sw
	ip -n $NS-sw link add br0 type bridge
	ip -n $NS-sw link set br0 up
	local hbr=br0
	[ "$RACKS" -gt 0 ] && { fabric_up; hbr=brsp; }
	netns_attach $NS-head 127.1.0.1 $hbr
	in_node head $NS-head slurmctld -f "$SLURM_CONF"
	for ((i = 1; i <= n; i++)); do
		if [ "$RACKS" -gt 0 ]; then
			netns_attach $NS-n$i 127.1.0.$((10 + i)) br$(rack_of $i $n)
			if [ "$RACK_MBIT" -gt 0 ]; then
				shape $NS-sw v-$NS-n$i "$RACK_MBIT"   # into the node
				shape $NS-n$i eth0 "$RACK_MBIT"       # out of it
			fi
		else
			netns_attach $NS-n$i 127.1.0.$((10 + i))
		fi
		start_slurmd $i
	done
	wait_idle
}

do_down() {
	local f p pids="" ns alive=""
	# every process inside our namespaces (daemons and any slurmstepd still running), then munged
	for ns in $(ip netns list 2>/dev/null | awk -v p="^$NS-" '$1 ~ p {print $1}'); do
		pids="$pids $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
	done
	# and the daemons' own pid files, should a namespace have gone missing under them
	for f in "$TB"/run/*.pid "$TB/munge/munged.pid"; do
		[ -f "$f" ] && pids="$pids $(cat "$f")"
	done
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for ((f = 0; f < 50; f++)); do
		alive=""
		for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
		[ -z "$alive" ] && break
		sleep 0.2
	done
	for p in $alive; do kill -9 "$p" 2>/dev/null || true; done
	for ns in $(ip netns list 2>/dev/null | awk -v p="^$NS-" '$1 ~ p {print $1}'); do ip netns del "$ns"; done
	release_root
	[ -n "${MOE_TESTBED_KEEP:-}" ] || rm -rf "$TB"
	return 0
}

SLURM_VERSION=$(slurm_version "$@")
[ "$SLURM_VERSION" = 22.05 ] || . "$here/testbed${SLURM_VERSION%%.*}.sh"

do_node_exec() {  # do_node_exec I CMD...
	local ns=$NS-head
	[ "${1:-}" = 0 ] || { node_index "${1:-}"; ns=$NS-n$1; }
	shift
	[ $# -gt 0 ] || die "usage: testbed.sh node-exec I CMD..."
	ip netns exec "$ns" "$@"
}

case "${1:-}" in
prepare) prepare_cache ;;
up) shift; n=4; [ $# -gt 0 ] && [ "${1#--}" = "$1" ] && n=$1; parse_fabric "$@"; do_up "$n" ;;
down) do_down ;;
run) shift; [ $# -gt 0 ] || die "usage: testbed.sh run CMD..."; client "$@" ;;
plugstack) shift; write_plugstack "$@" ;;
status) client sinfo -N -o '%N %T %G' ;;
node-kill) do_node_kill "${2:-}" ;;
node-start) do_node_start "${2:-}" ;;
slurmd-restart) do_slurmd_restart "${2:-}" ;;
node-exec) shift; do_node_exec "$@" ;;
*) echo "usage: testbed.sh prepare [--slurm 22.05|24.11] | up [N] [--slurm 22.05|24.11] [--racks R --spine-mbit X [--rack-mbit Y]" \
	"[--rack-order interleaved|block]] | run CMD... | plugstack [ARGS...] | status |" \
	"node-kill I | node-start I | slurmd-restart I | node-exec I CMD... | down" >&2; exit 2 ;;
esac
