/* comm_rail.h - what the rail-aligned all-to-all's two files share (comm_rail.c: the layout, the
 * counters and the dispatch; comm_rail_sum.c: the combine, tr_alltoallv_sum_f32). */
#ifndef TR_COMM_RAIL_H
#define TR_COMM_RAIL_H

#include <string.h>

#include "comm_internal.h"

#define TR_RAIL_BUFS 6
struct tr_rail {
	int nodes, local_size;     /* nodes; ranks per node (0 when nodes differ) */
	int max_local;             /* most ranks of this communicator on one node */
	int *node, *lrank;         /* [size] node index (first appearance) and index inside the node */
	int *rank_of;              /* [nodes][local_size] member rank, when the layout is even */
	struct tr_comm *rail, *intra; /* sub-communicators, made at the first rail all-to-all */
	uint64_t *to_local;        /* [max_local] bytes sent across nodes to each destination local rank */
	uint64_t cross, on_rail, dedup;
	char *buf[TR_RAIL_BUFS];   /* grown scratch: 0-2 the dispatch's stages, 3-5 the combine's */
	size_t cap[TR_RAIL_BUFS];
};

/* r->buf[i] of at least len bytes (NULL: out of memory) */
char *tr_rail_grow(struct tr_rail *r, int i, size_t len);
/* the same-local-rank and same-node sub-communicators, made at the first rail call (collective) */
int tr_rail_subs(struct tr_comm *c, struct tr_rail *r);
/* memcpy for the caller's buffers, which may be NULL where a rank sends or receives nothing */
static inline void tr_rail_copy(void *dst, const void *src, size_t n)
{
	if (n)
		memcpy(dst, src, n);
}

#endif
