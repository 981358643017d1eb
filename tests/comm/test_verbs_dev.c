/* test_verbs_dev.c - what the verbs transport decides without a device, on any machine: the
 * options (MOE_IB_*), NAME[:PORT] parsing, device and port choice with their error lines, and the
 * GID index NCCL's rule picks, all against sysfs-like folders this test writes (shapes copied from
 * a Soft-RoCE rxe0 and a ConnectX RoCE port with IPv6 and IPv4 addresses); then transport setup on
 * this machine's real sysfs: without a device it fails at once with one line.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "comm_internal.h"
#include "comm_verbs.h"

static char root[256];

static void put(const char *rel, const char *fmt, ...)
{
	char path[512], cmd[600];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	if (system(cmd) != 0)
		exit(1);
	FILE *f = fopen(path, "w");
	if (!f)
		exit(1);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* A port's GID table: entries given as (index, gid text, type or NULL for an IB port); others absent. */
static void gid(const char *dev, int port, int idx, const char *g, const char *type)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "%s/ports/%d/gids/%d", dev, port, idx);
	put(rel, "%s\n", g);
	if (type) {
		snprintf(rel, sizeof(rel), "%s/ports/%d/gid_attrs/types/%d", dev, port, idx);
		put(rel, "%s\n", type);
	}
}

