/* comm_rdv.c - the rendezvous: how N ranks that only know rank 0's address learn each other's
 * data endpoints, and the MOE_COMM_PEERS text that carries the result across exec.
 *
 * Wire protocol (TCP, text lines, documented in doc/launcher.md):
 *   rank -> rank 0:  "MOE-RDV1 <rank> <world> <host> <addr> <port> <job key> <off-loopback addr>\n"
 *   rank 0 -> rank:  "MOE-RDV1 OK <world> <nonce>\n" then <world> lines "<host> <addr> <port>\n"
 *                or  "MOE-RDV1 ERR <one line>\n"
 * Rank 0 answers only once every rank registered, so the answer is also a start barrier.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "comm_internal.h"

#define LINE_MAX_RDV 256

int tr_peers_parse(const char *text, int size, struct tr_peer **out, char *err, size_t errlen)
{
	struct tr_peer *p = calloc(size, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	const char *s = text;
	for (int i = 0; i < size; i++) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		char ent[TR_HOST_LEN + TR_ADDR_LEN + 16];
		const char *at, *colon;
		char *pend;
		long port;
		if (len == 0 || len >= sizeof(ent))
			goto bad;
		memcpy(ent, s, len);
		ent[len] = 0;
		at = strchr(ent, '@');
		colon = strrchr(ent, ':');
		if (!at || !colon || colon < at || at == ent || colon == at + 1 || (size_t)(at - ent) >= TR_HOST_LEN ||
		    (size_t)(colon - at - 1) >= TR_ADDR_LEN)
			goto bad;
		port = strtol(colon + 1, &pend, 10);
		if (*pend || port <= 0 || port > 65535)
			goto bad;
		memcpy(p[i].host, ent, at - ent);
		memcpy(p[i].addr, at + 1, colon - at - 1);
		p[i].port = (int)port;
		if (!end && i != size - 1) {
			snprintf(err, errlen, "MOE_COMM_PEERS lists %d ranks, MOE_WORLD_SIZE is %d", i + 1, size);
			free(p);
			return -1;
		}
		s = end ? end + 1 : s + len;
		continue;
	bad:
		snprintf(err, errlen, "MOE_COMM_PEERS entry %d ('%.*s') is not host@addr:port", i, (int)(len > 80 ? 80 : len),
			 s);
		free(p);
		return -1;
	}
	if (*s) {
		snprintf(err, errlen, "MOE_COMM_PEERS lists more than MOE_WORLD_SIZE=%d ranks", size);
		free(p);
		return -1;
	}
	*out = p;
	return 0;
}

char *tr_peers_format(const struct tr_peer *peers, int size)
{
	size_t cap = (size_t)size * (TR_HOST_LEN + TR_ADDR_LEN + 10) + 1, n = 0;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	s[0] = 0;
	for (int i = 0; i < size; i++)
		n += snprintf(s + n, cap - n, "%s%s@%s:%d", i ? "," : "", peers[i].host, peers[i].addr, peers[i].port);
	return s;
}

char *tr_peers_export(const char *table, int *fd, char *err, size_t errlen)
{
	*fd = -1;
	size_t len = strlen(table), inline_max = 32u << 10;
	const char *im = getenv("MOE_COMM_PEERS_INLINE_MAX"); /* tests force the memfd path with 0 */
	if (im && *im)
		inline_max = strtoull(im, NULL, 10);
	if (len < inline_max)
		return strdup(table);
	int m = memfd_create("moe-comm-peers", 0); /* no CLOEXEC: the program inherits it */
	if (m < 0) {
		snprintf(err, errlen, "memfd_create: %s", strerror(errno));
		return NULL;
	}
	for (size_t done = 0; done < len;) {
		ssize_t k = write(m, table + done, len - done);
		if (k <= 0) {
			snprintf(err, errlen, "cannot write the peer table: %s", strerror(errno));
			close(m);
			return NULL;
		}
		done += k;
	}
	char *v = malloc(32);
	if (!v) {
		close(m);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(v, 32, "fd:%d", m);
	*fd = m;
	return v;
}

