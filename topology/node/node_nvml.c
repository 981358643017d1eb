/* node_nvml.c - NVLink, UUIDs and the multi-node NVLink fabric of a live node, from NVML.
 *
 * libnvidia-ml.so.1 is dlopen'ed (no CUDA at build time, nothing required at run time); without it
 * the node keeps nvlink == NULL (unknown).  nvml.h is not available here, so the few types used are
 * declared below with the layouts of the versioned symbols we resolve: nvmlPciInfo_t is the v3
 * layout (busIdLegacy first), which nvmlDeviceGetNvLinkRemotePciInfo_v2 also uses; the _v1 remote
 * symbol has another layout and is deliberately not used.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node_int.h"

typedef int nvmlReturn_t; /* enum in nvml.h: NVML_SUCCESS = 0 */
typedef struct nvmlDevice_st *nvmlDevice_t;

typedef struct {
	char busIdLegacy[16];
	unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
	char busId[32];
} nvmlPciInfo_t;

/* nvmlGpuFabricInfo_v2_t; nvmlGpuFabricState_t is an unsigned char in nvml.h */
typedef struct {
	unsigned int version;
	unsigned char clusterUuid[16];
	nvmlReturn_t status;
	unsigned int cliqueId;
	unsigned char state;
	unsigned int healthMask;
} nvmlGpuFabricInfoV_t;
#define FABRIC_INFO_V2 ((unsigned int)(sizeof(nvmlGpuFabricInfoV_t) | (2u << 24)))
#define FABRIC_STATE_COMPLETED 3

enum { NVLINK_MAX_LINKS = 18, REMOTE_GPU = 0, REMOTE_IBMNPU = 1, REMOTE_SWITCH = 2 };

struct nvml {
	void *lib;
	nvmlReturn_t (*init)(void);
	nvmlReturn_t (*shutdown)(void);
	nvmlReturn_t (*by_pci)(const char *, nvmlDevice_t *);
	nvmlReturn_t (*index)(nvmlDevice_t, unsigned int *);
	nvmlReturn_t (*name)(nvmlDevice_t, char *, unsigned int);
	nvmlReturn_t (*uuid)(nvmlDevice_t, char *, unsigned int);
	nvmlReturn_t (*link_state)(nvmlDevice_t, unsigned int, int *);
	nvmlReturn_t (*remote_pci)(nvmlDevice_t, unsigned int, nvmlPciInfo_t *);
	nvmlReturn_t (*remote_type)(nvmlDevice_t, unsigned int, int *);
	nvmlReturn_t (*fabric)(nvmlDevice_t, nvmlGpuFabricInfoV_t *);
};

#define SYM(field, name) (*(void **)&nv->field = dlsym(nv->lib, name))

static bool nvml_open(struct nvml *nv)
{
	memset(nv, 0, sizeof(*nv));
	if (!(nv->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL)))
		return false;
	SYM(init, "nvmlInit_v2");
	SYM(shutdown, "nvmlShutdown");
	SYM(by_pci, "nvmlDeviceGetHandleByPciBusId_v2");
	SYM(index, "nvmlDeviceGetIndex");
	SYM(name, "nvmlDeviceGetName");
	SYM(uuid, "nvmlDeviceGetUUID");
	SYM(link_state, "nvmlDeviceGetNvLinkState");
	SYM(remote_pci, "nvmlDeviceGetNvLinkRemotePciInfo_v2");
	SYM(remote_type, "nvmlDeviceGetNvLinkRemoteDeviceType");
	SYM(fabric, "nvmlDeviceGetGpuFabricInfoV");
	if (!nv->init || !nv->shutdown || !nv->by_pci || nv->init() != 0) {
		dlclose(nv->lib);
		return false;
	}
	return true;
}

static int gpu_by_pci(const struct mt_node *n, const char *busid)
{
	long long k = mt_pci_key(busid);
	for (int g = 0; k >= 0 && g < n->n_gpus; g++)
		if (mt_pci_key(n->gpus[g].pci) == k)
			return g;
	return -1;
}

static void fabric_info(struct nvml *nv, nvmlDevice_t d, struct mt_gpu *g)
{
	nvmlGpuFabricInfoV_t fi;
	memset(&fi, 0, sizeof(fi));
	fi.version = FABRIC_INFO_V2;
	if (!nv->fabric || nv->fabric(d, &fi) != 0 || fi.status != 0 || fi.state != FABRIC_STATE_COMPLETED)
		return;
	const unsigned char *u = fi.clusterUuid;
	snprintf(g->fabric_uuid, sizeof(g->fabric_uuid),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3], u[4],
		 u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	g->clique = fi.cliqueId;
	g->has_fabric = true;
}

int mt_nvml_fill(struct mt_node *n)
{
	struct nvml nv;
	int G = n->n_gpus;
	if (!G || !nvml_open(&nv))
		return 0;
	double *m = calloc((size_t)G * (size_t)G, sizeof(double));
	int *sw = calloc((size_t)G, sizeof(int));
	bool seen = false; /* NVML knew at least one GPU: NVLink is then known, maybe absent */
	if (!m || !sw) {
		free(m), free(sw);
		nv.shutdown();
		dlclose(nv.lib);
		return MT_ENOMEM;
	}
	for (int g = 0; g < G; g++) {
		struct mt_gpu *q = &n->gpus[g];
		nvmlDevice_t d;
		if (!q->supported || nv.by_pci(q->pci, &d) != 0)
			continue;
		seen = true;
		char buf[96];
		unsigned idx;
		if (nv.name && nv.name(d, buf, sizeof(buf)) == 0)
			snprintf(q->model, sizeof(q->model), "%.63s", buf);
		if (nv.uuid && nv.uuid(d, buf, sizeof(buf)) == 0)
			snprintf(q->uuid, sizeof(q->uuid), "%.63s", buf);
		if (nv.index && nv.index(d, &idx) == 0 && !q->nvml[0])
			snprintf(q->nvml, sizeof(q->nvml), "nvml%u", idx);
		fabric_info(&nv, d, q);
		for (unsigned l = 0; nv.link_state && l < NVLINK_MAX_LINKS; l++) {
			int active = 0, type = -1;
			if (nv.link_state(d, l, &active) != 0 || !active)
				continue;
			nvmlPciInfo_t pi;
			memset(&pi, 0, sizeof(pi));
			int peer = nv.remote_pci && nv.remote_pci(d, l, &pi) == 0 ? gpu_by_pci(n, pi.busId) : -1;
			if (nv.remote_type && nv.remote_type(d, l, &type) != 0)
				type = -1;
			if (type == REMOTE_SWITCH || (type < 0 && peer < 0 && pi.busId[0])) {
				sw[g]++;
				n->nvswitch = true;
			} else if (peer >= 0 && peer != g && type != REMOTE_IBMNPU) {
				m[g * G + peer] += 1;
			}
		}
	}
	/* through NVSwitch every pair of switch-attached GPUs gets the smaller link count */
	for (int i = 0; i < G; i++)
		for (int j = 0; j < G; j++)
			if (i != j && sw[i] && sw[j]) {
				double s = sw[i] < sw[j] ? sw[i] : sw[j];
				if (s > m[i * G + j])
					m[i * G + j] = s;
			}
	free(sw);
	nv.shutdown();
	dlclose(nv.lib);
	if (!seen) {
		free(m);
		return 0;
	}
	free(n->nvlink); /* NVML is authoritative on a live node */
	n->nvlink = m;
	n->nvlink_is_bw = false;
	return 0;
}
