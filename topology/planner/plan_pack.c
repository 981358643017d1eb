/* plan_pack.c - packs TP units (tp consecutive tasks of one node) into EP blocks of ep units.
 *
 * Each NVLink domain first gives floor(units/ep) whole blocks from the front of its unit list: that
 * count is the most NVLink-local blocks any layout can have.  The leftover tails (each shorter than
 * a block) are then combined into the remaining blocks, four ways, keeping the best:
 *  - exact: largest tail first, then a tail that completes the block exactly, else the largest that
 *    still fits, and only when nothing fits one tail is split (fewest pieces when sizes match up);
 *  - spread: tails in decreasing size, each into the emptiest block, split when it does not fit
 *    (worst-fit decreasing: big tails land in different blocks, so no block collects only small ones);
 *  - floor: like exact, but no piece below a floor s, the largest s (up to the smallest tail) for
 *    which that works (binary search);
 *  - default: when Slurm's own order (rank = procid, consecutive blocks) already keeps the most
 *    local blocks, its leftover blocks as they are (domain counts per block).
 * Each is priced with `simulate`'s model, shared spine included, at spine oversubscription 1, 2 and 4
 * (the planner does not know the fabric): a leftover group takes the longer of its busiest member's
 * NIC and the uplinks of the domains it touches, which every group's crossings share.  The best
 * packing has, in order: the largest smallest chunk (members of a leftover block in one domain: a
 * member's cross-domain share is (ep - chunk)/ep, and the few members of a small chunk receive from
 * all the others); then the lowest slowest leftover group summed over the three levels; then fewer
 * cross-domain member pairs without a same-rail peer; then fewer domains in its widest leftover
 * block; then fewer pieces.  When Slurm's own layout keeps the most local blocks it is a candidate,
 * and a packing worse than it on the smallest chunk or on the slowest group at any level is not
 * taken: the plan is then never behind the default on either.
 * O(world + ep + blocks log blocks + pieces x 64 x widest block).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

struct alloc {
	int bin, d, cnt;
	int start; /* first unit in the domain-sorted list, set by packing_cost */
};

static int by_domain(const void *a, const void *b)
{
	const struct alloc *x = a, *y = b;
	if (x->d != y->d)
		return (x->d > y->d) - (x->d < y->d);
	return (x->bin > y->bin) - (x->bin < y->bin);
}

struct piece {
	struct alloc a;
	int start; /* index into the domain-sorted unit list */
};

/* Block order, and by domain inside a block so each domain's EP ranks are contiguous. */
static int piece_by_bin(const void *a, const void *b)
{
	const struct alloc *x = &((const struct piece *)a)->a, *y = &((const struct piece *)b)->a;
	if (x->bin != y->bin)
		return (x->bin > y->bin) - (x->bin < y->bin);
	return (x->d > y->d) - (x->d < y->d);
}

/* Tails -> blocks, "exact" strategy.  head/next: size buckets (lowest domain pops first). */
static int pack_exact(int nd, const int *rem0, int E, int L, int *head, int *next, int *rem, struct alloc *out)
{
	int n = 0;
	memcpy(rem, rem0, sizeof(int) * (size_t)nd);
	for (int c = 0; c < E; c++)
		head[c] = -1;
	for (int d = nd - 1; d >= 0; d--)
		if (rem[d]) {
			next[d] = head[rem[d]];
			head[rem[d]] = d;
		}
	int top = E - 1;
	for (int b = 0; b < L; b++) {
		int need = E, d;
		while (top > 0 && head[top] < 0)
			top--;
		if (top <= 0)
			return -1; /* cannot happen: tails always sum to whole blocks */
		d = head[top];
		head[top] = next[d];
		out[n++] = (struct alloc){b, d, rem[d], 0};
		need -= rem[d];
		rem[d] = 0;
		int scan = need - 1;
		while (need > 0) {
			int c = need;
			if (head[c] < 0) {
				if (scan >= need)
					scan = need - 1;
				while (scan > 0 && head[scan] < 0)
					scan--;
				c = scan;
			}
			if (c > 0) { /* a whole tail that fits */
				d = head[c];
				head[c] = next[d];
				out[n++] = (struct alloc){b, d, c, 0};
				rem[d] = 0;
				need -= c;
				continue;
			}
			/* nothing fits: split the largest tail, its rest goes back to the buckets */
			while (top > 0 && head[top] < 0)
				top--;
			if (top <= need)
				return -1;
			d = head[top];
			head[top] = next[d];
			out[n++] = (struct alloc){b, d, need, 0};
			rem[d] -= need;
			next[d] = head[rem[d]];
			head[rem[d]] = d;
			need = 0;
		}
	}
	return n;
}