char *tr_peers_import(const char *value, char *err, size_t errlen)
{
	if (strncmp(value, "fd:", 3) != 0)
		return strdup(value);
	int fd = atoi(value + 3);
	size_t cap = 1 << 16, len = 0;
	char *s = malloc(cap + 1);
	for (;;) {
		if (!s) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		ssize_t k = pread(fd, s + len, cap - len, (off_t)len); /* pread: ranks may share the fd */
		if (k < 0) {
			snprintf(err, errlen, "MOE_COMM_PEERS=%s: cannot read the peer table: %s", value, strerror(errno));
			free(s);
			return NULL;
		}
		if (k == 0)
			break;
		len += k;
		if (len == cap) {
			char *n = realloc(s, 2 * cap + 1);
			if (!n)
				free(s);
			s = n;
			cap *= 2;
		}
	}
	close(fd);
	s[len] = 0;
	return s;
}

int tr_listen(int family, int port, bool loopback, int *fd, int *bound_port, char *err, size_t errlen)
{
	int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = loopback ? in6addr_loopback : in6addr_any;
		a->sin6_port = htons(port);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(loopback ? INADDR_LOOPBACK : INADDR_ANY);
		a->sin_port = htons(port);
		sl = sizeof(*a);
	}
	if (bind(s, (struct sockaddr *)&ss, sl) != 0 || listen(s, SOMAXCONN) != 0) {
		snprintf(err, errlen, "cannot listen on port %d: %s", port, strerror(errno));
		close(s);
		return -1;
	}
	sl = sizeof(ss);
	getsockname(s, (struct sockaddr *)&ss, &sl);
	*bound_port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	*fd = s;
	return 0;
}

/* A connection's input so far; lines are parsed once complete. */
struct conn {
	int fd, rank;
	char buf[LINE_MAX_RDV];
	size_t len;
};

static int send_all(int fd, const char *s, size_t len, double deadline)
{
	while (len > 0) {
		struct pollfd pf = { fd, POLLOUT, 0 };
		double left = deadline - tr_now();
		if (left <= 0 || poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
			return -1;
		ssize_t k = send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k <= 0)
			return -1;
		s += k;
		len -= k;
	}
	return 0;
}

static void reply_err(int fd, const char *msg, double deadline)
{
	char line[LINE_MAX_RDV + 32];
	int n = snprintf(line, sizeof(line), "MOE-RDV1 ERR %s\n", msg);
	send_all(fd, line, n, deadline);
}

/* Which launch a rank belongs to: the Slurm step, or MOE_RDV_KEY, the same on all its ranks.  Ports
 * derived from job ids can collide; the key keeps another job's ranks out of this rendezvous. */
static void job_key(char *buf, size_t len)
{
	const char *k = getenv("MOE_RDV_KEY"), *j = getenv("SLURM_JOB_ID"), *st = getenv("SLURM_STEP_ID");
	if (k && *k)
		snprintf(buf, len, "%s", k);
	else if (j && *j)
		snprintf(buf, len, "%s.%s", j, st && *st ? st : "0");
	else
		snprintf(buf, len, "-");
	for (char *p = buf; *p; p++)
		if (*p == ' ' || *p == '\n')
			*p = '_';
}

