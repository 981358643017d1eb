/* comm_tcp.c - the tcp transport: one connection per pair of ranks, any nodes.
 *
 * At open every rank connects to each higher rank's listen socket (published by the rendezvous)
 * and accepts one connection from each lower rank; a 16-byte hello says who is calling.  Sockets
 * are then non-blocking with TCP_NODELAY and large buffers; comm.c drives them all at once with
 * poll().  A peer that dies shows up as EOF/reset on its connection and is named in the error.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comm_internal.h"

#define HELLO_MAGIC 0x4d4f4548u /* "MOEH" */
#define SOCK_BUF (4 << 20)

struct tcp {
	struct tr_transport t;
	int *fd; /* fd[peer], -1 for self */
	struct pollfd *pfd;
};

struct hello {
	uint32_t magic, rank, size, job;
};

static uint32_t job_hash(const char *job)
{
	uint32_t h = 2166136261u;
	for (; *job; job++)
		h = (h ^ (unsigned char)*job) * 16777619u;
	return h;
}

static void closed_err(struct tr_transport *t, int peer, int e)
{
	char who[TR_HOST_LEN + TR_ADDR_LEN + 16];
	tr_peer_name(t, peer, who, sizeof(who));
	if (e == 0 || e == EPIPE || e == ECONNRESET)
		snprintf(t->err, sizeof(t->err), "tcp: rank %d (%s) closed the connection", peer, who);
	else
		snprintf(t->err, sizeof(t->err), "tcp: connection to rank %d (%s): %s", peer, who, strerror(e));
}

/* The result of one non-blocking send/recv: bytes moved, 0 when it would block, -1 (peer named in
 * t->err) on error; k == 0 from recv is the peer's end of stream.  *again: interrupted, retry. */
static ssize_t io_result(struct tr_transport *t, int peer, ssize_t k, bool *again)
{
	*again = false;
	if (k > 0)
		return k;
	if (k == 0) {
		closed_err(t, peer, 0);
		return -1;
	}
	if (errno == EINTR) {
		*again = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	closed_err(t, peer, errno);
	return -1;
}

static ssize_t tcp_send(struct tr_transport *t, int peer, const struct iovec *iov, int iovcnt)
{
	struct tcp *s = (struct tcp *)t;
	struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt };
	bool again;
	ssize_t k;
	do {
		k = sendmsg(s->fd[peer], &m, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k == 0)
			return 0; /* nothing to send (empty iovec): not an end of stream */
		k = io_result(t, peer, k, &again);
	} while (again);
	return k;
}

static ssize_t tcp_recv(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct tcp *s = (struct tcp *)t;
	bool again;
	ssize_t k;
	do
		k = io_result(t, peer, recv(s->fd[peer], buf, len, MSG_DONTWAIT), &again);
	while (again);
	return k;
}

static ssize_t tcp_peek(struct tr_transport *t, int peer, void *buf, size_t len)
{
	struct tcp *s = (struct tcp *)t;
	ssize_t k = recv(s->fd[peer], buf, len, MSG_PEEK | MSG_DONTWAIT);
	return k > 0 ? k : 0;
}

static uint64_t tcp_token(struct tr_transport *t)
{
	return 0;
}

static int tcp_wait(struct tr_transport *t, uint64_t token, const int *peers, const bool *sending,
		    const bool *receiving, int n, int ms)
{
	struct tcp *s = (struct tcp *)t;
	for (int i = 0; i < n; i++)
		s->pfd[i] = (struct pollfd){ .fd = s->fd[peers[i]],
					     .events = (sending[i] ? POLLOUT : 0) | (receiving[i] ? POLLIN : 0) };
	if (poll(s->pfd, n, ms) < 0 && errno != EINTR) {
		snprintf(t->err, sizeof(t->err), "tcp: poll: %s", strerror(errno));
		return -1;
	}
	return 0; /* errors and hang-ups surface in the next send/recv, which names the peer */
}