/* Size buckets for pack_floor: head[c] lists the domains whose remaining tail is c units, and a
 * bitset of the nonempty sizes finds the largest tail not above a bound in O(ep/64). */
struct buckets {
	int *head, *next;
	uint64_t *bits;
};

static void bk_push(struct buckets *b, int d, int c)
{
	b->next[d] = b->head[c];
	b->head[c] = d;
	b->bits[c >> 6] |= 1ull << (c & 63);
}

static int bk_pop(struct buckets *b, int c)
{
	int d = b->head[c];
	b->head[c] = b->next[d];
	if (b->head[c] < 0)
		b->bits[c >> 6] &= ~(1ull << (c & 63));
	return d;
}

/* largest nonempty size in [1, x], 0 when none */
static int bk_prev(const struct buckets *b, int x)
{
	if (x < 1)
		return 0;
	int w = x >> 6;
	uint64_t m = b->bits[w] & (((x & 63) == 63) ? ~0ull : ((1ull << ((x & 63) + 1)) - 1));
	for (;;) {
		if (m)
			return w * 64 + 63 - __builtin_clzll(m);
		if (--w < 0)
			return 0;
		m = b->bits[w];
	}
}

/* Tails -> blocks, "floor" strategy: like exact, but no piece (whole tail, cut part or the rest of a
 * cut tail) smaller than s units.  A block is filled with, in order of preference: a tail that fills
 * it exactly; the largest tail that leaves at least s free; a cut of the largest tail when both the
 * cut and its rest are at least s.  -1 when that is not possible for this s. */
static int pack_floor(int nd, const int *rem0, int E, int L, int s, struct buckets *bk, int *rem, struct alloc *out)
{
	int n = 0, words = E / 64 + 1;
	memcpy(rem, rem0, sizeof(int) * (size_t)nd);
	for (int c = 0; c < E; c++)
		bk->head[c] = -1;
	memset(bk->bits, 0, sizeof(uint64_t) * (size_t)words);
	for (int d = nd - 1; d >= 0; d--)
		if (rem[d]) {
			if (rem[d] < s)
				return -1;
			bk_push(bk, d, rem[d]);
		}
	for (int b = 0; b < L; b++) {
		int need = E;
		while (need > 0) {
			int c = need < E && bk->head[need] >= 0 ? need : bk_prev(bk, need - s), d;
			if (c > 0) {
				d = bk_pop(bk, c);
				out[n++] = (struct alloc){b, d, c, 0};
				rem[d] = 0;
				need -= c;
				continue;
			}
			int top = bk_prev(bk, E - 1);
			if (need < s || top - need < s)
				return -1;
			d = bk_pop(bk, top);
			out[n++] = (struct alloc){b, d, need, 0};
			rem[d] = top - need;
			bk_push(bk, d, rem[d]);
			need = 0;
		}
	}
	return n;
}

/* max-heap of blocks by free capacity, ties to the lower block index */
static bool above(const int *cap, int a, int b)
{
	return cap[a] > cap[b] || (cap[a] == cap[b] && a < b);
}