/* Parses a registration; 0 and fills the entry, -2 for a rank of another job, -1 otherwise, with why. */
static int parse_reg(const char *line, int world, int *rank, struct tr_peer *pe, char *ext, char *why, size_t wl)
{
	int r, wsz, port;
	char host[TR_HOST_LEN], addr[TR_ADDR_LEN], key[64], mine[64];
	if (sscanf(line, "MOE-RDV1 %d %d %63s %63s %d %63s %63s", &r, &wsz, host, addr, &port, key, ext) != 7) {
		snprintf(why, wl, "malformed registration");
		return -1;
	}
	job_key(mine, sizeof(mine));
	if (strcmp(key, mine) != 0) {
		snprintf(why, wl, "this rendezvous port belongs to job %s, not to job %s (port collision: give "
			 "--master-port)", mine, key);
		return -2;
	}
	if (wsz != world) {
		snprintf(why, wl, "rank %d says the world has %d ranks, rank 0 says %d", r, wsz, world);
		return -1;
	}
	if (r <= 0 || r >= world || port <= 0 || port > 65535) {
		snprintf(why, wl, "rank %d / port %d out of range for a world of %d", r, port, world);
		return -1;
	}
	*rank = r;
	snprintf(pe->host, sizeof(pe->host), "%s", host);
	snprintf(pe->addr, sizeof(pe->addr), "%s", addr);
	pe->port = port;
	return 0;
}

/* The serving side's state: the table being filled and the connections it came on. */
struct serve {
	int world, nslots, have;
	struct tr_peer *tab;
	struct conn *cs;
	struct pollfd *pf;
	int *slot_of;             /* poll index -> slot, -1 for the listen socket */
	bool *seen;
	char (*ext)[TR_ADDR_LEN]; /* each rank's off-loopback address */
};

static void drop(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
}

/* One complete registration line from c: records the rank, turns away another job's rank (keeps
 * serving), or fails the rendezvous on a bad or duplicate registration. */
static int take_registration(struct serve *sv, struct conn *c, double deadline, char *err, size_t errlen)
{
	char why[320], ext1[TR_ADDR_LEN];
	int rank;
	struct tr_peer pe;
	if (strncmp(c->buf, "MOE-RDV1 ", 9) != 0) {
		drop(c);
		return 0;
	}
	int pr = parse_reg(c->buf, sv->world, &rank, &pe, ext1, why, sizeof(why));
	if (pr == -2) { /* another job's rank: turn it away, keep serving ours */
		reply_err(c->fd, why, tr_now() + 1);
		drop(c);
		return 0;
	}
	if (pr == 0 && sv->seen[rank]) {
		snprintf(why, sizeof(why), "rank %d registered twice (%s and %s): two jobs on one port?", rank,
			 sv->tab[rank].addr, pe.addr);
		pr = -1;
	}
	if (pr != 0) {
		reply_err(c->fd, why, deadline);
		snprintf(err, errlen, "rendezvous: %s", why);
		return -1;
	}
	c->rank = rank;
	sv->seen[rank] = true;
	sv->tab[rank] = pe;
	snprintf(sv->ext[rank], TR_ADDR_LEN, "%s", ext1);
	sv->have++;
	return 0;
}

