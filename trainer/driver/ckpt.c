/* ckpt.c - checkpoint files of named sections (see ckpt.h). */
#include "ckpt.h"
#include "data.h"
#include "train_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "MOECKPT1"
#define TRAILER "MOECKEND"

char *tr_ckpt_path(char *buf, size_t len, const char *dir, int rank)
{
	snprintf(buf, len, "%s/rank-%05d.ckpt", dir, rank);
	return buf;
}

int tr_ckpt_write(const char *path, const struct tr_ckpt_sec *secs, int nsec, char *err, size_t errlen)
{
	struct tr_afile a;
	if (tr_afile_open(&a, path, err, errlen) != 0)
		return -1;
	uint32_t ver = TR_CKPT_VERSION, ns = (uint32_t)nsec;
	tr_afile_write(&a, MAGIC, 8);
	tr_afile_write(&a, &ver, 4);
	tr_afile_write(&a, &ns, 4);
	for (int i = 0; i < nsec; i++) {
		uint32_t nl = (uint32_t)strlen(secs[i].name);
		uint64_t n = secs[i].n;
		tr_afile_write(&a, &nl, 4);
		tr_afile_write(&a, secs[i].name, nl);
		tr_afile_write(&a, &n, 8);
		tr_afile_write(&a, secs[i].p, n);
	}
	uint64_t h = a.hash;
	tr_afile_write(&a, TRAILER, 8);
	tr_afile_write(&a, &h, 8);
	return tr_afile_commit(&a, err, errlen);
}

/* Walk the sections; returns the count, or -1 when the layout does not add up. */
static int walk(const struct tr_ckpt *c, const char *want, const void **p, uint64_t *n)
{
	size_t off = 16, end = c->len - 16;
	uint32_t ns;
	memcpy(&ns, c->buf + 12, 4);
	for (uint32_t i = 0; i < ns; i++) {
		uint32_t nl;
		uint64_t sz;
		if (end - off < 4)
			return -1;
		memcpy(&nl, c->buf + off, 4);
		off += 4;
		if (end - off < (size_t)nl + 8)
			return -1;
		const char *name = (const char *)c->buf + off;
		off += nl;
		memcpy(&sz, c->buf + off, 8);
		off += 8;
		if (end - off < sz)
			return -1;
		if (want && strlen(want) == nl && memcmp(want, name, nl) == 0) {
			*p = c->buf + off;
			*n = sz;
		}
		off += sz;
	}
	return off == end ? (int)ns : -1;
}

int tr_ckpt_read(struct tr_ckpt *c, const char *path, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot open checkpoint %s: %s", path, strerror(errno));
		return -1;
	}
	int rc = -1;
	long len = -1;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (c->buf = malloc(len ? (size_t)len : 1)) && fread(c->buf, 1, (size_t)len, f) == (size_t)len) {
		c->len = (size_t)len;
		uint32_t ver = 0;
		uint64_t h;
		if (c->len < 32 || memcmp(c->buf, MAGIC, 8) != 0) {
			snprintf(err, errlen, "%s is not a moe-train checkpoint", path);
		} else if (memcpy(&ver, c->buf + 8, 4), ver != TR_CKPT_VERSION) {
			snprintf(err, errlen, "%s: checkpoint version %u, this moe-train reads version %u", path, ver,
				 TR_CKPT_VERSION);
		} else if (memcpy(&h, c->buf + c->len - 8, 8), memcmp(c->buf + c->len - 16, TRAILER, 8) != 0 ||
			   tr_fnv1a64(TR_FNV_INIT, c->buf, c->len - 16) != h) {
			snprintf(err, errlen, "%s: checksum mismatch (torn or corrupt checkpoint)", path);
		} else if (walk(c, NULL, NULL, NULL) < 0) {
			snprintf(err, errlen, "%s: section table does not match the file size (corrupt checkpoint)", path);
		} else {
			rc = 0;
		}
	} else {
		snprintf(err, errlen, "cannot read checkpoint %s: %s", path, errno ? strerror(errno) : "short read");
	}
	fclose(f);
	if (rc == 0 && !(c->path = strdup(path))) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
	}
	if (rc != 0)
		tr_ckpt_close(c);
	return rc;
}

void tr_ckpt_close(struct tr_ckpt *c)
{
	free(c->buf);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

const void *tr_ckpt_find(const struct tr_ckpt *c, const char *name, uint64_t *n)
{
	const void *p = NULL;
	uint64_t sz = 0;
	walk(c, name, &p, &sz);
	if (n)
		*n = sz;
	return p;
}

int tr_ckpt_get(const struct tr_ckpt *c, const char *name, void *dst, uint64_t n, char *err, size_t errlen)
{
	uint64_t sz;
	const void *p = tr_ckpt_find(c, name, &sz);
	if (!p) {
		snprintf(err, errlen, "%s: no section \"%s\"", c->path, name);
		return -1;
	}
	if (sz != n) {
		snprintf(err, errlen, "%s: section \"%s\" holds %llu bytes, this run needs %llu", c->path, name,
			 (unsigned long long)sz, (unsigned long long)n);
		return -1;
	}
	memcpy(dst, p, n);
	return 0;
}

/* value of key in a "key=value\n" text, as a pointer + length; NULL when absent */
static const char *lookup(const char *txt, const char *key, size_t klen, size_t *vlen)
{
	for (const char *l = txt; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *eq = strchr(l, '='), *nl = strchr(l, '\n');
		if (!nl)
			nl = l + strlen(l);
		if (eq && eq < nl && (size_t)(eq - l) == klen && memcmp(l, key, klen) == 0) {
			*vlen = (size_t)(nl - eq - 1);
			return eq + 1;
		}
	}
	return NULL;
}

static int diff_one(const char *a, const char *b, const char *an, const char *bn, char *out, size_t outlen)
{
	for (const char *l = a; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		const char *eq = strchr(l, '='), *nl = strchr(l, '\n');
		if (!nl)
			nl = l + strlen(l);
		if (!eq || eq > nl)
			continue;
		size_t kl = (size_t)(eq - l), al = (size_t)(nl - eq - 1), bl = 0;
		const char *bv = lookup(b, l, kl, &bl);
		if (!bv || bl != al || memcmp(bv, eq + 1, al) != 0) {
			snprintf(out, outlen, "%.*s: %s %.*s, %s %.*s", (int)kl, l, an, (int)al, eq + 1, bn,
				 bv ? (int)bl : 5, bv ? bv : "unset");
			return 1;
		}
	}
	return 0;
}

int tr_ckpt_config_diff(const char *saved, const char *now, char *out, size_t outlen)
{
	if (diff_one(saved, now, "checkpoint has", "this run has", out, outlen))
		return 1;
	/* keys only this run has: report as this run's value vs the checkpoint's "unset" */
	return diff_one(now, saved, "this run has", "checkpoint has", out, outlen);
}