static void sift_down(int *h, int n, const int *cap, int i)
{
	for (;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && above(cap, h[l], h[m]))
			m = l;
		if (r < n && above(cap, h[r], h[m]))
			m = r;
		if (m == i)
			return;
		int t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* Tails -> blocks, "spread" strategy (worst-fit decreasing with splitting). */
static int pack_spread(int nd, const int *rem0, int E, int L, int *head, int *next, int *heap, int *cap,
		       struct alloc *out)
{
	int n = 0, hn = L;
	for (int c = 0; c < E; c++)
		head[c] = -1;
	for (int d = nd - 1; d >= 0; d--)
		if (rem0[d]) {
			next[d] = head[rem0[d]];
			head[rem0[d]] = d;
		}
	for (int b = 0; b < L; b++) {
		heap[b] = b;
		cap[b] = E;
	}
	for (int c = E - 1; c > 0; c--)
		for (int d = head[c]; d >= 0; d = next[d]) {
			int left = c;
			while (left > 0) {
				if (!hn)
					return -1;
				int b = heap[0], take = left < cap[b] ? left : cap[b];
				out[n++] = (struct alloc){b, d, take, 0};
				left -= take;
				cap[b] -= take;
				if (!cap[b]) /* full: drop it from the heap */
					heap[0] = heap[--hn];
				sift_down(heap, hn, cap, 0);
			}
		}
	return hn ? -1 : n;
}

static int node_of_slot(const int *first, int n_nodes, int slot)
{
	int lo = 0, hi = n_nodes - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (first[mid] <= slot)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Cost of a packing.  The fabric is unknown to the planner, so a packing is priced with `simulate`'s
 * model at spine oversubscription 1, 2 and 4 (NS levels): w[s] is its slowest leftover group at
 * oversubscription sim_S[s], in token sets per GPU and direction: the larger of the worst member's
 * NIC load (sent and received crossings, rail-less crossings counted S times) and the shared spine
 * of every domain the group touches (all groups' cross-domain bytes of the domain / its GPUs, S
 * times).  Compared in order: the smallest chunk (units of one domain in one block; larger is
 * better), then the sum of w over the levels, then member pairs of a leftover block in different
 * domains where the receiver's domain has no member on the sender's rail (local slot i = rail i),
 * then the widest block in domains, then the pieces in all.  Sorts `a`. */
#define NS 3
static const double sim_S[NS] = {1, 2, 4};

struct cost {
	int min_chunk;
	double w[NS];
	double unaligned;
	int widest, pieces;
};

static int by_bin_only(const void *a, const void *b)
{
	const struct alloc *x = a, *y = b;
	if (x->bin != y->bin)
		return (x->bin > y->bin) - (x->bin < y->bin);
	return (x->d > y->d) - (x->d < y->d);
}

/* own[r] += the piece's members on local slot (rail) r */
static void piece_rails(const struct alloc *p, int T, const int *dlist, const int *first, int n_nodes, double *own)
{
	for (int u = p->start; u < p->start + p->cnt; u++) {
		int node = node_of_slot(first, n_nodes, dlist[u]);
		for (int t = 0; t < T; t++) {
			int loc = dlist[u] + t - first[node];
			if (loc < 64)
				own[loc]++;
		}
	}
}

/* Scratch for packing_cost, sized for the most pieces (na) and domains (nd). */
struct cost_ws {
	int *ccnt, *cd;      /* per chunk (a domain's pieces in one block, merged): units, domain */
	double *own, *h;     /* per chunk: members per rail slot (64), hit probability */
	double *out, *in;    /* per domain: cross-domain tokens leaving / entering, all groups */
	double *bnic;        /* per block: worst member's NIC load at each level */
	int *bfirst;         /* per block: first chunk */
	const int *dunits;   /* per domain: units in the job */
};

/* The chunks of block chunks [c0, c1): their hit probabilities (group-limited routing as simulate),
 * spine bytes into ws->out/in, and the worst member's NIC load at each level into nic[]. */
static void block_load(struct cost_ws *ws, int c0, int c1, int T, int E, double k, int M, double *nic)
{
	double G[64] = {0}, H = 0, x = k;
	int nt = c1 - c0;
	for (int c = c0; c < c1; c++)
		for (int r = 0; r < 64; r++)
			G[r] += ws->own[(size_t)c * 64 + r];
	if (M > 0 && M < nt)
		x = mt_sim_draws(ws->ccnt + c0, nt, E, k, M);
	for (int c = c0; c < c1; c++) {
		ws->h[c] = mt_sim_hit(ws->ccnt[c], E, x);
		H += ws->h[c];
	}
	for (int s = 0; s < NS; s++)
		nic[s] = 0;
	for (int c = c0; c < c1; c++) {
		const double *own = ws->own + (size_t)c * 64;
		double h = ws->h[c], unal = 0, ci = (double)ws->ccnt[c] * T;
		ws->out[ws->cd[c]] += ws->ccnt[c] * (H - h);
		ws->in[ws->cd[c]] += (E - ws->ccnt[c]) * h;
		for (int r = 0; r < 64; r++)
			if (!own[r])
				unal += G[r];
		for (int r = 0; r < 64; r++) {
			if (!(own[r] > 0))
				continue;
			double al = 0, un = 0; /* crossings sent on the rail / over the spine */
			for (int j = c0; j < c1; j++)
				if (j != c) {
					if (ws->own[(size_t)j * 64 + r] > 0)
						al += ws->h[j];
					else
						un += ws->h[j];
				}
			for (int s = 0; s < NS; s++) {
				double send = al + un * sim_S[s];
				double recv = mt_sim_recv(h, G[r] - own[r], own[r], unal, ci, sim_S[s]);
				double load = send > recv ? send : recv;
				if (load > nic[s])
					nic[s] = load;
			}
		}
	}
}

static struct cost packing_cost(struct alloc *a, int n, int T, int E, double k, int M, const int *tail,
				const int *dlist, const int *first, int n_nodes, struct cost_ws *ws)
{
	struct cost c = {1 << 30, {0}, 0, 0, n};
	/* each piece's start: a domain's pieces take its tail front to back in block order */
	qsort(a, (size_t)n, sizeof(*a), by_domain);
	for (int i = 0, at = 0; i < n; i++) {
		if (!i || a[i].d != a[i - 1].d)
			at = tail[a[i].d];
		a[i].start = at;
		at += a[i].cnt;
		ws->out[a[i].d] = ws->in[a[i].d] = 0;
	}
	qsort(a, (size_t)n, sizeof(*a), by_bin_only);
	int nc = 0, nb = 0;
	for (int i = 0; i < n;) {
		int j = i;
		double C[64] = {0}, S[64] = {0}, tot = 0;
		ws->bfirst[nb] = nc;
		for (; j < n && a[j].bin == a[i].bin; j++) {
			/* a domain may come in several pieces: its chunk is their sum */
			if (!(j > i && a[j].d == a[j - 1].d)) {
				ws->ccnt[nc] = 0;
				ws->cd[nc] = a[j].d;
				memset(ws->own + (size_t)nc * 64, 0, sizeof(double) * 64);
				nc++;
			}
			ws->ccnt[nc - 1] += a[j].cnt;
			double own[64] = {0};
			piece_rails(&a[j], T, dlist, first, n_nodes, own);
			double members = (double)a[j].cnt * T;
			tot += members;
			for (int r = 0; r < 64; r++) {
				ws->own[(size_t)(nc - 1) * 64 + r] += own[r];
				if (own[r] > 0) {
					C[r] += own[r];
					S[r] += members;
				}
			}
		}
		for (int q = ws->bfirst[nb]; q < nc; q++)
			if (ws->ccnt[q] < c.min_chunk)
				c.min_chunk = ws->ccnt[q];
		for (int r = 0; r < 64; r++)
			c.unaligned += C[r] * (tot - S[r]);
		if (nc - ws->bfirst[nb] > c.widest)
			c.widest = nc - ws->bfirst[nb];
		block_load(ws, ws->bfirst[nb], nc, T, E, k, M, ws->bnic + (size_t)nb * NS);
		nb++;
		i = j;
	}
	ws->bfirst[nb] = nc;
	/* a crossing group waits for the busiest uplinks of the domains it touches */
	for (int b = 0; b < nb; b++) {
		double sp = 0;
		for (int q = ws->bfirst[b]; q < ws->bfirst[b + 1]; q++) {
			int d = ws->cd[q];
			double v = (ws->out[d] > ws->in[d] ? ws->out[d] : ws->in[d]) / ws->dunits[d];
			if (v > sp)
				sp = v;
		}
		for (int s = 0; s < NS; s++) {
			double t = ws->bnic[(size_t)b * NS + s], st = sp * sim_S[s];
			t = t > st ? t : st;
			if (t > c.w[s])
				c.w[s] = t;
		}
	}
	return c;
}

static double wsum(struct cost x)
{
	double t = 0;
	for (int s = 0; s < NS; s++)
		t += x.w[s];
	return t;
}

static bool cheaper(struct cost x, struct cost y)
{
	double a = wsum(x), b = wsum(y);
	if (x.min_chunk != y.min_chunk)
		return x.min_chunk > y.min_chunk;
	if (fabs(a - b) > 1e-9 * (a + b))
		return a < b;
	if (x.unaligned != y.unaligned)
		return x.unaligned < y.unaligned;
	if (x.widest != y.widest)
		return x.widest < y.widest;
	return x.pieces < y.pieces;
}

/* x is no worse than y on every count the plan promises against Slurm's layout: the smallest chunk
 * and the slowest leftover group at every level. */
static bool no_worse(struct cost x, struct cost y)
{
	if (x.min_chunk < y.min_chunk)
		return false;
	for (int s = 0; s < NS; s++)
		if (x.w[s] > y.w[s] * (1 + 1e-9))
			return false;
	return true;
}

/* Tails -> blocks as Slurm's default layout has them (rank = procid, EP block b = ranks
 * [b*ep*tp, (b+1)*ep*tp)), when that layout keeps the most local blocks; -1 when it does not (or
 * cuts a TP unit across domains), else the number of pieces written to *out (malloc'd). */
static int pack_default(const struct mt_job *job, const int *node_domain, int nd, const int *first, int T, int E,
			int opt_local, int L, struct alloc **out)
{
	int W = first[job->n_nodes - 1] + job->tasks[job->n_nodes - 1], B = W / (E * T);
	int *dom = malloc(sizeof(int) * (size_t)W), *cnt = calloc((size_t)nd, sizeof(int));
	int *touched = malloc(sizeof(int) * (size_t)E * (size_t)T);
	struct alloc *a = NULL;
	int n = -1;
	if (!dom || !cnt || !touched)
		goto out;
	for (int i = 0; i < job->n_nodes; i++)
		for (int t = 0; t < job->tasks[i]; t++)
			dom[job->procids ? job->procids[i][t] : first[i] + t] = node_domain[i];
	for (int pass = 0; pass < 2; pass++) {
		int local = 0, bin = 0;
		n = 0;
		for (int b = 0; b < B; b++) {
			int nt = 0, bad = 0;
			for (int r = b * E * T; r < (b + 1) * E * T; r++)
				if (!cnt[dom[r]]++)
					touched[nt++] = dom[r];
			local += nt == 1;
			for (int j = 0; j < nt; j++) {
				int d = touched[j];
				bad |= cnt[d] % T;
				if (pass && nt > 1)
					a[n++] = (struct alloc){bin, d, cnt[d] / T, 0};
				cnt[d] = 0;
			}
			bin += nt > 1;
			if (bad) {
				n = -1;
				goto out;
			}
		}
		if (local != opt_local || bin != L) {
			n = -1;
			goto out;
		}
		if (!pass && !(a = malloc(sizeof(*a) * ((size_t)L * (size_t)E + 1)))) {
			n = -1;
			goto out;
		}
	}
out:
	free(dom);
	free(cnt);
	free(touched);
	if (n < 0) {
		free(a);
		a = NULL;
	}
	*out = a;
	return n;
}

/* The floor packing with the largest floor s <= the smallest tail that pack_floor meets (binary search;
 * s = 1 always succeeds): its piece count, its pieces in *best (*spare is the other buffer). */
static int pack_floor_best(int nd, const int *rem, int E, int L, struct buckets *bk, int *tmp, struct alloc **best,
			   struct alloc **spare)
{
	int rmin = E, cn = -1;

	for (int d = 0; d < nd; d++)
		if (rem[d] && rem[d] < rmin)
			rmin = rem[d];
	for (int lo = 1, hi = rmin; lo <= hi;) {
		int s = lo + (hi - lo) / 2, k = pack_floor(nd, rem, E, L, s, bk, tmp, *spare);
		if (k >= 0) {
			struct alloc *t = *best;
			*best = *spare;
			*spare = t;
			cn = k;
			lo = s + 1;
		} else
			hi = s - 1;
	}
	return cn;
}

/* The cheapest of the four candidate packings ca[c] (cn[c] pieces, -1 when it has none); when Slurm's
 * default layout (c = 2) keeps the most local groups too, never one worse than it on any count. */
static struct alloc *pick_cheapest(const struct mt_job *job, int T, int E, int L, int nd, const int *dunits,
				   const int *fill, const int *dlist, const int *first, struct alloc *const *ca,
				   const int *cn, int *na_used, int *rc, char *err, size_t errlen)
{
	struct alloc *a = NULL;
	int mp = 0;
	for (int c = 0; c < 4; c++)
		mp = cn[c] > mp ? cn[c] : mp;
	/* per chunk: count, domain (2 ints) and 65 doubles; per domain 2 doubles; per block NS doubles and
	 * an int */
	size_t nwords = (size_t)mp * 66 + (size_t)nd * 2 + (size_t)(L + 1) * (NS + 1) + 8;
	double *scratch = malloc(sizeof(double) * nwords);
	if (!scratch) {
		*rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory packing EP groups");
		return NULL;
	}
	struct cost_ws ws = {.own = scratch, .h = scratch + (size_t)mp * 64, .out = scratch + (size_t)mp * 65,
			     .dunits = dunits};
	ws.in = ws.out + nd;
	ws.bnic = ws.in + nd;
	ws.ccnt = (int *)(ws.bnic + (size_t)(L + 1) * NS);
	ws.cd = ws.ccnt + mp;
	ws.bfirst = ws.cd + mp;
	struct cost best = {0, {0}, 0, 0, 0}, k[4];
	struct mt_sim_params sp;
	mt_sim_default_params(&sp); /* top-k as simulate assumes it */
	for (int c = 0; c < 4; c++)
		if (cn[c] >= 0)
			k[c] = packing_cost(ca[c], cn[c], T, E, sp.topk, job->spec.route_groups, fill, dlist, first,
					    job->n_nodes, &ws);
	for (int c = 0; c < 4; c++) {
		if (cn[c] < 0)
			continue;
		if (cn[2] >= 0 && !no_worse(k[c], k[2]))
			continue;
		if (!a || cheaper(k[c], best)) {
			a = ca[c];
			*na_used = cn[c];
			best = k[c];
		}
	}
	free(scratch);
	if (!a)
		*rc = mt_seterr(err, errlen, MT_EIMPOSSIBLE, "internal error: leftover units do not fill blocks");
	return a;
}

/* Appends the tails' units to seq in block order.  A domain's tail is handed out front to back in block
 * order, so on every node the ranks keep the order of its task slots. */
static int emit_tails(struct alloc *a, int na_used, int *fill, const int *dlist, int *seq, int *n)
{
	struct piece *pc = malloc(sizeof(*pc) * (size_t)(na_used > 0 ? na_used : 1));
	if (!pc)
		return -1;
	qsort(a, (size_t)na_used, sizeof(*a), by_domain);
	for (int i = 0; i < na_used; i++) {
		pc[i].a = a[i];
		pc[i].start = fill[a[i].d];
		fill[a[i].d] += a[i].cnt;
	}
	qsort(pc, (size_t)na_used, sizeof(*pc), piece_by_bin);
	for (int i = 0; i < na_used; i++) {
		memcpy(seq + *n, dlist + pc[i].start, sizeof(int) * (size_t)pc[i].a.cnt);
		*n += pc[i].a.cnt;
	}
	free(pc);
	return 0;
}

/* Longest chain tried: each link gives up one local group. */
#define MAX_CHAIN 16

/* The chain from domain P (plan_objective.c): P's tail a takes E - a units of the domain with the largest
 * tail that still has a local group; that domain gives up the group, and its rest (a + its tail) goes on
 * to the next, until a domain's own tail completes the block.  Links in *link (P first), released
 * domains marked; the link count, 0 when there is no chain of 2 to MAX_CHAIN blocks, -1 out of memory. */
static int build_chain(int nd, const int *dunits, int E, int P, int *order, int *rem, int *link, char *released)
{
	int acc = dunits[P] % E, k = 0;
	if (!acc)
		return 0;
	for (int d = 0; d < nd; d++)
		rem[d] = dunits[d] % E;
	/* the other domains with a tail, largest tail first, ties by index: counting sort over tail sizes */
	int n = 0, *at = calloc((size_t)E + 1, sizeof(int));
	if (!at)
		return -1;
	for (int d = 0; d < nd; d++)
		if (d != P && rem[d])
			at[E - rem[d]]++;
	for (int t = 0, acc_n = 0; t <= E; t++) {
		int c = at[t];
		at[t] = acc_n;
		acc_n += c;
	}
	for (int d = 0; d < nd; d++)
		if (d != P && rem[d]) {
			order[at[E - rem[d]]++] = d;
			n++;
		}
	free(at);
	link[k++] = P;
	for (int i = 0; i < n && k <= MAX_CHAIN; i++) {
		int c = order[i];
		if (rem[c] >= E - acc) { /* c's own tail completes the block */
			link[k++] = c;
			return k >= 3 ? k : 0; /* one link only: a packing of the tails already, nothing traded */
		}
		if (dunits[c] < E)
			continue; /* no local group to give up */
		released[c] = 1;
		link[k++] = c;
		acc += rem[c];
	}
	return 0;
}

int *mt_plan_pack(const struct mt_job *job, const int *node_domain, int nd, const int *dunits, const int *first,
		  int T, int E, int chain, int *rc, char *err, size_t errlen)
{
	int U = 0, R = 0;
	for (int d = 0; d < nd; d++) {
		U += dunits[d];
		R += dunits[d] % E;
	}
	int L = R / E; /* leftover blocks */
	size_t na = (size_t)nd + (size_t)L + 1;
	int *dstart = malloc(sizeof(int) * (size_t)(nd + 1));
	int *fill = malloc(sizeof(int) * (size_t)nd);
	int *dlist = malloc(sizeof(int) * (size_t)U);
	int *seq = malloc(sizeof(int) * (size_t)U);
	int *head = malloc(sizeof(int) * (size_t)E);
	int *next = malloc(sizeof(int) * (size_t)nd);
	int *rem = malloc(sizeof(int) * (size_t)nd);
	int *tmp = malloc(sizeof(int) * (size_t)nd);
	int *heap = malloc(sizeof(int) * (size_t)(L + 1)), *cap = malloc(sizeof(int) * (size_t)(L + 1));
	struct alloc *a1 = malloc(sizeof(*a1) * na), *a2 = malloc(sizeof(*a2) * na), *a3 = NULL;
	struct alloc *a4 = malloc(sizeof(*a4) * na), *a5 = malloc(sizeof(*a5) * na);
	uint64_t *bits = malloc(sizeof(uint64_t) * (size_t)(E / 64 + 1));
	int n = 0, opt_local = (U - R) / E, nlink = 0;
	int *link = chain >= 0 ? malloc(sizeof(int) * (size_t)(nd + MAX_CHAIN + 1)) : NULL;
	char *released = chain >= 0 ? calloc((size_t)nd, 1) : NULL;
	if (!dstart || !fill || !dlist || !seq || !head || !next || !rem || !tmp || !heap || !cap || !a1 || !a2 || !a4 || !a5 ||
	    !bits || (chain >= 0 && (!link || !released))) {
		*rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory packing EP groups");
		goto fail;
	}
	if (chain >= 0 && (nlink = build_chain(nd, dunits, E, chain, tmp, rem, link, released)) <= 0) {
		*rc = nlink ? mt_seterr(err, errlen, MT_ENOMEM, "out of memory packing EP groups") : 0; /* 0: no chain */
		goto fail;
	}
	/* counting sort of units by domain, keeping Slurm's node order inside a domain */
	dstart[0] = 0;
	for (int d = 0; d < nd; d++)
		dstart[d + 1] = dstart[d] + dunits[d];
	memcpy(fill, dstart, sizeof(int) * (size_t)nd);
	for (int i = 0; i < job->n_nodes; i++) {
		int d = node_domain[i];
		for (int u = 0; u < job->tasks[i] / T; u++)
			dlist[fill[d]++] = first[i] + u * T;
	}
	/* whole blocks inside each domain; fill[d] becomes the start of d's tail */
	for (int d = 0; d < nd; d++) {
		int whole = (dunits[d] / E - (released && released[d])) * E;
		memcpy(seq + n, dlist + dstart[d], sizeof(int) * (size_t)whole);
		n += whole;
		fill[d] = dstart[d] + whole;
		rem[d] = dunits[d] - whole;
	}
	/* the chain's blocks: link i-1's rest, then the front of link i's units up to a whole block */
	for (int i = 1; i < nlink; i++) {
		int a = link[i - 1], b = link[i], take = rem[a], give = E - take;
		int lo = a < b ? a : b, hi = a < b ? b : a, cnt[2] = {a < b ? take : give, a < b ? give : take};
		int dd[2] = {lo, hi};
		for (int j = 0; j < 2; j++) { /* by domain inside the block, as the tails' blocks */
			memcpy(seq + n, dlist + fill[dd[j]], sizeof(int) * (size_t)cnt[j]);
			n += cnt[j];
			fill[dd[j]] += cnt[j];
			rem[dd[j]] -= cnt[j];
		}
	}
	if (nlink)
		L--;
	if (L > 0) {
		int cn[4];
		struct alloc *ca[4] = {a1, a2, NULL, a4};
		cn[0] = pack_exact(nd, rem, E, L, head, next, tmp, a1);
		cn[1] = pack_spread(nd, rem, E, L, head, next, heap, cap, a2);
		cn[2] = nlink ? -1 : pack_default(job, node_domain, nd, first, T, E, opt_local, L, &a3);
		ca[2] = a3;
		struct buckets bk = {head, next, bits};
		cn[3] = pack_floor_best(nd, rem, E, L, &bk, tmp, &a4, &a5);
		ca[3] = a4;
		int na_used = -1;
		struct alloc *a = pick_cheapest(job, T, E, L, nd, dunits, fill, dlist, first, ca, cn, &na_used, rc, err,
					       errlen);
		if (!a)
			goto fail;
		if (emit_tails(a, na_used, fill, dlist, seq, &n)) {
			*rc = mt_seterr(err, errlen, MT_ENOMEM, "out of memory packing EP groups");
			goto fail;
		}
	}
	if (n != U) {
		*rc = mt_seterr(err, errlen, MT_EIMPOSSIBLE, "internal error: packed %d of %d units", n, U);
		goto fail;
	}
	goto out;
fail:
	free(seq);
	seq = NULL;
out:
	free(dstart);
	free(fill);
	free(dlist);
	free(head);
	free(next);
	free(rem);
	free(tmp);
	free(heap);
	free(cap);
	free(a1);
	free(a2);
	free(a3);
	free(a4);
	free(a5);
	free(bits);
	free(link);
	free(released);
	return seq;
}