/* Accepts callers and reads their registrations until every rank registered or the deadline. */
static int collect(struct serve *sv, int master_fd, double timeout, double deadline, char *err, size_t errlen)
{
	while (sv->have < sv->world) {
		double left = deadline - tr_now();
		if (left <= 0) {
			int miss = 1;
			while (miss < sv->world && sv->seen[miss])
				miss++;
			snprintf(err, errlen, "rendezvous: timed out after %g s: %d of %d ranks registered, rank %d never "
				 "did (did every rank start?)", timeout, sv->have, sv->world, miss);
			return -1;
		}
		int np = 0, free_slot = -1;
		for (int i = 0; i < sv->nslots; i++) {
			if (sv->cs[i].fd < 0 && free_slot < 0)
				free_slot = i;
			if (sv->cs[i].fd >= 0 && sv->cs[i].rank < 0) {
				sv->slot_of[np] = i;
				sv->pf[np++] = (struct pollfd){ sv->cs[i].fd, POLLIN, 0 };
			}
		}
		if (free_slot >= 0) {
			sv->slot_of[np] = -1;
			sv->pf[np++] = (struct pollfd){ master_fd, POLLIN, 0 };
		}
		int r = poll(sv->pf, np, (int)(left * 1000) + 1);
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "rendezvous: poll: %s", strerror(errno));
			return -1;
		}
		for (int j = 0; r > 0 && j < np; j++) {
			if (!sv->pf[j].revents)
				continue;
			if (sv->slot_of[j] < 0) {
				int fd = accept4(master_fd, NULL, NULL, SOCK_CLOEXEC);
				if (fd >= 0)
					sv->cs[free_slot] = (struct conn){ .fd = fd, .rank = -1 };
				continue;
			}
			struct conn *c = &sv->cs[sv->slot_of[j]];
			ssize_t k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len, MSG_DONTWAIT);
			if (k < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			char *nl = NULL;
			if (k > 0) {
				c->len += k;
				c->buf[c->len] = 0;
				nl = strchr(c->buf, '\n');
			}
			if (k <= 0 || (!nl && c->len == sizeof(c->buf) - 1)) {
				drop(c); /* a caller that went away or talks nonsense: keep serving */
				continue;
			}
			if (!nl)
				continue;
			*nl = 0;
			if (take_registration(sv, c, deadline, err, errlen) != 0)
				return -1;
		}
	}
	return 0;
}

/* Everyone is here.  A rank on rank 0's node may have reached it over a loopback interface (a
 * hostname mapped to 127.0.1.1): when the world spans nodes, publish its other address. */
static void publish_reachable(struct serve *sv)
{
	bool multi = false;
	for (int i = 1; i < sv->world; i++)
		multi |= strcmp(sv->tab[i].host, sv->tab[0].host) != 0;
	for (int i = 1; multi && i < sv->world; i++)
		if (sv->ext[i][0])
			snprintf(sv->tab[i].addr, sizeof(sv->tab[i].addr), "%s", sv->ext[i]);
}

/* Sends every registered rank the table and the nonce. */
static int answer(struct serve *sv, const char *nonce, double deadline, char *err, size_t errlen)
{
	const struct tr_peer *tab = sv->tab;
	size_t cap = 64 + (size_t)sv->world * (TR_HOST_LEN + TR_ADDR_LEN + 10), n = 0;
	char *msg = malloc(cap);
	if (!msg) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* Rank 0's line comes last in the message but first in the table: each rank gets rank 0 at the
	 * address it reached rank 0 on (rank 0's own view of its name may be a loopback alias such as
	 * Debian's 127.0.1.1, useless to the other nodes). */
	n += snprintf(msg, cap, "MOE-RDV1 OK %d %s\n", sv->world, nonce);
	size_t first = n;
	n += snprintf(msg + n, cap - n, "%s %s %d\n", tab[0].host, tab[0].addr, tab[0].port);
	size_t rest = n;
	for (int i = 1; i < sv->world; i++)
		n += snprintf(msg + n, cap - n, "%s %s %d\n", tab[i].host, tab[i].addr, tab[i].port);
	int rc = 0;
	for (int i = 0; i < sv->nslots; i++) {
		struct conn *c = &sv->cs[i];
		if (c->fd < 0 || c->rank <= 0)
			continue;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		char via[TR_ADDR_LEN], line0[TR_HOST_LEN + TR_ADDR_LEN + 16];
		const char *a0 = tab[0].addr;
		if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    getnameinfo((struct sockaddr *)&ss, sl, via, sizeof(via), NULL, 0, NI_NUMERICHOST) == 0)
			a0 = via;
		int l0 = snprintf(line0, sizeof(line0), "%s %s %d\n", tab[0].host, a0, tab[0].port);
		if (send_all(c->fd, msg, first, deadline) != 0 || send_all(c->fd, line0, l0, deadline) != 0 ||
		    send_all(c->fd, msg + rest, n - rest, deadline) != 0) {
			snprintf(err, errlen, "rendezvous: rank %d (%s) went away before it got the table", c->rank,
				 tab[c->rank].addr);
			rc = -1;
		}
	}
	free(msg);
	return rc;
}

