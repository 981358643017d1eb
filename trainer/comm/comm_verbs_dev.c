/* comm_verbs_dev.c - the verbs transport's choices that need no device open: options from the
 * environment, which device and port (MOE_IB_DEVICE, else the rank's rail from MOE_NET_DEVICES,
 * else the first active one), and the RoCE GID index as NCCL picks it, all read from sysfs.  Plain
 * C with no libibverbs, so the unit tests run it on a sysfs-like folder on any machine.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "comm_verbs.h"

#define GID_HOLES 32 /* consecutive empty entries that end a GID scan (a table has 1024; reading all
			is slow under emulation, and addresses sit at the front) */

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *ok = fgets(buf, (int)len, f);
	fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static int env_num(const char *name, long min, long max, long def, long *out, char *err, size_t errlen)
{
	const char *v = getenv(name);
	*out = def;
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	long x = strtol(v, &end, 0);
	if (errno || *end || x < min || x > max) {
		snprintf(err, errlen, "%s='%s' is not an integer in %ld..%ld", name, v, min, max);
		return -1;
	}
	*out = x;
	return 0;
}

int tr_ib_parse_device(const char *spec, char *name, size_t len, int *port, char *err, size_t errlen)
{
	size_t n = strcspn(spec, ",");
	const char *colon = memchr(spec, ':', n);
	size_t nl = colon ? (size_t)(colon - spec) : n;
	*port = 0;
	if (nl == 0 || nl >= len) {
		snprintf(err, errlen, "RDMA device '%.*s': expected NAME[:PORT]", (int)n, spec);
		return -1;
	}
	memcpy(name, spec, nl);
	name[nl] = 0;
	if (colon) {
		char pbuf[16];
		size_t pl = n - nl - 1;
		char *end;
		long p = 0;
		if (pl > 0 && pl < sizeof(pbuf)) {
			memcpy(pbuf, colon + 1, pl);
			pbuf[pl] = 0;
			p = strtol(pbuf, &end, 10);
		}
		if (pl == 0 || pl >= sizeof(pbuf) || *end || p < 1 || p > 255) {
			snprintf(err, errlen, "RDMA device '%.*s': port '%.*s' is not a number in 1..255", (int)n, spec,
				 (int)pl, colon + 1);
			return -1;
		}
		*port = (int)p;
	}
	return 0;
}

int tr_ib_opts_read(struct tr_ib_opts *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof(*o));
	const char *dev = getenv("MOE_IB_DEVICE"), *what = "MOE_IB_DEVICE";
	if (!dev || !*dev) {
		dev = getenv("MOE_NET_DEVICES");
		what = "MOE_NET_DEVICES";
	}
	if (dev && *dev && tr_ib_parse_device(dev, o->dev, sizeof(o->dev), &o->port, err, errlen) != 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "%s: %s", what, why);
		return -1;
	}
	long gid, tc, sl, to, win;
	if (env_num("MOE_IB_GID_INDEX", 0, 65535, -1, &gid, err, errlen) ||
	    env_num("MOE_IB_TC", 0, 255, 0, &tc, err, errlen) || env_num("MOE_IB_SL", 0, 15, 0, &sl, err, errlen) ||
	    env_num("MOE_IB_TIMEOUT", 1, 31, 16, &to, err, errlen) ||
	    env_num("MOE_IB_WINDOW", 4096, 1L << 30, 2L << 20, &win, err, errlen))
		return -1;
	if (win & (win - 1)) {
		snprintf(err, errlen, "MOE_IB_WINDOW='%s' is not a power of two (4096..1073741824)", getenv("MOE_IB_WINDOW"));
		return -1;
	}
	const char *fam = getenv("MOE_IB_ADDR_FAMILY");
	o->family = AF_INET;
	if (fam && *fam) {
		if (!strcmp(fam, "AF_INET6"))
			o->family = AF_INET6;
		else if (strcmp(fam, "AF_INET")) {
			snprintf(err, errlen, "MOE_IB_ADDR_FAMILY='%s' (valid: AF_INET, AF_INET6)", fam);
			return -1;
		}
	}
	const char *vb = getenv("MOE_COMM_VERBOSE");
	o->verbose = vb && *vb && strcmp(vb, "0");
	o->gid_index = (int)gid;
	o->tc = (int)tc;
	o->sl = (int)sl;
	o->timeout = (int)to;
	o->window = (size_t)win;
	return 0;
}

