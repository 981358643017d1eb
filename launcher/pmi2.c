/* pmi2.c - a minimal PMI-2 client over PMI_FD (srun --mpi=pmi2): init, fullinit, kvs-put,
 * kvs-fence, kvs-get, finalize.  Enough to exchange data endpoints without rank 0 serving a port.
 *
 * Wire format: the handshake is one PMI-1 line ("cmd=init pmi_version=2 pmi_subversion=0\n"),
 * then every command and answer is a 6-character decimal length followed by "key=value;" pairs.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "launcher.h"

#define PMI2_MAX 8192

struct ml_pmi2 {
	int fd;
	char buf[PMI2_MAX + 1];
};

/* Writes (out) or reads exactly len bytes; -1 on error or end of file. */
static int io_all(int fd, char *s, size_t len, bool out)
{
	while (len > 0) {
		ssize_t k = out ? write(fd, s, len) : read(fd, s, len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		s += k;
		len -= k;
	}
	return 0;
}

static int write_all(int fd, const char *s, size_t len)
{
	return io_all(fd, (char *)s, len, true);
}

static int read_n(int fd, char *s, size_t len)
{
	return io_all(fd, s, len, false);
}

/* Sends one command and reads the answer into p->buf; checks cmd=<want> and rc=0. */
static int call(struct ml_pmi2 *p, const char *cmd, const char *want, char *err, size_t errlen)
{
	char hdr[24];
	size_t len = strlen(cmd);
	snprintf(hdr, sizeof(hdr), "%-6zu", len);
	if (write_all(p->fd, hdr, 6) || write_all(p->fd, cmd, len)) {
		snprintf(err, errlen, "pmi2: cannot write to PMI_FD: %s", strerror(errno));
		return -1;
	}
	if (read_n(p->fd, hdr, 6)) {
		snprintf(err, errlen, "pmi2: the process manager closed PMI_FD");
		return -1;
	}
	hdr[6] = 0;
	long n = strtol(hdr, NULL, 10);
	if (n <= 0 || n > PMI2_MAX || read_n(p->fd, p->buf, n)) {
		snprintf(err, errlen, "pmi2: bad answer length '%s'", hdr);
		return -1;
	}
	p->buf[n] = 0;
	char want_cmd[64];
	snprintf(want_cmd, sizeof(want_cmd), "cmd=%s;", want);
	if (strncmp(p->buf, want_cmd, strlen(want_cmd)) != 0) {
		snprintf(err, errlen, "pmi2: expected %s, got '%.80s'", want, p->buf);
		return -1;
	}
	const char *rc = strstr(p->buf, ";rc=");
	if (rc && atoi(rc + 4) != 0) {
		const char *m = strstr(p->buf, "errmsg=");
		snprintf(err, errlen, "pmi2: %s failed: %.200s", want, m ? m + 7 : p->buf);
		return -1;
	}
	return 0;
}

/* Value of key in the last answer ("key=value;"), copied to out. */
static int field(const struct ml_pmi2 *p, const char *key, char *out, size_t len)
{
	char pat[64];
	snprintf(pat, sizeof(pat), ";%s=", key);
	const char *s = strstr(p->buf, pat);
	if (!s)
		return -1;
	s += strlen(pat);
	size_t l = strcspn(s, ";");
	if (l >= len)
		return -1;
	memcpy(out, s, l);
	out[l] = 0;
	return 0;
}

int ml_pmi2_init(struct ml_pmi2 **out, int *rank, int *size, char *err, size_t errlen)
{
	const char *fds = getenv("PMI_FD"), *rs = getenv("PMI_RANK");
	if (!fds || !*fds) {
		snprintf(err, errlen, "pmi2: PMI_FD is not set (run the step with srun --mpi=pmi2)");
		return -1;
	}
	struct ml_pmi2 *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->fd = atoi(fds);
	const char *init = "cmd=init pmi_version=2 pmi_subversion=0\n";
	char line[256];
	size_t n = 0;
	if (write_all(p->fd, init, strlen(init))) {
		snprintf(err, errlen, "pmi2: cannot write to PMI_FD=%s: %s", fds, strerror(errno));
		goto bad;
	}
	while (n < sizeof(line) - 1) { /* the answer is one PMI-1 line */
		if (read_n(p->fd, line + n, 1)) {
			snprintf(err, errlen, "pmi2: the process manager closed PMI_FD during init");
			goto bad;
		}
		if (line[n++] == '\n')
			break;
	}
	line[n] = 0;
	if (!strstr(line, "cmd=response_to_init") || (strstr(line, "rc=") && atoi(strstr(line, "rc=") + 3) != 0)) {
		snprintf(err, errlen, "pmi2: init refused: %.100s", line);
		goto bad;
	}
	char cmd[256], v[64];
	const char *job = getenv("PMI_JOBID"); /* Slurm's server insists on it */
	snprintf(cmd, sizeof(cmd), "cmd=fullinit;pmijobid=%s;pmirank=%d;threaded=FALSE;", job ? job : "",
		 rs ? atoi(rs) : 0);
	if (call(p, cmd, "fullinit-response", err, errlen))
		goto bad;
	if (field(p, "rank", v, sizeof(v)) || (*rank = atoi(v), field(p, "size", v, sizeof(v)))) {
		snprintf(err, errlen, "pmi2: fullinit answer without rank/size");
		goto bad;
	}
	*size = atoi(v);
	*out = p;
	return 0;
bad:
	free(p);
	return -1;
}

int ml_pmi2_put(struct ml_pmi2 *p, const char *key, const char *value, char *err, size_t errlen)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cmd=kvs-put;key=%s;value=%s;", key, value);
	return call(p, cmd, "kvs-put-response", err, errlen);
}

int ml_pmi2_fence(struct ml_pmi2 *p, char *err, size_t errlen)
{
	return call(p, "cmd=kvs-fence;", "kvs-fence-response", err, errlen);
}

int ml_pmi2_get(struct ml_pmi2 *p, const char *key, char *value, size_t len, char *err, size_t errlen)
{
	char cmd[512], found[16];
	snprintf(cmd, sizeof(cmd), "cmd=kvs-get;jobid=;srcid=-1;key=%s;", key);
	if (call(p, cmd, "kvs-get-response", err, errlen))
		return -1;
	if (field(p, "found", found, sizeof(found)) || strcasecmp(found, "TRUE") != 0 ||
	    field(p, "value", value, len)) {
		snprintf(err, errlen, "pmi2: key %s not found after the fence", key);
		return -1;
	}
	return 0;
}

void ml_pmi2_finalize(struct ml_pmi2 *p)
{
	char err[ML_ERRLEN];
	if (!p)
		return;
	call(p, "cmd=finalize;", "finalize-response", err, sizeof(err));
	free(p);
}