int tr_rdv_serve(int master_fd, int world, const struct tr_peer *me, const char *nonce, double timeout,
		 struct tr_peer **table, char *err, size_t errlen)
{
	struct serve sv = { .world = world, .nslots = world + 16, .have = 1 }; /* room for a few strangers
										  (port scanners) next to the ranks */
	sv.tab = calloc(world, sizeof(*sv.tab));
	sv.cs = calloc(sv.nslots, sizeof(*sv.cs));
	sv.pf = calloc(sv.nslots + 1, sizeof(*sv.pf));
	sv.slot_of = calloc(sv.nslots + 1, sizeof(int));
	sv.seen = calloc(world, sizeof(bool));
	sv.ext = calloc(world, TR_ADDR_LEN);
	int rc = -1;
	if (!sv.tab || !sv.cs || !sv.pf || !sv.slot_of || !sv.seen || !sv.ext) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < sv.nslots; i++)
		sv.cs[i].fd = -1;
	sv.tab[0] = *me;
	sv.seen[0] = true;
	double deadline = tr_now() + timeout;
	if (collect(&sv, master_fd, timeout, deadline, err, errlen) != 0)
		goto out;
	publish_reachable(&sv);
	rc = answer(&sv, nonce, deadline, err, errlen);
out:
	if (sv.cs)
		for (int i = 0; i < sv.nslots; i++)
			if (sv.cs[i].fd >= 0) {
				/* on failure, tell waiting ranks why instead of leaving them to time out */
				if (rc != 0 && sv.cs[i].rank > 0)
					reply_err(sv.cs[i].fd, err, tr_now() + 1);
				close(sv.cs[i].fd);
			}
	free(sv.cs);
	free(sv.pf);
	free(sv.slot_of);
	free(sv.seen);
	free(sv.ext);
	if (rc == 0)
		*table = sv.tab;
	else
		free(sv.tab);
	return rc;
}

static int connect_retry(const char *addr, int port, double deadline, int *out, char *err, size_t errlen)
{
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
	double delay = 0.02;
	int e = 0;
	for (;;) {
		int g = getaddrinfo(addr, ps, &hints, &ai);
		if (g == 0) {
			int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
			if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				freeaddrinfo(ai);
				*out = fd;
				return 0;
			}
			e = errno;
			if (fd >= 0)
				close(fd);
			freeaddrinfo(ai);
		} else if (g != EAI_AGAIN) {
			snprintf(err, errlen, "rendezvous: cannot resolve rank 0's address '%s': %s", addr, gai_strerror(g));
			return -1;
		} else {
			e = EAGAIN;
		}
		if (tr_now() + delay > deadline)
			break;
		usleep((useconds_t)(delay * 1e6));
		if (delay < 1)
			delay *= 1.5;
	}
	snprintf(err, errlen, "rendezvous: cannot reach rank 0 at %s:%d: %s (gave up after the timeout)", addr, port,
		 strerror(e));
	return -1;
}

