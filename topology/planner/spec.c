/* spec.c - the SPEC grammar shared by the plugin, `moetopo plan` and `moe-launch`.
 *
 * SPEC is "off", "auto", "help", or a comma list of key=value.  Defined once here so every entry
 * point accepts exactly the same text and rejects bad text with the same one-line message.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "mt_plan.h"
#include "mt_common.h"

#define SPEC_KEYS "ep, tp, pp, experts, route-groups, gpus, cpu, export, verbose"

void mt_spec_default(struct mt_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->mode = MT_MODE_AUTO;
	s->tp = 1;
	s->pp = 1;
	s->gpus = MT_GPUS_ALL;
	s->cpu = MT_CPU_NUMA;
	s->export_ = MT_EXPORT_MOE;
}

/* A positive decimal integer no larger than max; "ep=auto" is handled by the caller. */
static int parse_count(const char *v, int min, int max, int *out)
{
	char *end;
	if (!*v || *v == '+' || *v == '-' || *v == ' ')
		return -1;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno || *end || x < min || x > max)
		return -1;
	*out = (int)x;
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *yes[] = {"1", "yes", "true", "on"}, *no[] = {"0", "no", "false", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (!strcmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* One key=value item; `seen` catches a key given twice (ambiguous, so refused). */
static int parse_item(const char *key, const char *val, struct mt_spec *s, unsigned *seen, char *err,
		      size_t errlen)
{
	static const char *names[] = {"ep", "tp", "pp", "experts", "route-groups", "gpus", "cpu", "export",
				      "verbose"};
	size_t k;
	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
		if (!strcmp(key, names[k]))
			break;
	if (k == sizeof(names) / sizeof(names[0]))
		return mt_seterr(err, errlen, MT_EINVAL, "unknown key '%s' in spec (valid keys: %s)", key, SPEC_KEYS);
	if (*seen & (1u << k))
		return mt_seterr(err, errlen, MT_EINVAL, "key '%s' given twice in spec", key);
	*seen |= 1u << k;
	if (!val && k != 8)
		return mt_seterr(err, errlen, MT_EINVAL, "key '%s' needs a value (%s=VALUE)", key, key);

	switch (k) {
	case 0:
		if (!strcmp(val, "auto")) {
			s->ep = 0;
			return 0;
		}
		if (parse_count(val, 1, MT_MAX_TASKS, &s->ep))
			return mt_seterr(err, errlen, MT_EINVAL, "bad value ep=%s (valid: a positive integer or auto)", val);
		return 0;
	case 1:
		if (parse_count(val, 1, 1 << 16, &s->tp))
			return mt_seterr(err, errlen, MT_EINVAL, "bad value tp=%s (valid: a positive integer, default 1)", val);
		return 0;
	case 2:
		if (parse_count(val, 1, 1 << 16, &s->pp))
			return mt_seterr(err, errlen, MT_EINVAL, "bad value pp=%s (valid: a positive integer, default 1)", val);
		return 0;
	case 3:
		if (parse_count(val, 1, 1 << 24, &s->experts))
			return mt_seterr(err, errlen, MT_EINVAL, "bad value experts=%s (valid: a positive integer)", val);
		return 0;
	case 4:
		if (parse_count(val, 1, 1 << 24, &s->route_groups))
			return mt_seterr(err, errlen, MT_EINVAL, "bad value route-groups=%s (valid: a positive integer)", val);
		return 0;
	case 5:
		if (!strcmp(val, "all"))
			s->gpus = MT_GPUS_ALL;
		else if (!strcmp(val, "single"))
			s->gpus = MT_GPUS_SINGLE;
		else
			return mt_seterr(err, errlen, MT_EINVAL, "bad value gpus=%s (valid: all, single)", val);
		return 0;
	case 6:
		if (!strcmp(val, "numa"))
			s->cpu = MT_CPU_NUMA;
		else if (!strcmp(val, "none"))
			s->cpu = MT_CPU_NONE;
		else
			return mt_seterr(err, errlen, MT_EINVAL, "bad value cpu=%s (valid: numa, none)", val);
		return 0;
	case 7:
		if (!strcmp(val, "moe"))
			s->export_ = MT_EXPORT_MOE;
		else if (!strcmp(val, "torch"))
			s->export_ = MT_EXPORT_TORCH;
		else
			return mt_seterr(err, errlen, MT_EINVAL, "bad value export=%s (valid: moe, torch)", val);
		return 0;
	default:
		if (!val) {
			s->verbose = true;
			return 0;
		}
		if (parse_bool(val, &s->verbose))
			return mt_seterr(err, errlen, MT_EINVAL, "bad value verbose=%s (valid: verbose, verbose=1|0|yes|no)", val);
		return 0;
	}
}

int mt_spec_parse(const char *text, struct mt_spec *s, char *err, size_t errlen)
{
	struct mt_spec tmp;
	mt_spec_default(&tmp);
	if (err && errlen)
		err[0] = '\0';
	if (!text || !*text || !strcmp(text, "auto")) {
		*s = tmp;
		return 0;
	}
	if (!strcmp(text, "off") || !strcmp(text, "help")) {
		tmp.mode = text[0] == 'o' ? MT_MODE_OFF : MT_MODE_HELP;
		*s = tmp;
		return 0;
	}
	size_t n = strlen(text);
	if (n > 4096)
		return mt_seterr(err, errlen, MT_EINVAL, "spec is too long (%zu characters, at most 4096)", n);
	if (text[0] == ',' || text[n - 1] == ',' || strstr(text, ",,"))
		return mt_seterr(err, errlen, MT_EINVAL, "empty item in spec '%s' (write key=value,key=value)", text);
	char buf[4097];
	memcpy(buf, text, n + 1);
	tmp.mode = MT_MODE_SPEC;
	unsigned seen = 0;
	char *save = NULL;
	for (char *item = buf;; item = NULL) {
		char *tok = strtok_r(item, ",", &save);
		if (!tok)
			break;
		char *eq = strchr(tok, '=');
		if (eq)
			*eq = '\0';
		if (!*tok)
			return mt_seterr(err, errlen, MT_EINVAL, "empty key in spec '%s' (valid keys: %s)", text, SPEC_KEYS);
		if (!strcmp(tok, "off") || !strcmp(tok, "auto") || !strcmp(tok, "help"))
			return mt_seterr(err, errlen, MT_EINVAL, "'%s' must be the whole spec, not one item of '%s'", tok, text);
		int rc = parse_item(tok, eq ? eq + 1 : NULL, &tmp, &seen, err, errlen);
		if (rc)
			return rc;
	}
	/* each size alone is bounded; their product is the smallest world they fit, and must fit a job */
	long long tp_pp = (long long)tmp.tp * tmp.pp, all = tp_pp * (tmp.ep ? tmp.ep : 1);
	if (tp_pp > MT_MAX_TASKS)
		return mt_seterr(err, errlen, MT_EINVAL,
				 "tp=%d x pp=%d = %lld is more than the %d tasks a job can have (tp x pp must "
				 "divide the number of tasks)", tmp.tp, tmp.pp, tp_pp, MT_MAX_TASKS);
	if (all > MT_MAX_TASKS)
		return mt_seterr(err, errlen, MT_EINVAL,
				 "ep=%d x tp=%d x pp=%d = %lld is more than the %d tasks a job can have (ep x tp x "
				 "pp must divide the number of tasks)", tmp.ep, tmp.tp, tmp.pp, all, MT_MAX_TASKS);
	*s = tmp;
	return 0;
}

int mt_spec_format(const struct mt_spec *s, char *buf, size_t len)
{
	int n;
	if (s->mode == MT_MODE_OFF)
		n = snprintf(buf, len, "off");
	else if (s->mode == MT_MODE_HELP)
		n = snprintf(buf, len, "help");
	else if (s->mode == MT_MODE_AUTO)
		n = snprintf(buf, len, "auto");
	else {
		char tmp[256];
		size_t o = 0;
		/* ep always comes first so a spec never formats as the empty string */
		if (s->ep)
			o += snprintf(tmp + o, sizeof(tmp) - o, "ep=%d", s->ep);
		else
			o += snprintf(tmp + o, sizeof(tmp) - o, "ep=auto");
		if (s->tp != 1)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",tp=%d", s->tp);
		if (s->pp != 1)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",pp=%d", s->pp);
		if (s->experts)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",experts=%d", s->experts);
		if (s->route_groups)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",route-groups=%d", s->route_groups);
		if (s->gpus == MT_GPUS_SINGLE)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",gpus=single");
		if (s->cpu == MT_CPU_NONE)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",cpu=none");
		if (s->export_ == MT_EXPORT_TORCH)
			o += snprintf(tmp + o, sizeof(tmp) - o, ",export=torch");
		if (s->verbose)
			snprintf(tmp + o, sizeof(tmp) - o, ",verbose");
		n = snprintf(buf, len, "%s", tmp);
	}
	return n < 0 || (size_t)n >= len ? MT_EINVAL : n;
}

