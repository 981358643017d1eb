/* comm_shm.c - the shm transport: ranks on one node talk through one POSIX shared memory segment.
 *
 * The segment holds one single-producer/single-consumer ring per ordered pair of ranks (byte
 * streams with C11 acquire/release counters) and one "bell" word per rank that producers and
 * consumers bump after each move.  A rank with nothing to do spins briefly, then sleeps on its bell
 * with a futex, waking at least every slice to check that the ranks it waits for are still alive.
 * Rank 0 creates the segment (name from the launch's job nonce); the last rank to map it unlinks
 * it, so nothing is left in /dev/shm even when ranks crash later.
 */
#define _GNU_SOURCE /* process_vm_readv */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define SEG_MAGIC 0x4d4f4553u /* "MOES" */
#define LINE 64
#define PAGE 4096
#define CHUNK_MIN (256u << 10) /* bytes moved per call at least (rings permitting) */
#define SPIN_NS 50000       /* busy-wait this long before sleeping */
#define NT_MIN (4u << 20)   /* receive messages this large with non-temporal stores */

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

struct seg_hdr {
	_Atomic uint32_t ready;
	uint32_t size;
	uint64_t cap;        /* ring bytes, power of two */
	uint64_t total;      /* segment bytes */
	_Atomic uint32_t attached;
	_Atomic uint32_t probed;  /* ranks that tried reading every peer's memory */
	_Atomic uint32_t cma_off; /* some rank could not: no single-copy path in this world */
};

/* A ring also carries a mailbox for single-copy messages: instead of copying a large payload in,
 * the producer posts where it lies in its own memory at stream position zc_pos, and the consumer
 * copies it straight into its destination with process_vm_readv, then acknowledges. */
struct ring {
	_Alignas(LINE) _Atomic uint64_t head; /* bytes written, by the producer */
	_Alignas(LINE) _Atomic uint64_t tail; /* bytes read, by the consumer */
	_Alignas(LINE) _Atomic uint64_t zc_posted; /* producer: mailbox posts so far */
	uint64_t zc_pos, zc_addr, zc_len;
	_Alignas(LINE) _Atomic uint64_t zc_acked;  /* consumer: posts fully copied */
	uint64_t zc_done;
	_Alignas(LINE) char data[];
};

struct bell {
	_Alignas(LINE) _Atomic uint32_t seq;
	_Atomic uint32_t waiters;
	_Atomic int32_t pid;
	uint64_t canary_addr; /* where this rank keeps CANARY: peers test process_vm_readv on it */
};

struct shm {
	struct tr_transport t;
	char name[128];
	bool unlinked;
	void *base;
	size_t total;
	uint64_t cap;
	/* Bytes moved per call: half a ring, so the peer copies out one half while we fill the other.
	 * Finer pieces (256 KiB in a 2 MiB ring) made the two cores touch neighbouring lines at once
	 * and cost a quarter of the bandwidth at 1 MiB per peer (0.38 -> 0.49 x memcpy). */
	size_t chunk;
	struct seg_hdr *hdr;
	struct bell *bells;
	char *rings;
	size_t ring_stride;
	size_t zc_min;       /* payloads this large go single-copy; 0 = never */
	size_t *zc_wait;     /* per peer: bytes of a posted payload not yet acknowledged */
	bool *pid_ok;        /* per peer: its pid is visible here (same pid namespace) */
	bool *nt;            /* per peer: the message being received is large (copy_nt) */
};

#define CANARY 0x6d6f652d63616e61ull
static const volatile uint64_t canary = CANARY;
#define ZC_MAX_CALL (8u << 20) /* bytes per process_vm_readv: progress shows in between */

/* Copies out of a ring into a large destination with non-temporal stores: the destination of a
 * big message will not be read back from cache soon, and plain stores would first read every line
 * of it from memory (the copy is memory-bound at these sizes). */
