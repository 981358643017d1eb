/* config.c - the strict parser of the plugin's plugstack.conf arguments.
 *
 *   required moe_topology.so default=SPEC domains=PATH topology=PATH nvml=auto|off strict=yes|no \
 *            fabric=oversub:N[,nic:GBS][,nvlink:GBS]
 *
 * Every argument is key=value; an unknown key, a repeated key or a bad value is a configuration error:
 * it is logged with the valid choices and the plugin stays inactive rather than guess.  Files named here
 * are read as root, so they must be root's and writable by nobody else.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin.h"

#define VALID_KEYS "default=SPEC, domains=PATH|slurm, topology=PATH (%n = node name), nvml=auto|off, strict=yes|no, " \
	"fabric=oversub:N[,nic:GBS][,nvlink:GBS]"

static int set_once(char **slot, const char *key, const char *val, struct mtp_config *c)
{
	if (*slot) {
		snprintf(c->error, sizeof c->error, "plugstack.conf: %s= given twice", key);
		return -1;
	}
	if (!*val) {
		snprintf(c->error, sizeof c->error, "plugstack.conf: %s= needs a value", key);
		return -1;
	}
	*slot = strdup(val);
	return *slot ? 0 : -1;
}

static int parse_one(const char *arg, struct mtp_config *c, unsigned *seen)
{
	const char *eq = strchr(arg, '=');
	size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
	const char *val = eq ? eq + 1 : "";
	char err[MT_ERRLEN];

#define KEY(k) (klen == sizeof(k) - 1 && !strncmp(arg, k, klen))
	if (KEY("default")) {
		struct mt_spec s;
		if (set_once(&c->default_spec, "default", val, c))
			return -1;
		if (mt_spec_parse(val, &s, err, sizeof err)) {
			snprintf(c->error, sizeof c->error, "plugstack.conf: default=%.100s: %.380s", val, err);
			return -1;
		}
		if (s.mode == MT_MODE_HELP) {
			/* every srun without the option would print the grammar and stop */
			snprintf(c->error, sizeof c->error,
				 "plugstack.conf: default=help is not a layout (valid: off, auto, key=value,...)");
			return -1;
		}
		return 0;
	}
	if (KEY("domains")) {
		if (c->domains_slurm) {
			snprintf(c->error, sizeof c->error, "plugstack.conf: domains= given twice");
			return -1;
		}
		if (set_once(&c->domains, "domains", val, c))
			return -1;
		if (!strcmp(val, "slurm")) {   /* the keyword, not a file named "slurm" */
			free(c->domains);
			c->domains = NULL;
			c->domains_slurm = true;
		}
		return 0;
	}
	if (KEY("topology"))
		return set_once(&c->topology, "topology", val, c);
	if (KEY("fabric")) {
		/* a site fact, the same line on every node: every node plans the same ranks with it */
		if (*seen & 4u) {
			snprintf(c->error, sizeof c->error, "plugstack.conf: fabric= given twice");
			return -1;
		}
		*seen |= 4u;
		if (mt_fabric_parse(val, &c->fabric, err, sizeof err)) {
			snprintf(c->error, sizeof c->error, "plugstack.conf: fabric=%.100s: %.380s", val, err);
			return -1;
		}
		return 0;
	}
	if (KEY("nvml") || KEY("strict")) {
		unsigned bit = KEY("nvml") ? 1u : 2u;
		if (*seen & bit) {
			snprintf(c->error, sizeof c->error, "plugstack.conf: %.*s= given twice", (int)klen, arg);
			return -1;
		}
		*seen |= bit;
		if (bit == 1 && (!strcmp(val, "auto") || !strcmp(val, "off"))) {
			c->nvml = strcmp(val, "off") ? MTP_NVML_AUTO : MTP_NVML_OFF;
			return 0;
		}
		if (bit == 2 && (!strcmp(val, "yes") || !strcmp(val, "no"))) {
			c->strict = !strcmp(val, "yes");
			return 0;
		}
		snprintf(c->error, sizeof c->error, "plugstack.conf: bad value '%s' for %.*s= (valid: %s)", val,
			 (int)klen, arg, bit == 1 ? "auto, off" : "yes, no");
		return -1;
	}
#undef KEY
	snprintf(c->error, sizeof c->error, "plugstack.conf: unknown argument '%.*s' (valid: %s)", (int)klen, arg,
		 VALID_KEYS);
	return -1;
}

