/* node_load.c - mt_node_load_file: reads a topology file and hands it to the hwloc or NCCL reader
 * according to its root element (<topology> = hwloc XML, <system> = NCCL topology XML). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "node_int.h"

#define MAX_FILE (64L << 20) /* real exports are < 1 MiB; anything this big is not a topology */

/* Skips the prolog (BOM, <?xml?>, comments, DOCTYPE, blanks) and names the root element. */
static const char *root_element(const char *p, char *name, size_t len)
{
	if (!strncmp(p, "\xef\xbb\xbf", 3))
		p += 3;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!strncmp(p, "<?", 2) || !strncmp(p, "<!DOCTYPE", 9)) {
			const char *e = strchr(p, '>');
			if (!e)
				return NULL;
			p = e + 1;
		} else if (!strncmp(p, "<!--", 4)) {
			const char *e = strstr(p + 4, "-->");
			if (!e)
				return NULL;
			p = e + 3;
		} else
			break;
	}
	if (*p != '<')
		return NULL;
	size_t i = 0;
	for (p++; (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_'; p++)
		if (i + 1 < len)
			name[i++] = *p;
	name[i] = 0;
	return i ? p : NULL;
}

int mt_node_load_file(const char *path, struct mt_node **out, char *err, size_t errlen)
{
	if (out)
		*out = NULL;
	if (!path || !*path || !out)
		return mt_seterr(err, errlen, MT_EINVAL, "no topology file given");
	FILE *f = fopen(path, "rb");
	if (!f)
		return mt_seterr(err, errlen, errno == ENOENT ? MT_ENOENT : MT_EPERM, "%s: %s", path,
				 strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return mt_seterr(err, errlen, MT_EPARSE, "%s: not a regular file", path);
	}
	if (st.st_size > MAX_FILE) {
		fclose(f);
		return mt_seterr(err, errlen, MT_EPARSE, "%s: too large for a topology file (%lld bytes)", path,
				 (long long)st.st_size);
	}
	size_t len = (size_t)st.st_size;
	char *buf = malloc(len + 1);
	if (!buf) {
		fclose(f);
		return mt_seterr(err, errlen, MT_ENOMEM, "out of memory");
	}
	size_t got = fread(buf, 1, len, f);
	fclose(f);
	if (got != len) {
		free(buf);
		return mt_seterr(err, errlen, MT_EPARSE, "%s: read error", path);
	}
	buf[len] = 0;
	if (memchr(buf, 0, len)) {
		free(buf);
		return mt_seterr(err, errlen, MT_EPARSE, "%s: binary data, not an XML topology", path);
	}
	char root[32];
	int rc;
	if (!root_element(buf, root, sizeof(root)))
		rc = mt_seterr(err, errlen, MT_EPARSE, "%s: not an XML file (valid: hwloc XML, NCCL topology XML)",
			       path);
	else if (!strcmp(root, "topology"))
		rc = mt_node_from_hwloc_xml(buf, len, path, out, err, errlen);
	else if (!strcmp(root, "system"))
		rc = mt_node_from_nccl_xml(buf, len, path, out, err, errlen);
	else
		rc = mt_seterr(err, errlen, MT_EPARSE,
			       "%s: unknown root element <%s> (valid: <topology> of hwloc, <system> of NCCL)", path, root);
	free(buf);
	return rc;
}