static void copy_nt(char *dst, const char *src, size_t n)
{
#ifdef __SSE2__
	size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
	if (n < head + 64) {
		memcpy(dst, src, n);
		return;
	}
	memcpy(dst, src, head);
	dst += head;
	src += head;
	n -= head;
	for (; n >= 64; n -= 64, dst += 64, src += 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)src), b = _mm_loadu_si128((const __m128i *)(src + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(src + 32)), d = _mm_loadu_si128((const __m128i *)(src + 48));
		_mm_stream_si128((__m128i *)dst, a);
		_mm_stream_si128((__m128i *)(dst + 16), b);
		_mm_stream_si128((__m128i *)(dst + 32), c);
		_mm_stream_si128((__m128i *)(dst + 48), d);
	}
	memcpy(dst, src, n);
	_mm_sfence(); /* other threads of this rank may read the destination next */
#else
	memcpy(dst, src, n);
#endif
}

static struct ring *ring_of(struct shm *s, int from, int to)
{
	int n = s->t.size;
	size_t idx = (size_t)from * (n - 1) + (to < from ? to : to - 1);
	return (struct ring *)(s->rings + idx * s->ring_stride);
}

static void ring_bell(struct shm *s, int who)
{
	struct bell *b = &s->bells[who];
	atomic_fetch_add_explicit(&b->seq, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&b->waiters, memory_order_seq_cst))
		syscall(SYS_futex, &b->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static ssize_t shm_send(struct tr_transport *t, int peer, const struct iovec *iov, int iovcnt)
{
	struct shm *s = (struct shm *)t;
	struct ring *r = ring_of(s, t->rank, peer);
	if (s->zc_wait[peer]) { /* a posted payload: done when the peer acknowledged it */
		if (atomic_load_explicit(&r->zc_acked, memory_order_acquire) !=
		    atomic_load_explicit(&r->zc_posted, memory_order_relaxed))
			return 0;
		size_t n = s->zc_wait[peer];
		s->zc_wait[peer] = 0;
		return n;
	}
	uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	size_t room = s->cap - (head - tail), moved = 0;
	if (room > s->chunk)
		room = s->chunk;
	for (int i = 0; i < iovcnt && moved < room; i++) {
		const char *src = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		if (s->zc_min && len >= s->zc_min) {
			/* everything before it is in the ring: post the payload and stop here */
			if (moved)
				atomic_store_explicit(&r->head, head + moved, memory_order_release);
			r->zc_pos = head + moved;
			r->zc_addr = (uint64_t)(uintptr_t)src;
			r->zc_len = len;
			atomic_fetch_add_explicit(&r->zc_posted, 1, memory_order_release);
			s->zc_wait[peer] = len;
			ring_bell(s, peer);
			return moved;
		}
		if (len > room - moved)
			len = room - moved;
		while (len > 0) {
			size_t at = (head + moved) & (s->cap - 1), n = s->cap - at;
			if (n > len)
				n = len;
			memcpy(r->data + at, src, n);
			src += n;
			len -= n;
			moved += n;
		}
	}
	if (moved) {
		atomic_store_explicit(&r->head, head + moved, memory_order_release);
		ring_bell(s, peer);
	}
	return moved;
}

/* The consumer's half of a single-copy message: read from the producer's memory, then acknowledge. */
static ssize_t zc_copy(struct shm *s, struct ring *r, int peer, void *buf, size_t len)
{
	size_t left = r->zc_len - r->zc_done;
	if (len > left)
		len = left;
	if (len > ZC_MAX_CALL)
		len = ZC_MAX_CALL;
	struct iovec local = { buf, len };
	struct iovec remote = { (void *)(uintptr_t)(r->zc_addr + r->zc_done), len };
	ssize_t k = process_vm_readv(atomic_load(&s->bells[peer].pid), &local, 1, &remote, 1, 0);
	if (k < 0) {
		if (errno == ESRCH)
			snprintf(s->t.err, sizeof(s->t.err), "shm: rank %d (pid %d on %s) died", TR_WORLD_RANK(&s->t, peer),
				 (int)atomic_load(&s->bells[peer].pid), s->t.peers ? s->t.peers[peer].host : "this node");
		else
			snprintf(s->t.err, sizeof(s->t.err), "shm: cannot read rank %d's message: %s",
				 TR_WORLD_RANK(&s->t, peer), strerror(errno));
		return -1;
	}
	r->zc_done += k;
	if (r->zc_done == r->zc_len) {
		r->zc_done = 0;
		atomic_store_explicit(&r->zc_acked, atomic_load_explicit(&r->zc_posted, memory_order_relaxed),
				      memory_order_release);
		ring_bell(s, peer);
	}
	return k;
}

static ssize_t shm_recv(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct shm *s = (struct shm *)t;
	struct ring *r = ring_of(s, peer, t->rank);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	size_t avail = head - tail, moved = 0;
	if (avail == 0 && atomic_load_explicit(&r->zc_posted, memory_order_acquire) !=
				  atomic_load_explicit(&r->zc_acked, memory_order_relaxed) && r->zc_pos == tail)
		return zc_copy(s, r, peer, buf, len);
	size_t len_req = len;
	if (len > avail)
		len = avail;
	if (len > s->chunk)
		len = s->chunk;
	char *dst = buf;
	/* A request this big is the rest of a large message: its destination is cold */
	if (len_req >= NT_MIN)
		s->nt[peer] = true;
	while (moved < len) {
		size_t at = (tail + moved) & (s->cap - 1), n = s->cap - at;
		if (n > len - moved)
			n = len - moved;
		if (s->nt[peer])
			copy_nt(dst + moved, r->data + at, n);
		else
			memcpy(dst + moved, r->data + at, n);
		moved += n;
	}
	if (moved == len_req)
		s->nt[peer] = false;
	if (moved) {
		atomic_store_explicit(&r->tail, tail + moved, memory_order_release);
		ring_bell(s, peer);
	}
	return moved;
}

static ssize_t shm_peek(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct shm *s = (struct shm *)t;
	struct ring *r = ring_of(s, peer, t->rank);
	uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	size_t avail = atomic_load_explicit(&r->head, memory_order_acquire) - tail, moved = 0;
	if (len > avail)
		len = avail;
	while (moved < len) {
		size_t at = (tail + moved) & (s->cap - 1), n = s->cap - at;
		if (n > len - moved)
			n = len - moved;
		memcpy((char *)buf + moved, r->data + at, n);
		moved += n;
	}
	return moved;
}

static uint64_t shm_token(struct tr_transport *t)
{
	struct shm *s = (struct shm *)t;
	return atomic_load_explicit(&s->bells[t->rank].seq, memory_order_seq_cst);
}

/* A rank that exited (or is a zombie nobody reaped yet) no longer makes progress. */
static bool pid_alive(pid_t pid)
{
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true; /* another pid namespace: trust kill() */
	ssize_t k = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (k <= 0)
		return true;
	buf[k] = 0;
	const char *p = strrchr(buf, ')');
	return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

static int check_peers(struct shm *s, const int *peers, int n)
{
	for (int i = 0; i < n; i++) {
		int pid = atomic_load(&s->bells[peers[i]].pid);
		if (pid > 0 && s->pid_ok[peers[i]] && !pid_alive(pid)) {
			snprintf(s->t.err, sizeof(s->t.err), "shm: rank %d (pid %d on %s) died",
				 TR_WORLD_RANK(&s->t, peers[i]), pid, s->t.peers ? s->t.peers[peers[i]].host : "this node");
			return -1;
		}
	}
	return 0;
}

static int shm_wait(struct tr_transport *t, uint64_t token, const int *peers, const bool *sending,
		    const bool *receiving, int n, int ms)
{
	struct shm *s = (struct shm *)t;
	struct bell *b = &s->bells[t->rank];
	uint32_t tok = (uint32_t)token;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) { /* short spin: on an idle core the peer answers within microseconds */
		for (int i = 0; i < 64; i++) {
			if (atomic_load_explicit(&b->seq, memory_order_acquire) != tok)
				return 0;
			cpu_relax();
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec) > SPIN_NS)
			break;
	}
	atomic_fetch_add_explicit(&b->waiters, 1, memory_order_seq_cst);
	int rc = 0;
	if (atomic_load_explicit(&b->seq, memory_order_seq_cst) == tok) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		if (syscall(SYS_futex, &b->seq, FUTEX_WAIT, tok, &ts, NULL, 0) != 0 && errno == ETIMEDOUT)
			rc = check_peers(s, peers, n);
	}
	atomic_fetch_sub_explicit(&b->waiters, 1, memory_order_seq_cst);
	return rc;
}