int mtp_config_parse(int ac, char **av, struct mtp_config *c)
{
	unsigned seen = 0;

	memset(c, 0, sizeof *c);
	for (int i = 0; i < ac; i++)
		if (parse_one(av[i], c, &seen))
			goto bad;
	if (c->topology && !strstr(c->topology, "%n")) {
		/* one file for every node would plan a heterogeneous cluster with the wrong machine */
		snprintf(c->error, sizeof c->error, "plugstack.conf: topology=%.200s has no %%n (node name) placeholder",
			 c->topology);
		goto bad;
	}
	return 0;
bad:
	mtp_config_refuse(c, c->error[0] ? c->error : "plugstack.conf: out of memory");
	return -1;
}

void mtp_config_refuse(struct mtp_config *c, const char *why)
{
	char msg[MT_ERRLEN];

	/* nothing half-applied: a default= or strict=yes read before the error must not reach users who
	 * never asked for the plugin */
	snprintf(msg, sizeof msg, "%s", why);
	mtp_config_free(c);
	c->nvml = MTP_NVML_AUTO;
	c->strict = false;
	c->fabric = (struct mt_fabric){0, 0, 0};
	snprintf(c->error, sizeof c->error, "%s", msg);
}

void mtp_config_free(struct mtp_config *c)
{
	free(c->default_spec);
	free(c->domains);
	free(c->topology);
	c->default_spec = c->domains = c->topology = NULL;
	c->domains_slurm = false;
}

/* Owner must be root or the daemon's own user (a test cluster run without root): never the job's user. */
static int trusted_stat(const struct stat *st, bool dir)
{
	if (st->st_uid != 0 && st->st_uid != getuid())
		return -1;
	if (dir && (st->st_mode & S_ISVTX))
		return 0;   /* sticky (like /tmp): others may add names but not replace root's */
	return (st->st_mode & (S_IWGRP | S_IWOTH)) ? -1 : 0;
}

/* Every folder from DIR (already resolved, no symlinks) up to "/" must pass trusted_stat: a folder a user
 * can write lets that user swap the file or a folder below it between our check and our open. */
static int trusted_dirs(char *dir, const char *path, char *err, size_t errlen)
{
	struct stat st;

	for (;;) {
		if (lstat(dir, &st) || !S_ISDIR(st.st_mode) || trusted_stat(&st, true)) {
			snprintf(err, errlen, "%s: refused: folder %s must be owned by root and writable only by root",
				 path, dir);
			return -1;
		}
		char *slash = strrchr(dir, '/');
		if (!slash || slash == dir) {
			if (dir[1] == '\0')
				return 0;
			dir[1] = '\0';   /* "/x" -> "/" */
		} else
			*slash = '\0';
	}
}

int mtp_open_trusted(const char *path, char **real, char *err, size_t errlen)
{
	char *copy = strdup(path), *dir = NULL, *full = NULL;
	struct stat st;
	int fd = -1, e;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* The folders are checked where they really are; the file itself is opened without following a
	 * symlink (a link could be retargeted) and judged on the descriptor, not on a second lookup.  With
	 * every folder up to "/" closed to others, nobody but root can rebind the resolved name afterwards. */
	dir = realpath(dirname(copy), NULL);
	if (!dir) {
		e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		fd = e == ENOENT ? MTP_ENOFILE : -1;
		goto out;
	}
	free(copy);
	copy = strdup(path);
	if (!copy || !(full = malloc(strlen(dir) + strlen(path) + 2))) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	sprintf(full, "%s/%s", strcmp(dir, "/") ? dir : "", basename(copy));
	if (trusted_dirs(dir, path, err, errlen))
		goto out;
	fd = open(full, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		if (e == ELOOP)
			snprintf(err, errlen, "%s: refused: a symbolic link (name the file itself)", path);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(e));
		fd = e == ENOENT ? MTP_ENOFILE : -1;
		goto out;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || trusted_stat(&st, false)) {
		snprintf(err, errlen, "%s: refused: must be a regular file owned by root and writable only by root",
			 path);
		close(fd);
		fd = -1;
	}
out:
	if (fd >= 0 && real) {
		*real = full;
		full = NULL;
	}
	free(copy);
	free(dir);
	free(full);
	return fd;
}

void mtp_name_back(char *err, size_t errlen, const char *real, const char *path)
{
	char *at = strstr(err, real), tail[MT_ERRLEN];
	size_t head;

	if (!at || !strcmp(real, path))
		return;
	head = (size_t)(at - err);
	snprintf(tail, sizeof tail, "%s", at + strlen(real));
	snprintf(err + head, errlen - head, "%s%s", path, tail);
}