/* Reads until the reply is complete: status line + world lines. */
static int read_reply(int fd, int world, double deadline, struct tr_peer **table, char *nonce, char *err,
		      size_t errlen)
{
	size_t cap = 128 + (size_t)world * (TR_HOST_LEN + TR_ADDR_LEN + 10), len = 0;
	char *buf = malloc(cap + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int lines = 0, need = 1;
	while (lines < need) {
		struct pollfd pf = { fd, POLLIN, 0 };
		double left = deadline - tr_now();
		int r = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "rendezvous: timed out waiting for rank 0's table (not every rank registered)");
			goto bad;
		}
		ssize_t k = recv(fd, buf + len, cap - len, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			snprintf(err, errlen, "rendezvous: rank 0 closed the connection before sending the table");
			goto bad;
		}
		if (memchr(buf + len, 0, (size_t)k)) { /* text lines only: a NUL would hide the newlines counted */
			snprintf(err, errlen, "rendezvous: rank 0 sent binary data instead of the table");
			goto bad;
		}
		for (ssize_t i = 0; i < k; i++)
			if (buf[len + i] == '\n')
				lines++;
		len += k;
		buf[len] = 0;
		if (lines >= 1 && need == 1) {
			if (!strncmp(buf, "MOE-RDV1 ERR ", 13)) {
				char *nl = strchr(buf, '\n');
				*nl = 0;
				snprintf(err, errlen, "rendezvous: rank 0 refused: %s", buf + 13);
				goto bad;
			}
			int w;
			char nb[64];
			if (sscanf(buf, "MOE-RDV1 OK %d %63s", &w, nb) != 2 || w != world) {
				snprintf(err, errlen, "rendezvous: unexpected answer from rank 0");
				goto bad;
			}
			snprintf(nonce, 64, "%s", nb);
			need = 1 + world;
		}
		if (len == cap && lines < need) {
			snprintf(err, errlen, "rendezvous: rank 0's table is too long");
			goto bad;
		}
	}
	struct tr_peer *tab = calloc(world, sizeof(*tab));
	if (!tab) {
		snprintf(err, errlen, "out of memory");
		goto bad;
	}
	char *p = strchr(buf, '\n') + 1;
	for (int i = 0; i < world; i++) {
		char *nl = strchr(p, '\n');
		*nl = 0;
		if (sscanf(p, "%63s %63s %d", tab[i].host, tab[i].addr, &tab[i].port) != 3) {
			snprintf(err, errlen, "rendezvous: rank 0's table line %d is malformed", i);
			free(tab);
			goto bad;
		}
		p = nl + 1;
	}
	free(buf);
	*table = tab;
	return 0;
bad:
	free(buf);
	return -1;
}

/* `addr` itself, or when it belongs to a loopback interface the first address of the same family on
 * an interface that is up and not loopback (what ranks on other nodes can reach). */
void tr_off_loopback(const char *addr, int family, char *out, size_t len)
{
	struct ifaddrs *ifs, *i;
	snprintf(out, len, "%s", addr);
	if (getifaddrs(&ifs) != 0)
		return;
	bool on_lo = false;
	char a[TR_ADDR_LEN];
	for (i = ifs; i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == family &&
		    getnameinfo(i->ifa_addr, family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), a,
				sizeof(a), NULL, 0, NI_NUMERICHOST) == 0 && !strcmp(a, addr))
			on_lo = (i->ifa_flags & IFF_LOOPBACK) != 0;
	for (i = ifs; on_lo && i; i = i->ifa_next)
		if (i->ifa_addr && i->ifa_addr->sa_family == family && (i->ifa_flags & IFF_UP) &&
		    !(i->ifa_flags & IFF_LOOPBACK) &&
		    getnameinfo(i->ifa_addr, family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), a,
				sizeof(a), NULL, 0, NI_NUMERICHOST) == 0 && strncmp(a, "fe80", 4) != 0) {
			snprintf(out, len, "%s", a);
			break;
		}
	freeifaddrs(ifs);
}