static void shm_free(struct shm *s)
{
	if (s->base)
		munmap(s->base, s->total);
	free(s->zc_wait);
	free(s->pid_ok);
	free(s->nt);
	free(s);
}

static void shm_destroy(struct tr_transport *t)
{
	struct shm *s = (struct shm *)t;
	if (!s->unlinked)
		shm_unlink(s->name);
	shm_free(s);
}

static const struct tr_transport_ops shm_ops = {
	.kind = "shm",
	.send_some = shm_send,
	.recv_some = shm_recv,
	.wait_token = shm_token,
	.wait = shm_wait,
	.destroy = shm_destroy,
	.peek = shm_peek,
};

static uint64_t ring_bytes(int n)
{
	const char *v = getenv("MOE_SHM_RING_BYTES");
	uint64_t want = v && *v ? strtoull(v, NULL, 0) : 0;
	if (!want) {
		/* about 256 MiB of (lazily touched) rings in all, 64 KiB to 2 MiB each: big rings mean
		 * fewer hand-offs between ranks, which matters most when cores are oversubscribed; above
		 * 2 MiB the ring's lines fall out of cache between laps (1 MiB a2a: 0.31 -> 0.37 x memcpy
		 * going from 4 to 2 MiB, 16 MiB a2a unchanged) */
		want = (256ull << 20) / ((uint64_t)n * (n - 1));
		if (want > (2u << 20))
			want = 2u << 20;
	}
	if (want < (64u << 10))
		want = 64u << 10;
	uint64_t cap = 64u << 10;
	while (cap * 2 <= want && cap < (1ull << 30))
		cap *= 2;
	return cap;
}

