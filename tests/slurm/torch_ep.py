#!/usr/bin/python3
"""torch_ep.py - an unmodified torch.distributed (gloo) program, run as every task of a Slurm step.

    torch_ep.py EP [HOST=DOMAIN ...]

It knows nothing of moetopo: it starts from RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (env://), as
torchrun-style launchers set them.  With EP > 0 it checks that every EP group of EP consecutive ranks
lies inside one NVLink domain (the domain of each host is given on the command line, from the cluster's
topology.conf) and exchanges data inside its group with all_to_all_single; with EP = 0 (no plan is in
effect) it exchanges over the whole world.  One line per rank:
    TORCH rank world host group local=yes|no a2a=ok|bad via=all_to_all_single|all_gather
"""
import os
import socket
import sys

import torch
import torch.distributed as dist


def exchange(rank, members, group):
    """Member i sends member j the value 1000*i + j; returns (ok, how)."""
    me, n = members.index(rank), len(members)
    send = torch.tensor([1000 * me + j for j in range(n)], dtype=torch.int64)
    recv = torch.zeros(n, dtype=torch.int64)
    want = torch.tensor([1000 * i + me for i in range(n)], dtype=torch.int64)
    try:
        dist.all_to_all_single(recv, send, group=group)
        how = "all_to_all_single"
    except RuntimeError as e:
        # some gloo builds have no alltoall: every member's row gathered, own column kept, proves the same
        if "alltoall" not in str(e).lower() and "all_to_all" not in str(e).lower():
            raise
        rows = [torch.zeros(n, dtype=torch.int64) for _ in range(n)]
        dist.all_gather(rows, send, group=group)
        recv = torch.stack([r[me] for r in rows])
        how = "all_gather"
    return bool(torch.equal(recv, want)), how


def main():
    ep = int(sys.argv[1])
    domain = dict(a.split("=", 1) for a in sys.argv[2:])
    dist.init_process_group("gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    host = socket.gethostname()
    hosts = [None] * world
    dist.all_gather_object(hosts, host)
    size = ep if ep > 0 else world
    # every rank creates every group, in the same order (torch.distributed's rule for new_group)
    groups = [dist.new_group(list(range(g * size, (g + 1) * size))) for g in range(world // size)]
    g = rank // size
    local = all(len({domain.get(h, h) for h in hosts[k * size:(k + 1) * size]}) == 1
                for k in range(world // size)) if ep > 0 else True
    ok, how = exchange(rank, list(range(g * size, (g + 1) * size)), groups[g])
    dist.barrier()
    print("TORCH %d %d %s %d local=%s a2a=%s via=%s" % (rank, world, host, g, "yes" if local else "no",
                                                       "ok" if ok else "bad", how), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
