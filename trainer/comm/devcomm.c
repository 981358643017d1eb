/* devcomm.c - choosing and opening a device communicator (devcomm.h): the kinds, the one-line errors
 * (unknown, not built, cuda-ipc across hosts, a failure on any rank), and the checks and counters every
 * device transport shares, so the model's a2a byte counters read the same as with staging.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "devcomm_internal.h"

bool tr_devcomm_kind_known(const char *kind)
{
	return kind && (!strcmp(kind, "staged") || !strcmp(kind, "cuda-ipc") || !strcmp(kind, "nccl"));
}

const char *tr_devcomm_unbuilt(const char *kind)
{
	if (!strcmp(kind, "staged"))
		return NULL;
#if defined(TR_DEVCOMM_CUDA) || defined(TR_CUDA_HANDOFF) /* the latter: in moe-train-cuda */
	return NULL;
#else
	return "not in this build (configure found no CUDA with NCCL: configure --with-cuda)";
#endif
}

int tr_dc_fail(struct tr_devcomm *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* cuda-ipc: every member on this rank's host, else the first pair that is not */
static int one_host(struct tr_comm *c, char *err, size_t errlen)
{
	for (int r = 1; r < tr_comm_size(c); r++)
		if (strcmp(tr_comm_member_host(c, 0), tr_comm_member_host(c, r))) {
			snprintf(err, errlen, "--device-comm cuda-ipc: ranks 0 (%s) and %d (%s) of the group are on different "
				 "hosts; cuda-ipc is for one node: valid across nodes: nccl, staged",
				 tr_comm_member_host(c, 0), r, tr_comm_member_host(c, r));
			return -1;
		}
	return 0;
}

bool tr_devcomm_serves(struct tr_comm *c, const char *kind)
{
	char e[8];
	return tr_devcomm_kind_known(kind) && strcmp(kind, "staged") &&
	       (strcmp(kind, "cuda-ipc") || one_host(c, e, sizeof(e)) == 0);
}

int tr_devcomm_open(struct tr_comm *c, const char *kind, struct tr_devcomm **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!tr_devcomm_kind_known(kind) || !strcmp(kind, "staged")) {
		snprintf(err, errlen, "--device-comm '%s': a device communicator is one of cuda-ipc, nccl", kind ? kind : "");
		return -1;
	}
	const char *why = tr_devcomm_unbuilt(kind);
	if (why) {
		snprintf(err, errlen, "--device-comm %s: %s; valid here: staged", kind, why);
		return -1;
	}
	bool ipc = !strcmp(kind, "cuda-ipc");
	if (ipc && one_host(c, err, errlen))
		return -1;
	struct tr_devcomm *d = calloc(1, sizeof(*d));
	int P = tr_comm_size(c), rc = -1;
	if (!d || !(d->node = malloc(sizeof(int) * (size_t)P))) {
		free(d);
		snprintf(err, errlen, "--device-comm %s: out of memory", kind);
		return -1;
	}
	d->c = c;
	d->rank = tr_comm_rank(c);
	d->size = P;
	for (int r = 0; r < P; r++)
		d->node[r] = tr_comm_node_of(c, r);
#ifdef TR_DEVCOMM_CUDA
	rc = tr_dc_stream_open(d);
	if (rc == 0)
		rc = ipc ? tr_dc_ipc_open(d) : tr_dc_nccl_open(d);
#endif
	/* every rank fails if one does, so none waits in a collective for a rank that gave up */
	double bad = rc != 0;
	if (tr_allreduce_f64(c, &bad, 1)) {
		snprintf(err, errlen, "--device-comm %s: %s", kind, tr_comm_error(c));
		bad = 1;
	} else if (bad > 0) {
		if (rc)
			snprintf(err, errlen, "--device-comm %s: rank %d: %s", kind, d->rank, d->err);
		else
			snprintf(err, errlen, "--device-comm %s: another rank of the group could not open it (it says why)", kind);
	}
	if (bad > 0) {
		tr_devcomm_free(d);
		return -1;
	}
	*out = d;
	return 0;
}

void tr_devcomm_free(struct tr_devcomm *d)
{
	if (!d)
		return;
#ifdef TR_DEVCOMM_CUDA
	if (d->ops)
		d->ops->destroy(d);
	tr_dc_sum_free(d);
	tr_dc_stream_close(d);
#endif
	tr_dsum_plan_free(&d->plan);
	free(d->node);
	free(d);
}

const char *tr_devcomm_kind(const struct tr_devcomm *d)
{
	return d->ops ? d->ops->kind : "?";
}

const char *tr_devcomm_error(const struct tr_devcomm *d)
{
	return d ? d->err : "no device communicator";
}

static int check_self(struct tr_devcomm *d, const size_t *sb, const size_t *rb)
{
	if (sb[d->rank] != rb[d->rank])
		return tr_dc_fail(d, "alltoallv: rank %d sends itself %zu bytes but expects %zu", d->rank, sb[d->rank],
				  rb[d->rank]);
	return 0;
}

int tr_devcomm_alltoallv(struct tr_devcomm *d, const void *send, const size_t *sb, const size_t *so, void *recv,
			 const size_t *rb, const size_t *ro)
{
	if (check_self(d, sb, rb) || d->ops->alltoallv(d, send, sb, so, recv, rb, ro))
		return -1;
	tr_comm_count_device(d->c, sb);
	return 0;
}

int tr_devcomm_alltoallv_sum_f32(struct tr_devcomm *d, const float *send, const size_t *sb, const size_t *so,
				 float *sum, const size_t *rb, const size_t *ro, size_t row_bytes, const int *key_host,
				 int nkeys)
{
	if (row_bytes == 0 || row_bytes % sizeof(float) || nkeys < 0)
		return tr_dc_fail(d, "alltoallv_sum: rows of %zu bytes (whole floats) and %d keys", row_bytes, nkeys);
	for (int p = 0; p < d->size; p++)
		if (sb[p] % row_bytes || so[p] % row_bytes || rb[p] % row_bytes || ro[p] % row_bytes)
			return tr_dc_fail(d, "alltoallv_sum: the bytes for or from rank %d are not rows of %zu bytes", p,
					  row_bytes);
	if (check_self(d, sb, rb))
		return -1;
	if (tr_dsum_plan_build(&d->plan, d->node, d->size, rb, ro, row_bytes, key_host, nkeys))
		return tr_dc_fail(d, "alltoallv_sum: a key outside 0..%d, or out of memory", nkeys - 1);
#ifdef TR_DEVCOMM_CUDA
	if (tr_dc_sum(d, send, sb, so, sum, rb, ro, row_bytes, key_host, nkeys))
		return -1;
#else
	(void)send, (void)sum;
	return tr_dc_fail(d, "no device transport in this build");
#endif
	tr_comm_count_device(d->c, sb);
	return 0;
}

int tr_devcomm_allreduce_f32(struct tr_devcomm *d, float *buf, size_t n)
{
	return d->ops->allreduce_f32(d, buf, n);
}
