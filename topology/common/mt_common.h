/* mt_common.h - plumbing shared by libmoetopo's rooms (node model, planner) and the moetopo CLI:
 * one-line errors, string copies, a string -> int map.  Not installed, not part of the API. */
#ifndef MT_COMMON_H
#define MT_COMMON_H

#include <stddef.h>

/* printf-style error into err (may be NULL), newlines flattened to one line; returns code. */
int mt_seterr(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
char *mt_strdup(const char *s);

/* Open-addressing string -> int map.  Keys are borrowed: they must outlive the map. */
struct mt_strmap {
	const char **keys;
	int *vals;
	size_t cap, n;
};
int mt_strmap_init(struct mt_strmap *m, size_t expect);
/* Returns the existing value, or inserts val and returns it; MT_ENOMEM on failure. */
int mt_strmap_put(struct mt_strmap *m, const char *key, int val);
int mt_strmap_get(const struct mt_strmap *m, const char *key); /* -1 when absent */
void mt_strmap_free(struct mt_strmap *m);

#endif
