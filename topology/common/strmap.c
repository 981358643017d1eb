/* strmap.c - a small string -> int hash map: node names and domain names are looked up once per
 * node, so plans for 100k GPUs stay linear. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mt_common.h"
#include "mt_node.h" /* MT_ENOMEM */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int mt_strmap_init(struct mt_strmap *m, size_t expect)
{
	size_t cap = 16;
	while (cap < expect * 2 + 2)
		cap *= 2;
	m->keys = calloc(cap, sizeof(*m->keys));
	m->vals = malloc(cap * sizeof(*m->vals));
	m->cap = cap;
	m->n = 0;
	if (!m->keys || !m->vals) {
		mt_strmap_free(m);
		return MT_ENOMEM;
	}
	return 0;
}

static int grow(struct mt_strmap *m)
{
	struct mt_strmap g;
	if (mt_strmap_init(&g, m->cap))
		return MT_ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i])
			mt_strmap_put(&g, m->keys[i], m->vals[i]);
	mt_strmap_free(m);
	*m = g;
	return 0;
}

int mt_strmap_put(struct mt_strmap *m, const char *key, int val)
{
	if ((m->n + 1) * 2 > m->cap && grow(m))
		return MT_ENOMEM;
	size_t i = (size_t)hash(key) & (m->cap - 1);
	while (m->keys[i]) {
		if (!strcmp(m->keys[i], key))
			return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->n++;
	return val;
}

int mt_strmap_get(const struct mt_strmap *m, const char *key)
{
	if (!m->cap)
		return -1;
	size_t i = (size_t)hash(key) & (m->cap - 1);
	while (m->keys[i]) {
		if (!strcmp(m->keys[i], key))
			return m->vals[i];
		i = (i + 1) & (m->cap - 1);
	}
	return -1;
}

void mt_strmap_free(struct mt_strmap *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = m->n = 0;
}