static void layout(struct shm *s, int n, uint64_t cap)
{
	size_t hdr = (sizeof(struct seg_hdr) + LINE - 1) / LINE * LINE;
	size_t bells = (size_t)n * sizeof(struct bell);
	size_t rings_off = (hdr + bells + PAGE - 1) / PAGE * PAGE;
	s->cap = cap;
	s->chunk = cap / 2 > CHUNK_MIN ? cap / 2 : CHUNK_MIN;
	s->ring_stride = (sizeof(struct ring) + cap + PAGE - 1) / PAGE * PAGE;
	s->total = rings_off + (size_t)n * (n - 1) * s->ring_stride;
	s->hdr = s->base;
	s->bells = (struct bell *)((char *)s->base + hdr);
	s->rings = (char *)s->base + rings_off;
}

static int sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	return nanosleep(&ts, NULL);
}

int tr_shm_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen)
{
	static int opened; /* a process may open several worlds over its life: name each apart */
	struct shm *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->t.ops = &shm_ops;
	s->t.size = w->size;
	s->t.rank = w->rank;
	s->zc_wait = calloc(w->size, sizeof(size_t));
	s->pid_ok = calloc(w->size, sizeof(bool));
	s->nt = calloc(w->size, sizeof(bool));
	if (!s->zc_wait || !s->pid_ok || !s->nt) {
		shm_free(s);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char *zc = getenv("MOE_SHM_SINGLE_COPY_BYTES");
	/* Off unless asked for: measured here, per-page pinning made process_vm_readv slower than the
	 * two cache-resident ring copies (doc/launcher.md, Benchmark). */
	s->zc_min = zc && *zc ? strtoull(zc, NULL, 0) : 0;
	snprintf(s->name, sizeof(s->name), "/moe-%s-%d", w->job, opened++);
	double deadline = tr_now() + w->timeout;
	int fd = -1;
	if (w->rank == 0) {
		uint64_t cap = ring_bytes(w->size);
		struct shm probe = { .base = NULL };
		layout(&probe, w->size, cap);
		fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			snprintf(err, errlen, "shm: cannot create %s: %s", s->name, strerror(errno));
			goto fail;
		}
		if (ftruncate(fd, probe.total) != 0) {
			snprintf(err, errlen, "shm: cannot size %s to %zu bytes: %s (is /dev/shm big enough?)", s->name,
				 probe.total, strerror(errno));
			goto fail;
		}
		s->base = mmap(NULL, probe.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (s->base == MAP_FAILED) {
			s->base = NULL;
			snprintf(err, errlen, "shm: mmap %s: %s", s->name, strerror(errno));
			goto fail;
		}
		layout(s, w->size, cap);
		s->hdr->size = w->size;
		s->hdr->cap = cap;
		s->hdr->total = s->total;
		atomic_store_explicit(&s->hdr->ready, SEG_MAGIC, memory_order_release);
	} else {
		struct stat st;
		for (;;) { /* wait for rank 0 to create and initialise it */
			if (fd < 0)
				fd = shm_open(s->name, O_RDWR | O_CLOEXEC, 0600);
			if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size >= PAGE) {
				struct seg_hdr *h = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
				if (h != MAP_FAILED) {
					bool ok = atomic_load_explicit(&h->ready, memory_order_acquire) == SEG_MAGIC;
					uint64_t total = h->total, cap = h->cap;
					uint32_t size = h->size;
					munmap(h, PAGE);
					if (ok) {
						if (size != (uint32_t)w->size) {
							snprintf(err, errlen, "shm: segment %s is for %u ranks, this world has %d",
								 s->name, size, w->size);
							goto fail;
						}
						s->base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
						if (s->base == MAP_FAILED) {
							s->base = NULL;
							snprintf(err, errlen, "shm: mmap %s: %s", s->name, strerror(errno));
							goto fail;
						}
						layout(s, w->size, cap);
						break;
					}
				}
			}
			if (tr_now() > deadline) {
				snprintf(err, errlen, "shm: timed out after %g s waiting for rank 0 (%s) to create %s", w->timeout,
					 w->peers[0].host, s->name);
				goto fail;
			}
			sleep_ms(2);
		}
	}
	close(fd);
	fd = -1;
	s->bells[w->rank].canary_addr = (uint64_t)(uintptr_t)&canary;
	atomic_store(&s->bells[w->rank].pid, (int32_t)getpid());
	/* The last rank to map the segment removes its name: from here on it lives only in the mappings. */
	if (atomic_fetch_add(&s->hdr->attached, 1) + 1 == (uint32_t)w->size) {
		shm_unlink(s->name);
		s->unlinked = true;
	}
	while (atomic_load(&s->hdr->attached) < (uint32_t)w->size) {
		if (tr_now() > deadline) {
			int miss = 0;
			while (miss < w->size && atomic_load(&s->bells[miss].pid) != 0)
				miss++;
			snprintf(err, errlen, "shm: timed out after %g s waiting for rank %d to map %s", w->timeout, miss,
				 s->name);
			goto fail;
		}
		sleep_ms(1);
	}
	s->unlinked = true; /* the last rank did it */
	/* Single copy needs every rank to read every other's memory (same pid namespace, ptrace
	 * permission); one failure turns it off for the whole world, decided before any message. */
	if (s->zc_min)
		prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* Yama: let sibling ranks read us */
	bool cma = true;
	for (int p = 0; p < w->size; p++) {
		if (p == w->rank)
			continue;
		pid_t pid = atomic_load(&s->bells[p].pid);
		s->pid_ok[p] = kill(pid, 0) == 0 || errno == EPERM;
		uint64_t v = 0;
		struct iovec local = { &v, sizeof(v) }, remote = { (void *)(uintptr_t)s->bells[p].canary_addr, sizeof(v) };
		if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(v) || v != CANARY)
			cma = false;
	}
	if (!cma)
		atomic_store(&s->hdr->cma_off, 1);
	atomic_fetch_add(&s->hdr->probed, 1);
	while (atomic_load(&s->hdr->probed) < (uint32_t)w->size) {
		if (tr_now() > deadline) {
			snprintf(err, errlen, "shm: timed out after %g s waiting for the other ranks to start", w->timeout);
			goto fail;
		}
		sleep_ms(1);
	}
	if (atomic_load(&s->hdr->cma_off))
		s->zc_min = 0;
	*out = &s->t;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	shm_unlink(s->name); /* never leave a name behind, whoever fails */
	shm_free(s);
	return -1;
}