int tr_rdv_join(const char *addr, int port, int rank, int world, const char *host, int data_port, double timeout,
		struct tr_peer **table, char *nonce, char *err, size_t errlen)
{
	double deadline = tr_now() + timeout;
	int fd;
	if (connect_retry(addr, port, deadline, &fd, err, errlen) != 0)
		return -1;
	/* Advertise the local address of the route to rank 0: the one the other nodes can reach. */
	struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
	socklen_t sl = sizeof(ss);
	char me[TR_ADDR_LEN] = "";
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		getnameinfo((struct sockaddr *)&ss, sl, me, sizeof(me), NULL, 0, NI_NUMERICHOST);
	char line[LINE_MAX_RDV], key[64], ext[TR_ADDR_LEN];
	tr_off_loopback(me, ss.ss_family, ext, sizeof(ext));
	job_key(key, sizeof(key));
	int n = snprintf(line, sizeof(line), "MOE-RDV1 %d %d %s %s %d %s %s\n", rank, world, host, me, data_port, key,
			 ext);
	int rc = -1;
	if (send_all(fd, line, n, deadline) != 0)
		snprintf(err, errlen, "rendezvous: rank 0 at %s:%d closed the connection", addr, port);
	else
		rc = read_reply(fd, world, deadline, table, nonce, err, errlen);
	close(fd);
	return rc;
}

uint64_t tr_random64(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long long x = (unsigned long long)ts.tv_sec * 1000000007ull ^ ts.tv_nsec ^ ((unsigned long long)getpid() << 32);
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		unsigned long long r;
		if (read(fd, &r, sizeof(r)) == sizeof(r))
			x ^= r;
		close(fd);
	}
	return x;
}

static void make_nonce(char *buf, size_t len)
{
	snprintf(buf, len, "%016llx", (unsigned long long)tr_random64());
}

int tr_rdv_run(const char *master_addr, int master_port, int rank, int world, double timeout, struct tr_world *w,
	       char *err, size_t errlen)
{
	memset(w, 0, sizeof(*w));
	w->rank = rank;
	w->size = world;
	w->timeout = timeout;
	w->listen_fd = -1;
	char host[TR_HOST_LEN] = "";
	/* MOE_COMM_HOST: the node name to publish (ranks with equal names share memory); pretend nodes
	 * in tests, containers with their own hostnames on one machine */
	const char *as = getenv("MOE_COMM_HOST");
	if (as && *as) {
		if (strlen(as) >= sizeof(host) || strpbrk(as, " \t\n@,")) {
			snprintf(err, errlen, "MOE_COMM_HOST='%.80s' is not a node name (at most %zu characters, no blanks, "
				 "'@' or ',')", as, sizeof(host) - 1);
			return -1;
		}
		snprintf(host, sizeof(host), "%s", as);
	} else
		gethostname(host, sizeof(host) - 1);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	int g = getaddrinfo(master_addr, NULL, &hints, &ai);
	if (g != 0) {
		snprintf(err, errlen, "rendezvous: cannot resolve MOE_MASTER_ADDR '%s': %s", master_addr, gai_strerror(g));
		return -1;
	}
	int family = ai->ai_family;
	char maddr[TR_ADDR_LEN];
	getnameinfo(ai->ai_addr, ai->ai_addrlen, maddr, sizeof(maddr), NULL, 0, NI_NUMERICHOST);
	freeaddrinfo(ai);
	int dport;
	if (tr_listen(family, 0, false, &w->listen_fd, &dport, err, errlen) != 0)
		return -1;
	int rc;
	if (rank == 0) {
		int mfd, mport;
		if (tr_listen(family, master_port, false, &mfd, &mport, err, errlen) != 0) {
			snprintf(err + strlen(err), errlen - strlen(err), " (rank 0 serves the rendezvous on MOE_MASTER_PORT)");
			rc = -1;
		} else {
			struct tr_peer me = { .port = dport };
			snprintf(me.host, sizeof(me.host), "%s", host);
			snprintf(me.addr, sizeof(me.addr), "%s", maddr);
			make_nonce(w->job, sizeof(w->job));
			rc = tr_rdv_serve(mfd, world, &me, w->job, timeout, &w->peers, err, errlen);
			close(mfd);
		}
	} else {
		rc = tr_rdv_join(master_addr, master_port, rank, world, host, dport, timeout, &w->peers, w->job, err,
				 errlen);
	}
	if (rc != 0) {
		close(w->listen_fd);
		w->listen_fd = -1;
	}
	return rc;
}