/* Unread input makes close() send a reset, which can destroy our abort notice before a peer read
 * it.  So: half-close (the notice goes out, then FIN), and read and drop what peers still send
 * until each has closed too or half a second passed. */
static void tcp_abandon(struct tr_transport *t)
{
	struct tcp *s = (struct tcp *)t;
	char sink[16384];
	int open_n = 0;
	for (int i = 0; i < t->size; i++)
		if (s->fd[i] >= 0) {
			shutdown(s->fd[i], SHUT_WR);
			s->pfd[open_n++] = (struct pollfd){ .fd = s->fd[i], .events = POLLIN };
		}
	double deadline = tr_now() + 0.5;
	while (open_n > 0) {
		double left = deadline - tr_now();
		if (left <= 0 || poll(s->pfd, open_n, (int)(left * 1000) + 1) <= 0)
			break;
		for (int i = 0; i < open_n; i++) {
			if (!s->pfd[i].revents)
				continue;
			ssize_t k;
			while ((k = recv(s->pfd[i].fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0)
				;
			if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
				s->pfd[i--] = s->pfd[--open_n]; /* that peer closed: done with it */
		}
	}
}

static void tcp_destroy(struct tr_transport *t)
{
	struct tcp *s = (struct tcp *)t;
	char sink[4096];
	for (int i = 0; i < t->size; i++)
		if (s->fd[i] >= 0) {
			/* drop unread input first: closing over it would reset the connection */
			for (int k = 0; k < 64 && recv(s->fd[i], sink, sizeof(sink), MSG_DONTWAIT) > 0; k++)
				;
			close(s->fd[i]);
		}
	free(s->fd);
	free(s->pfd);
	free(s);
}

static const struct tr_transport_ops tcp_ops = {
	.kind = "tcp",
	.send_some = tcp_send,
	.recv_some = tcp_recv,
	.wait_token = tcp_token,
	.wait = tcp_wait,
	.destroy = tcp_destroy,
	.abandon = tcp_abandon,
	.peek = tcp_peek,
};

static void tune(int fd)
{
	int one = 1, buf = SOCK_BUF;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

int tr_sock_full(int fd, void *buf, size_t len, bool out, double deadline)
{
	char *p = buf;
	while (len > 0) {
		double left = deadline - tr_now();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd pf = { fd, out ? POLLOUT : POLLIN, 0 };
		int r = poll(&pf, 1, (int)(left * 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			return -1;
		}
		ssize_t k = out ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, len, MSG_DONTWAIT);
		if (k == 0 && !out) {
			errno = ECONNRESET;
			return -1;
		}
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		p += k;
		len -= k;
	}
	return 0;
}

/* Connects to peer p, retrying while its socket is not up yet. */
static int dial(const struct tr_world *w, int p, double deadline, char *err, size_t errlen)
{
	const struct tr_peer *pe = &w->peers[p];
	char port[16];
	snprintf(port, sizeof(port), "%d", pe->port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *ai;
	int g = getaddrinfo(pe->addr, port, &hints, &ai);
	if (g != 0) {
		snprintf(err, errlen, "rank %d address '%s': %s", p, pe->addr, gai_strerror(g));
		return -1;
	}
	int fd = -1, e = 0;
	double delay = 0.01;
	for (;;) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			break;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
		if ((e != ECONNREFUSED && e != EINTR && e != ETIMEDOUT && e != EAGAIN) || tr_now() + delay > deadline)
			break;
		usleep((useconds_t)(delay * 1e6));
		if (delay < 0.5)
			delay *= 2;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to rank %d (%s:%d): %s", p, pe->addr, pe->port, strerror(e));
		return -1;
	}
	tune(fd);
	struct hello h = { HELLO_MAGIC, (uint32_t)w->rank, (uint32_t)w->size, job_hash(w->job) };
	if (tr_sock_full(fd, &h, sizeof(h), true, deadline) != 0) {
		snprintf(err, errlen, "rank %d (%s:%d) closed the connection during setup: %s", p, pe->addr,
			 pe->port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Accepts the connections of all lower ranks. */
static int accept_lower(const struct tr_world *w, int *fds, double deadline, char *err, size_t errlen)
{
	int want = w->rank, got = 0;
	uint32_t job = job_hash(w->job);
	while (got < want) {
		double left = deadline - tr_now();
		struct pollfd pf = { w->listen_fd, POLLIN, 0 };
		int r = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int miss = 0;
			while (fds[miss] >= 0)
				miss++;
			snprintf(err, errlen, "timed out after %g s waiting for rank %d (%s:%d) to connect "
				 "(%d of %d lower ranks missing)", w->timeout, miss, w->peers[miss].addr,
				 w->peers[miss].port, want - got, want);
			return -1;
		}
		int fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			snprintf(err, errlen, "accept: %s", strerror(errno));
			return -1;
		}
		struct hello h;
		if (tr_sock_full(fd, &h, sizeof(h), false, deadline) != 0 || h.magic != HELLO_MAGIC) {
			close(fd); /* not one of ours (a port scan, a stale rank): ignore it */
			continue;
		}
		if (h.size != (uint32_t)w->size || h.job != job || h.rank >= (uint32_t)w->rank || fds[h.rank] >= 0) {
			snprintf(err, errlen, "unexpected connection claiming rank %u of %u (this is rank %d of %d "
				 "of job %s): two jobs on the same ports?", h.rank, h.size, w->rank, w->size, w->job);
			close(fd);
			return -1;
		}
		tune(fd);
		fds[h.rank] = fd;
		got++;
	}
	return 0;
}

/* One socket per peer: make room for them when the soft limit is low. */
static void raise_nofile(int need)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)need + 64) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need + 64 ? (rlim_t)need + 64
											      : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int tr_tcp_mesh(const struct tr_world *w, int *fds, char *err, size_t errlen)
{
	if (w->listen_fd < 0 && w->rank > 0) {
		snprintf(err, errlen, "no listen socket (MOE_COMM_FD) for rank %d: start the ranks with moe-launch "
			 "(and initialise the world once per process; make groups with tr_comm_split)", w->rank);
		return -1;
	}
	raise_nofile(w->size);
	for (int i = 0; i < w->size; i++)
		fds[i] = -1;
	double deadline = tr_now() + w->timeout;
	int rc = 0;
	/* Connect up first: connects complete in the peer's backlog, so no rank waits on another's accept. */
	for (int p = w->rank + 1; p < w->size && rc == 0; p++)
		if ((fds[p] = dial(w, p, deadline, err, errlen)) < 0)
			rc = -1;
	if (rc == 0)
		rc = accept_lower(w, fds, deadline, err, errlen);
	if (rc != 0)
		for (int i = 0; i < w->size; i++)
			if (fds[i] >= 0) {
				close(fds[i]);
				fds[i] = -1;
			}
	return rc;
}

int tr_tcp_open(const struct tr_world *w, struct tr_transport **out, char *err, size_t errlen)
{
	struct tcp *s = calloc(1, sizeof(*s));
	int *fds = calloc(w->size, sizeof(int));
	struct pollfd *pfd = calloc(w->size, sizeof(*pfd));
	if (!s || !fds || !pfd) {
		free(s);
		free(fds);
		free(pfd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char why[TR_ERRLEN];
	if (tr_tcp_mesh(w, fds, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "tcp: %s", why);
		free(fds);
		free(pfd);
		free(s);
		return -1;
	}
	for (int i = 0; i < w->size; i++)
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	s->t.ops = &tcp_ops;
	s->t.size = w->size;
	s->fd = fds;
	s->pfd = pfd;
	*out = &s->t;
	return 0;
}
