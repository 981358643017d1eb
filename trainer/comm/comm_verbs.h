/* comm_verbs.h - what the verbs transport's files share: device and port choice, GID selection
 * (comm_verbs_dev.c, read from sysfs so it is testable without a device), its options from the
 * environment, and GPU memory registration (comm_verbs_gpu.c).  The transport itself is
 * comm_verbs.c; the rest of the trainer sees only comm.h.
 */
#ifndef TR_COMM_VERBS_H
#define TR_COMM_VERBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TR_IB_NAME_LEN 64
#define TR_IB_SYSFS "/sys/class/infiniband"

/* What the environment asks of the transport (MOE_IB_*, MOE_NET_DEVICES; doc/transports.md). */
struct tr_ib_opts {
	char dev[TR_IB_NAME_LEN]; /* "" = the first active device */
	int port;                 /* 0 = the first active port of dev */
	int gid_index;            /* -1 = pick as NCCL does */
	int family;               /* AF_INET or AF_INET6: the RoCE GID's address family */
	int tc, sl;               /* traffic class, service level */
	int timeout;              /* local ACK timeout exponent (4.096 us * 2^timeout) */
	size_t window;            /* receive window per peer, bytes (power of two) */
	bool verbose;
};
/* Reads the options; -1 with one line in err on a bad value. */
int tr_ib_opts_read(struct tr_ib_opts *o, char *err, size_t errlen);
/* "NAME[:PORT]" (the first entry of a comma list, as MOE_NET_DEVICES gives). */
int tr_ib_parse_device(const char *spec, char *name, size_t len, int *port, char *err, size_t errlen);

/* One entry of a port's GID table as sysfs shows it. */
struct tr_ib_gid {
	int index;
	uint8_t raw[16];
	bool roce_v2;    /* gid_attrs/types/N reads "RoCE v2" */
};
/* The GID index a RoCE port should use, as NCCL picks it: RoCE v2 over v1, an address of `family`
 * (IPv4-mapped ::ffff:a.b.c.d for AF_INET), not link-local, not zero; the lowest such index.  With
 * want >= 0, checks that entry instead.  sysfs = the device's folder (TR_IB_SYSFS/DEV).  -1 with
 * one line naming the port and its usable GIDs in err. */
int tr_ib_gid_pick(const char *sysfs_dev, const char *dev, int port, int family, int want, struct tr_ib_gid *out,
		   char *err, size_t errlen);
/* Reads entry `index` of the port's table; 0, or -1 when it does not exist or is zero. */
int tr_ib_gid_read(const char *sysfs_dev, int port, int index, struct tr_ib_gid *out);
void tr_ib_gid_format(const uint8_t raw[16], char *buf, size_t len); /* "::ffff:127.1.1.1" */

/* Port state as sysfs says ("4: ACTIVE" -> 4, name in state); -1 when there is no such port. */
int tr_ib_port_state(const char *sysfs_root, const char *dev, int port, char *state, size_t len);
/* Every device and port with its state, for error messages: "rxe0 port 1 ACTIVE, mlx5_0 port 1 DOWN"
 * or "no RDMA devices on this node". */
void tr_ib_list_devices(const char *sysfs_root, char *buf, size_t len);
/* Resolves o->dev / o->port against sysfs (first active device / port when unset); -1 with one
 * line naming the device and listing them all when it does not exist or is not active. */
int tr_ib_choose_port(const char *sysfs_root, struct tr_ib_opts *o, char *err, size_t errlen);

/* GPU memory registration (comm_verbs_gpu.c): what this process can do with CUDA device memory,
 * detected once: "dmabuf", "peermem", "staging" (pinned host copies) or "none" (not a CUDA build,
 * or no CUDA driver). */
const char *tr_ib_gpu_mode(void);
struct ibv_pd;
struct ibv_mr;
/* Registers buf for local and remote write: CUDA device memory as tr_ib_gpu_mode() says (NULL with
 * *staged set when it must be staged), host memory with ibv_reg_mr. */
struct ibv_mr *tr_ib_reg(struct ibv_pd *pd, void *buf, size_t len, int access, bool *staged);

#endif