const char *mt_spec_help(void)
{
	return "SPEC is one of:\n"
	       "  off                 leave the job exactly as Slurm laid it out\n"
	       "  auto                plan with defaults: EP groups as large as every NVLink domain allows\n"
	       "  help                print this text\n"
	       "  KEY=VALUE,...       plan with these settings:\n"
	       "    ep=N|auto         expert-parallel group size (must divide world/(tp*pp)); auto = largest\n"
	       "                      size that keeps every group inside one NVLink domain\n"
	       "    tp=T              tensor-parallel size, TP groups stay inside a node (default 1)\n"
	       "    pp=P              pipeline-parallel size (default 1); data-parallel size = world/(tp*pp)\n"
	       "    experts=E         routed experts, spread evenly over each EP group (E divisible by ep)\n"
	       "    route-groups=M    group-limited routing: a token reaches at most M NVLink domains\n"
	       "    gpus=all|single   each task sees all the node's GPUs (default) or only its own\n"
	       "    cpu=numa|none     bind each task to cores of its GPU's NUMA node (default) or not at all\n"
	       "    export=moe|torch  export MOE_* variables (default) or also RANK/LOCAL_RANK/WORLD_SIZE\n"
	       "    verbose[=0|1]     log the plan\n"
	       "example: ep=32,experts=256,route-groups=4\n";
}