/* "fe80:0000:...:0001" (8 groups of 4 hex digits) -> 16 bytes. */
static int parse_gid(const char *s, uint8_t raw[16])
{
	for (int g = 0; g < 8; g++) {
		unsigned v;
		int used;
		if (sscanf(s, "%4x%n", &v, &used) != 1 || used != 4)
			return -1;
		raw[2 * g] = v >> 8;
		raw[2 * g + 1] = v & 0xff;
		s += 4;
		if (g < 7 && *s++ != ':')
			return -1;
	}
	return *s ? -1 : 0;
}

void tr_ib_gid_format(const uint8_t raw[16], char *buf, size_t len)
{
	if (!inet_ntop(AF_INET6, raw, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

int tr_ib_gid_read(const char *sysfs_dev, int port, int index, struct tr_ib_gid *out)
{
	char path[PATH_MAX], line[128];
	snprintf(path, sizeof(path), "%s/ports/%d/gids/%d", sysfs_dev, port, index);
	memset(out, 0, sizeof(*out));
	out->index = index;
	if (read_line(path, line, sizeof(line)) != 0 || parse_gid(line, out->raw) != 0)
		return -1;
	static const uint8_t zero[16];
	if (!memcmp(out->raw, zero, 16))
		return -1;
	snprintf(path, sizeof(path), "%s/ports/%d/gid_attrs/types/%d", sysfs_dev, port, index);
	/* reading the type of an empty entry fails (EINVAL); IB ports have no types folder */
	out->roce_v2 = read_line(path, line, sizeof(line)) == 0 && !strcmp(line, "RoCE v2");
	return 0;
}

static bool v4_mapped(const uint8_t *g)
{
	static const uint8_t pre[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	return !memcmp(g, pre, 12);
}

static bool link_local(const uint8_t *g)
{
	return g[0] == 0xfe && (g[1] & 0xc0) == 0x80;
}

/* NCCL's preference: the right family and RoCE v2; 2 = both, 1 = family only, 0 = unusable. */
static int score(const struct tr_ib_gid *g, int family)
{
	bool fam = family == AF_INET ? v4_mapped(g->raw) : !v4_mapped(g->raw) && !link_local(g->raw);
	return fam ? 1 + g->roce_v2 : 0;
}

int tr_ib_gid_pick(const char *sysfs_dev, const char *dev, int port, int family, int want, struct tr_ib_gid *out,
		   char *err, size_t errlen)
{
	struct tr_ib_gid g, best = { .index = -1 };
	int best_score = 0, holes = 0;
	char list[400] = "";
	size_t ll = 0;
	if (want >= 0 && tr_ib_gid_read(sysfs_dev, port, want, out) == 0)
		return 0;
	for (int i = 0; i < 65536 && holes < GID_HOLES; i++) {
		if (tr_ib_gid_read(sysfs_dev, port, i, &g) != 0) {
			holes++;
			continue;
		}
		holes = 0;
		char a[64];
		tr_ib_gid_format(g.raw, a, sizeof(a));
		if (ll < sizeof(list) - 1)
			ll += snprintf(list + ll, sizeof(list) - ll, "%s%d %s (%s)", ll ? ", " : "", i, a,
				       g.roce_v2 ? "RoCE v2" : "RoCE v1/IB");
		int s = score(&g, family);
		if (s > best_score) {
			best = g;
			best_score = s;
		}
	}
	if (want >= 0) {
		snprintf(err, errlen, "MOE_IB_GID_INDEX=%d: %s port %d has no GID at index %d (valid: %s)", want, dev, port,
			 want, ll ? list : "none");
		return -1;
	}
	if (best_score == 0) {
		snprintf(err, errlen, "%s port %d has no %s GID to use (GIDs: %s; set MOE_IB_GID_INDEX or "
			 "MOE_IB_ADDR_FAMILY)", dev, port, family == AF_INET ? "IPv4" : "IPv6", ll ? list : "none");
		return -1;
	}
	*out = best;
	return 0;
}

int tr_ib_port_state(const char *sysfs_root, const char *dev, int port, char *state, size_t len)
{
	char path[PATH_MAX], line[64];
	snprintf(path, sizeof(path), "%s/%s/ports/%d/state", sysfs_root, dev, port);
	if (read_line(path, line, sizeof(line)) != 0)
		return -1;
	const char *name = strchr(line, ':');
	snprintf(state, len, "%s", name ? name + 1 + (name[1] == ' ') : line);
	return atoi(line);
}

static int names(const char *dir, char out[][TR_IB_NAME_LEN], int max)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && n < max && (e = readdir(d));)
		if (e->d_name[0] != '.' && strlen(e->d_name) < TR_IB_NAME_LEN)
			snprintf(out[n++], TR_IB_NAME_LEN, "%s", e->d_name);
	if (d)
		closedir(d);
	/* sorted: messages and the default device do not depend on directory order */
	qsort(out, n, TR_IB_NAME_LEN, (int (*)(const void *, const void *))strcmp);
	return n;
}

#define MAX_DEVS 64
#define MAX_PORTS 8

static int ports_of(const char *sysfs_root, const char *dev, int *ports)
{
	char dir[PATH_MAX], pn[MAX_PORTS][TR_IB_NAME_LEN];
	snprintf(dir, sizeof(dir), "%s/%s/ports", sysfs_root, dev);
	int n = names(dir, pn, MAX_PORTS);
	for (int i = 0; i < n; i++)
		ports[i] = atoi(pn[i]);
	return n;
}

void tr_ib_list_devices(const char *sysfs_root, char *buf, size_t len)
{
	static char devs[MAX_DEVS][TR_IB_NAME_LEN];
	int nd = names(sysfs_root, devs, MAX_DEVS);
	size_t l = 0;
	buf[0] = 0;
	for (int i = 0; i < nd && l < len; i++) {
		int ports[MAX_PORTS], np = ports_of(sysfs_root, devs[i], ports);
		for (int j = 0; j < np && l < len; j++) {
			char st[32];
			if (tr_ib_port_state(sysfs_root, devs[i], ports[j], st, sizeof(st)) < 0)
				snprintf(st, sizeof(st), "unknown");
			l += snprintf(buf + l, len - l, "%s%s port %d %s", l ? ", " : "", devs[i], ports[j], st);
		}
	}
	if (!l)
		snprintf(buf, len, "no RDMA devices on this node");
}

#define PORT_ACTIVE 4

int tr_ib_choose_port(const char *sysfs_root, struct tr_ib_opts *o, char *err, size_t errlen)
{
	char list[512], st[32], dir[PATH_MAX];
	tr_ib_list_devices(sysfs_root, list, sizeof(list));
	if (!o->dev[0]) { /* nothing asked: the first device with an active port */
		static char devs[MAX_DEVS][TR_IB_NAME_LEN];
		int nd = names(sysfs_root, devs, MAX_DEVS);
		for (int i = 0; i < nd && !o->dev[0]; i++) {
			int ports[MAX_PORTS], np = ports_of(sysfs_root, devs[i], ports);
			for (int j = 0; j < np; j++)
				if (tr_ib_port_state(sysfs_root, devs[i], ports[j], st, sizeof(st)) == PORT_ACTIVE) {
					snprintf(o->dev, sizeof(o->dev), "%.*s", (int)sizeof(o->dev) - 1, devs[i]);
					o->port = ports[j];
					break;
				}
		}
		if (!o->dev[0]) {
			snprintf(err, errlen, "no active RDMA port (%s); set MOE_IB_DEVICE=NAME[:PORT]", list);
			return -1;
		}
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s/%s", sysfs_root, o->dev);
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "no RDMA device '%s' (%s)", o->dev, list);
		return -1;
	}
	closedir(d);
	if (o->port == 0) {
		int ports[MAX_PORTS], np = ports_of(sysfs_root, o->dev, ports);
		for (int j = 0; j < np && !o->port; j++)
			if (tr_ib_port_state(sysfs_root, o->dev, ports[j], st, sizeof(st)) == PORT_ACTIVE)
				o->port = ports[j];
		if (!o->port) {
			snprintf(err, errlen, "RDMA device '%s' has no active port (%s)", o->dev, list);
			return -1;
		}
		return 0;
	}
	int s = tr_ib_port_state(sysfs_root, o->dev, o->port, st, sizeof(st));
	if (s < 0) {
		snprintf(err, errlen, "RDMA device '%s' has no port %d (%s)", o->dev, o->port, list);
		return -1;
	}
	if (s != PORT_ACTIVE) {
		snprintf(err, errlen, "RDMA device '%s' port %d is %s, not ACTIVE (%s)", o->dev, o->port, st, list);
		return -1;
	}
	return 0;
}
