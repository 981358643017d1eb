/* node_hwloc_dl.c - libhwloc opened with dlopen, for the SPANK plugin's copy of the library.
 *
 * slurmstepd loads every plugstack.conf plugin before each step.  A plugin with libhwloc as a hard
 * (DT_NEEDED) dependency fails to load on a node without it, and a `required` line then fails every
 * job on that node, even those that never ask for --moe-topology.  So the plugin's build of the
 * library (libmoetopo_plugin.la, MT_HWLOC_DLOPEN) defines here the few hwloc functions node_hwloc.c
 * calls, forwarding to libhwloc opened on first use.  Without libhwloc only reading a topology fails,
 * with one line naming the library; the CLI and the tests link libhwloc as usual.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include <hwloc.h>

#include "node_int.h"

#ifndef MT_HWLOC_SONAME
#define MT_HWLOC_SONAME "libhwloc.so.15"
#endif

/* Every libhwloc function node_hwloc.c reaches, directly or through hwloc.h's inline helpers
 * (`nm -u` on the plugin's node_hwloc object lists them): return type, name, parameters, arguments. */
#define HWLOC_FUNCS(F, V)                                                                                   \
	F(int, hwloc_topology_init, (hwloc_topology_t * t), (t))                                           \
	F(int, hwloc_topology_load, (hwloc_topology_t t), (t))                                             \
	V(hwloc_topology_destroy, (hwloc_topology_t t), (t))                                               \
	F(int, hwloc_topology_abi_check, (hwloc_topology_t t), (t))                                        \
	F(int, hwloc_topology_set_flags, (hwloc_topology_t t, unsigned long f), (t, f))                    \
	F(int, hwloc_topology_set_io_types_filter, (hwloc_topology_t t, enum hwloc_type_filter_e f), (t, f)) \
	F(int, hwloc_topology_set_xmlbuffer, (hwloc_topology_t t, const char *b, int n), (t, b, n))        \
	F(int, hwloc_topology_export_xml, (hwloc_topology_t t, const char *p, unsigned long f), (t, p, f)) \
	F(hwloc_const_cpuset_t, hwloc_topology_get_topology_cpuset, (hwloc_topology_t t), (t))             \
	F(int, hwloc_get_type_depth, (hwloc_topology_t t, hwloc_obj_type_t y), (t, y))                     \
	F(unsigned, hwloc_get_nbobjs_by_depth, (hwloc_topology_t t, int d), (t, d))                        \
	F(hwloc_obj_t, hwloc_get_obj_by_depth, (hwloc_topology_t t, int d, unsigned i), (t, d, i))         \
	F(int, hwloc_bitmap_first, (hwloc_const_bitmap_t b), (b))                                          \
	F(int, hwloc_bitmap_iszero, (hwloc_const_bitmap_t b), (b))                                         \
	F(int, hwloc_bitmap_weight, (hwloc_const_bitmap_t b), (b))                                         \
	F(int, hwloc_bitmap_list_asprintf, (char **s, hwloc_const_bitmap_t b), (s, b))                     \
	F(int, hwloc_distances_get_by_name,                                                                 \
	  (hwloc_topology_t t, const char *n, unsigned *nr, struct hwloc_distances_s **d, unsigned long f), \
	  (t, n, nr, d, f))                                                                                 \
	V(hwloc_distances_release, (hwloc_topology_t t, struct hwloc_distances_s *d), (t, d))

#define PTR(ret, name, params, args) ret(*name) params;
#define VPTR(name, params, args) void(*name) params;
static struct {
	HWLOC_FUNCS(PTR, VPTR)
	unsigned (*hwloc_get_api_version)(void);
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char why[200]; /* "" once every function resolved */

static void open_hwloc(void)
{
	void *h = dlopen(MT_HWLOC_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(why, sizeof(why), "%s", e ? e : "cannot be opened");
		return;
	}
	/* a library of another ABI generation would read our structures differently */
	if (!(*(void **)&fn.hwloc_get_api_version = dlsym(h, "hwloc_get_api_version")) ||
	    fn.hwloc_get_api_version() >> 16 != HWLOC_API_VERSION >> 16) {
		snprintf(why, sizeof(why), "%s has another hwloc API than this build (%#x)", MT_HWLOC_SONAME,
			 HWLOC_API_VERSION);
		return;
	}
#define RESOLVE(name)                                                                          \
	if (!(*(void **)&fn.name = dlsym(h, #name))) {                                             \
		snprintf(why, sizeof(why), "%s has no %s", MT_HWLOC_SONAME, #name);                \
		return;                                                                            \
	}
#define RES(ret, name, params, args) RESOLVE(name)
#define VRES(name, params, args) RESOLVE(name)
	HWLOC_FUNCS(RES, VRES)
	why[0] = '\0';
}

int mt_hwloc_open(char *err, size_t errlen)
{
	pthread_once(&once, open_hwloc);
	if (!why[0])
		return MT_OK;
	return mt_seterr(err, errlen, MT_ENOENT,
			 "the hwloc library is not usable on this node (%s): install it (Debian/Ubuntu: libhwloc15, "
			 "RHEL: hwloc-libs) to read hwloc topologies; NCCL topology files need no hwloc",
			 why);
}

/* The definitions: each forwards to libhwloc (node_hwloc.c calls mt_hwloc_open first). */
#define DEF(ret, name, params, args) \
	ret name params { return fn.name args; }
#define VDEF(name, params, args) \
	void name params { fn.name args; }
HWLOC_FUNCS(DEF, VDEF)