static const char *ZERO = "0000:0000:0000:0000:0000:0000:0000:0000";

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/test_verbs_dev.%d", (int)getpid());
	/* rxe0 as Soft-RoCE shows it: link-local v1/v2 at 0/1... here the guest's order: 0 fe80 v1, 1 v4 v2 */
	put("rxe0/ports/1/state", "4: ACTIVE\n");
	gid("rxe0", 1, 0, "fe80:0000:0000:0000:a8bb:ccff:fedd:eeff", "IB/RoCE v1");
	gid("rxe0", 1, 1, "0000:0000:0000:0000:0000:ffff:7f01:0101", "RoCE v2");
	gid("rxe0", 1, 2, ZERO, "RoCE v2");
	/* mlx5_0: a dual-stack RoCE port, v1 and v2 of each address; IPv4 v1 comes before v2 */
	put("mlx5_0/ports/1/state", "4: ACTIVE\n");
	gid("mlx5_0", 1, 0, "fe80:0000:0000:0000:0e42:a1ff:fe00:0001", "IB/RoCE v1");
	gid("mlx5_0", 1, 1, "fe80:0000:0000:0000:0e42:a1ff:fe00:0001", "RoCE v2");
	gid("mlx5_0", 1, 2, "2001:0db8:0000:0000:0000:0000:0000:0007", "IB/RoCE v1");
	gid("mlx5_0", 1, 3, "2001:0db8:0000:0000:0000:0000:0000:0007", "RoCE v2");
	gid("mlx5_0", 1, 4, "0000:0000:0000:0000:0000:ffff:0a00:0007", "IB/RoCE v1");
	gid("mlx5_0", 1, 5, "0000:0000:0000:0000:0000:ffff:0a00:0007", "RoCE v2");
	/* a hole, then one more address far down the table: still found */
	gid("mlx5_0", 1, 9, "0000:0000:0000:0000:0000:ffff:0a00:0108", "RoCE v2");
	/* mlx5_1: port 1 down, port 2 active; IB link layer (no types folder), IPv6-only */
	put("mlx5_1/ports/1/state", "1: DOWN\n");
	put("mlx5_1/ports/2/state", "4: ACTIVE\n");
	gid("mlx5_1", 2, 0, "fe80:0000:0000:0000:0002:c903:0000:1234", NULL);
	/* bnxt_re0: RoCE v1 only, IPv4 */
	put("bnxt_re0/ports/1/state", "4: ACTIVE\n");
	gid("bnxt_re0", 1, 0, "0000:0000:0000:0000:0000:ffff:0a00:0009", "IB/RoCE v1");

	char dir[300], err[512];
	int rc;
	struct tr_ib_gid g;
	snprintf(dir, sizeof(dir), "%s/rxe0", root);
	rc = tr_ib_gid_pick(dir, "rxe0", 1, AF_INET, -1, &g, err, sizeof(err));
	tap_ok(rc == 0 && g.index == 1 && g.roce_v2,
	       "rxe0: the RoCE v2 IPv4 GID is index 1 (got %d)", g.index);
	char txt[64];
	tr_ib_gid_format(g.raw, txt, sizeof(txt));
	tap_ok(!strcmp(txt, "::ffff:127.1.1.1"), "GID text of index 1: %s", txt);
	rc = tr_ib_gid_pick(dir, "rxe0", 1, AF_INET6, -1, &g, err, sizeof(err));
	tap_ok(rc != 0 &&
	       strstr(err, "rxe0 port 1 has no IPv6 GID") && strstr(err, "1 ::ffff:127.1.1.1 (RoCE v2)"),
	       "rxe0 with MOE_IB_ADDR_FAMILY=AF_INET6: no usable GID (link-local only), listed: %s", err);
	rc = tr_ib_gid_pick(dir, "rxe0", 1, AF_INET, 0, &g, err, sizeof(err));
	tap_ok(rc == 0 && g.index == 0,
	       "MOE_IB_GID_INDEX=0 is taken as asked");
	rc = tr_ib_gid_pick(dir, "rxe0", 1, AF_INET, 2, &g, err, sizeof(err));
	tap_ok(rc != 0 &&
	       strstr(err, "MOE_IB_GID_INDEX=2: rxe0 port 1 has no GID at index 2 (valid: 0 fe80::a8bb:ccff:fedd:eeff "
			   "(RoCE v1/IB), 1 ::ffff:127.1.1.1 (RoCE v2))"),
	       "a zero entry is not a GID: %s", err);
	rc = tr_ib_gid_pick(dir, "rxe0", 1, AF_INET, 500, &g, err, sizeof(err));
	tap_ok(rc != 0 &&
	       strstr(err, "no GID at index 500"), "an index past the table: %s", err);

	snprintf(dir, sizeof(dir), "%s/mlx5_0", root);
	rc = tr_ib_gid_pick(dir, "mlx5_0", 1, AF_INET, -1, &g, err, sizeof(err));
	tap_ok(rc == 0 && g.index == 5,
	       "dual-stack port: IPv4 RoCE v2 is index 5, not the v1 entry 4 (got %d)", g.index);
	rc = tr_ib_gid_pick(dir, "mlx5_0", 1, AF_INET6, -1, &g, err, sizeof(err));
	tap_ok(rc == 0 && g.index == 3,
	       "AF_INET6: the global IPv6 RoCE v2 entry 3, not link-local 1 (got %d)", g.index);
	rc = tr_ib_gid_pick(dir, "mlx5_0", 1, AF_INET, 9, &g, err, sizeof(err));
	tap_ok(rc == 0 && g.index == 9,
	       "an entry past a hole in the table can be asked for");
	snprintf(dir, sizeof(dir), "%s/bnxt_re0", root);
	rc = tr_ib_gid_pick(dir, "bnxt_re0", 1, AF_INET, -1, &g, err, sizeof(err));
	tap_ok(rc == 0 && g.index == 0 && !g.roce_v2,
	       "RoCE v1 only: the IPv4 v1 entry is used");

	/* device and port choice */
	struct tr_ib_opts o = { 0 };
	char list[512];
	tr_ib_list_devices(root, list, sizeof(list));
	tap_ok(!strcmp(list, "bnxt_re0 port 1 ACTIVE, mlx5_0 port 1 ACTIVE, mlx5_1 port 1 DOWN, mlx5_1 port 2 ACTIVE, "
			     "rxe0 port 1 ACTIVE"),
	       "devices listed with their ports' states: %s", list);
	snprintf(o.dev, sizeof(o.dev), "mlx5_9");
	rc = tr_ib_choose_port(root, &o, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "no RDMA device 'mlx5_9' (bnxt_re0 port 1"),
	       "unknown device named, devices listed: %s", err);
	snprintf(o.dev, sizeof(o.dev), "mlx5_1");
	o.port = 1;
	rc = tr_ib_choose_port(root, &o, err, sizeof(err));
	tap_ok(rc != 0 &&
	       strstr(err, "RDMA device 'mlx5_1' port 1 is DOWN, not ACTIVE (bnxt_re0"), "a down port: %s", err);
	o.port = 3;
	rc = tr_ib_choose_port(root, &o, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "RDMA device 'mlx5_1' has no port 3"),
	       "a port that does not exist: %s", err);
	o.port = 0;
	rc = tr_ib_choose_port(root, &o, err, sizeof(err));
	tap_ok(rc == 0 && o.port == 2, "no port given: the first active one (%d)",
	       o.port);
	o.dev[0] = 0;
	o.port = 0;
	rc = tr_ib_choose_port(root, &o, err, sizeof(err));
	tap_ok(rc == 0 && !strcmp(o.dev, "bnxt_re0") && o.port == 1,
	       "no device given: the first active device (%s:%d)", o.dev, o.port);
	char empty[300];
	snprintf(empty, sizeof(empty), "%s/none", root);
	mkdir(empty, 0755);
	o.dev[0] = 0;
	rc = tr_ib_choose_port(empty, &o, err, sizeof(err));
	tap_ok(rc != 0 &&
	       strstr(err, "no active RDMA port (no RDMA devices on this node)"), "a node without devices: %s", err);

	/* options */
	int port;
	char name[64];
	rc = tr_ib_parse_device("mlx5_3:1,mlx5_4:1", name, sizeof(name), &port, err, sizeof(err));
	tap_ok(rc == 0 &&
	       !strcmp(name, "mlx5_3") && port == 1, "MOE_NET_DEVICES list: the first entry (%s:%d)", name, port);
	rc = tr_ib_parse_device("rxe0", name, sizeof(name), &port, err, sizeof(err));
	tap_ok(rc == 0 && port == 0, "no port: 0 (any)");
	rc = tr_ib_parse_device("rxe0:x", name, sizeof(name), &port, err, sizeof(err));
	tap_ok(rc != 0 &&
	       strstr(err, "port 'x' is not a number in 1..255"), "bad port: %s", err);
	rc = tr_ib_parse_device(":1", name, sizeof(name), &port, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, "NAME[:PORT]"),
	       "no name: %s", err);
	unsetenv("MOE_IB_DEVICE");
	setenv("MOE_NET_DEVICES", "mlx5_3:1", 1);
	rc = tr_ib_opts_read(&o, err, sizeof(err));
	tap_ok(rc == 0 && !strcmp(o.dev, "mlx5_3") && o.port == 1 &&
	       o.gid_index == -1 && o.family == AF_INET && o.window == 2u << 20 && o.timeout == 16,
	       "defaults; the device from the plan's MOE_NET_DEVICES");
	setenv("MOE_IB_DEVICE", "rxe0:1", 1);
	setenv("MOE_IB_GID_INDEX", "3", 1);
	setenv("MOE_IB_TC", "106", 1);
	setenv("MOE_IB_SL", "3", 1);
	setenv("MOE_IB_ADDR_FAMILY", "AF_INET6", 1);
	setenv("MOE_IB_WINDOW", "65536", 1);
	rc = tr_ib_opts_read(&o, err, sizeof(err));
	tap_ok(rc == 0 && !strcmp(o.dev, "rxe0") && o.gid_index == 3 && o.tc == 106 &&
	       o.sl == 3 && o.family == AF_INET6 && o.window == 65536, "MOE_IB_DEVICE overrides the plan; every option read");
	struct { const char *var, *val, *want; } bad[] = {
		{ "MOE_IB_GID_INDEX", "one", "MOE_IB_GID_INDEX='one' is not an integer in 0..65535" },
		{ "MOE_IB_SL", "16", "MOE_IB_SL='16' is not an integer in 0..15" },
		{ "MOE_IB_WINDOW", "100000", "MOE_IB_WINDOW='100000' is not a power of two" },
		{ "MOE_IB_ADDR_FAMILY", "inet", "MOE_IB_ADDR_FAMILY='inet' (valid: AF_INET, AF_INET6)" },
		{ "MOE_IB_DEVICE", "rxe0:0", "MOE_IB_DEVICE: RDMA device 'rxe0:0': port '0' is not a number in 1..255" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *old = getenv(bad[i].var) ? strdup(getenv(bad[i].var)) : NULL;
		setenv(bad[i].var, bad[i].val, 1);
		rc = tr_ib_opts_read(&o, err, sizeof(err));
	tap_ok(rc != 0 && strstr(err, bad[i].want), "%s=%s: %s", bad[i].var,
		       bad[i].val, err);
		if (old)
			setenv(bad[i].var, old, 1);
		else
			unsetenv(bad[i].var);
		free(old);
	}
	unsetenv("MOE_IB_GID_INDEX");
	unsetenv("MOE_IB_ADDR_FAMILY");
	unsetenv("MOE_IB_WINDOW");

#ifdef HAVE_VERBS
	/* the real thing on this machine: a device that is not there fails setup at once, one line */
	struct tr_peer peers[2] = { { "a", "127.0.0.1", 1 }, { "b", "127.0.0.1", 2 } };
	struct tr_world w = { .rank = 0, .size = 2, .peers = peers, .listen_fd = -1, .timeout = 5 };
	struct tr_transport *t = NULL;
	setenv("MOE_IB_DEVICE", "mlx5_9", 1);
	char sys_list[512];
	tr_ib_list_devices(TR_IB_SYSFS, sys_list, sizeof(sys_list));
	double t0 = tr_now();
	rc = tr_verbs_open(&w, &t, err, sizeof(err));
	char want[600];
	snprintf(want, sizeof(want), "verbs: no RDMA device 'mlx5_9' (%s)", sys_list);
	tap_ok(rc != 0 && !strcmp(err, want) && !strchr(err, '\n') && tr_now() - t0 < 5,
	       "transport setup with a missing device: %s", err);
	if (rc == 0)
		t->ops->destroy(t);
#else
	printf("ok %d # SKIP built without libibverbs\n", ++tap_n);
#endif
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		return 1;
	return tap_done();
}
