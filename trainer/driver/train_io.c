/* train_io.c - atomic file replacement (see train_io.h). */
#include "train_io.h"
#include "data.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tr_afile_open(struct tr_afile *a, const char *path, char *err, size_t errlen)
{
	memset(a, 0, sizeof(*a));
	size_t n = strlen(path) + 32;
	a->path = strdup(path);
	a->tmp = malloc(n);
	if (!a->path || !a->tmp) {
		snprintf(err, errlen, "out of memory");
		tr_afile_abort(a);
		return -1;
	}
	snprintf(a->tmp, n, "%s.tmp.%ld", path, (long)getpid());
	int fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !(a->f = fdopen(fd, "wb"))) {
		snprintf(err, errlen, "cannot create %s: %s", a->tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		free(a->path);
		free(a->tmp);
		a->path = a->tmp = NULL;
		return -1;
	}
	a->hash = TR_FNV_INIT;
	return 0;
}

int tr_afile_write(struct tr_afile *a, const void *p, size_t n)
{
	if (a->failed)
		return -1;
	if (n && fwrite(p, 1, n, a->f) != n) {
		a->failed = errno ? errno : EIO;
		return -1;
	}
	a->hash = tr_fnv1a64(a->hash, p, n);
	return 0;
}

static int fsync_dir(const char *path)
{
	char *d = strdup(path);
	if (!d)
		return -1;
	int fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(d);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int tr_afile_commit(struct tr_afile *a, char *err, size_t errlen)
{
	int rc = -1;
	if (a->failed) {
		snprintf(err, errlen, "cannot write %s: %s", a->tmp, strerror(a->failed));
	} else if (fflush(a->f) != 0 || fsync(fileno(a->f)) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", a->tmp, strerror(errno));
	} else {
		int e = fclose(a->f);
		a->f = NULL;
		if (e != 0)
			snprintf(err, errlen, "cannot write %s: %s", a->tmp, strerror(errno));
		else if (rename(a->tmp, a->path) != 0)
			snprintf(err, errlen, "cannot rename %s to %s: %s", a->tmp, a->path, strerror(errno));
		else if (fsync_dir(a->path) != 0)
			snprintf(err, errlen, "cannot sync the directory of %s: %s", a->path, strerror(errno));
		else
			rc = 0;
	}
	if (rc == 0) {
		free(a->path);
		free(a->tmp);
		memset(a, 0, sizeof(*a));
	} else {
		tr_afile_abort(a);
	}
	return rc;
}

void tr_afile_abort(struct tr_afile *a)
{
	if (a->f)
		fclose(a->f);
	if (a->tmp)
		unlink(a->tmp);
	free(a->path);
	free(a->tmp);
	memset(a, 0, sizeof(*a));
}
