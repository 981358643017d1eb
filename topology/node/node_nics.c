/* node_nics.c - link layer and port count of RDMA NICs on the live machine, from sysfs
 * (/sys/class/infiniband/DEV/ports/N/link_layer), which libibverbs reads as well: hwloc XML
 * exported without the OpenFabrics backend details still gets RoCE vs InfiniBand right. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "node_int.h"

static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	buf[0] = 0;
	if (!f)
		return;
	if (!fgets(buf, (int)len, f))
		buf[0] = 0;
	fclose(f);
	buf[strcspn(buf, "\n")] = 0;
}

void mt_nics_fill_live(struct mt_node *n)
{
	for (int i = 0; i < n->n_nics; i++) {
		struct mt_nic *c = &n->nics[i];
		if (!c->rdma || strchr(c->name, '/') || c->name[0] == '.')
			continue;
		char dir[320], path[640], v[64];
		if (strlen(c->name) > 200)
			continue;
		snprintf(dir, sizeof(dir), "/sys/class/infiniband/%s/ports", c->name);
		DIR *d = opendir(dir);
		if (!d)
			continue;
		int ports = 0;
		enum mt_link_layer ll = MT_LL_UNKNOWN;
		for (struct dirent *e; (e = readdir(d));) {
			if (e->d_name[0] < '0' || e->d_name[0] > '9')
				continue;
			ports++;
			snprintf(path, sizeof(path), "%s/%s/link_layer", dir, e->d_name);
			read_line(path, v, sizeof(v));
			if (ll == MT_LL_UNKNOWN)
				ll = !strcmp(v, "InfiniBand") ? MT_LL_IB : !strcmp(v, "Ethernet") ? MT_LL_ETH : ll;
		}
		closedir(d);
		if (ports)
			c->ports = ports;
		if (ll != MT_LL_UNKNOWN)
			c->link = ll;
	}
}
