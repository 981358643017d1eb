#!/bin/sh
# moetopo-prolog.sh - cache this node's hwloc topology for the moe_topology SPANK plugin.
#
# slurm.conf:  Prolog=/etc/slurm/prolog.d/moetopo-prolog.sh   (runs as root on each node of a job)
# plugstack :  ... topology=/var/cache/moetopo/%n.xml
#
# Reading the live machine (hwloc with every PCI device, NVML) costs tens to hundreds of milliseconds;
# the plugin would pay it in every job step.  The cache is refreshed once a day, or when missing, and is
# written atomically (temporary name, then rename) so that a step never reads half a file.  The plugin
# reads it only when root owns it and nobody else can write it or its folder.
set -u
cache=${MOETOPO_CACHE:-/var/cache/moetopo}
node=${SLURMD_NODENAME:-$(hostname -s)}
out=$cache/$node.xml
max_age_min=${MOETOPO_CACHE_MAX_AGE_MIN:-1440}

umask 022
mkdir -p "$cache" && chown root:root "$cache" && chmod 755 "$cache" || exit 0
# fresh enough: nothing to do (find prints the file only when it is younger than the limit)
[ -n "$(find "$out" -mmin -"$max_age_min" 2>/dev/null)" ] && exit 0
# A failed export must never fail the job: the plugin falls back to the live machine.
moetopo export --output "$out" >/dev/null 2>&1 || logger -t moetopo-prolog "moetopo export failed on $node"
exit 0
