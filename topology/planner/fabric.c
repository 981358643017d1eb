/* fabric.c - the fabric facts a site gives the planner (plugstack.conf fabric=, moetopo plan --oversub):
 * "oversub:N[,nic:GBS][,nvlink:GBS]".  With them the planner prices candidate layouts with simulate's
 * model at that oversubscription and bandwidths (plan_objective.c); without them it keeps the most
 * NVLink-local groups, as it always did. */
#include <stdlib.h>
#include <string.h>

#include "plan_int.h"

#define FABRIC_VALID "oversub:N (N >= 1), then optionally nic:GBS and nvlink:GBS (GB/s > 0), e.g. oversub:4,nic:50,nvlink:450"

int mt_fabric_parse(const char *text, struct mt_fabric *f, char *err, size_t errlen)
{
	struct mt_fabric v = {0, 0, 0};
	const char *s = text ? text : "";
	if (!*s)
		return mt_seterr(err, errlen, MT_EINVAL, "empty fabric description (valid: %s)", FABRIC_VALID);
	while (*s) {
		size_t n = strcspn(s, ",");
		const char *colon = memchr(s, ':', n);
		if (!colon)
			return mt_seterr(err, errlen, MT_EINVAL, "fabric item '%.*s' is not key:value (valid: %s)", (int)n, s,
					   FABRIC_VALID);
		size_t kl = (size_t)(colon - s);
		double *slot = kl == 7 && !strncmp(s, "oversub", 7) ? &v.oversub
			       : kl == 3 && !strncmp(s, "nic", 3)   ? &v.nic_gbs
			       : kl == 6 && !strncmp(s, "nvlink", 6) ? &v.nvlink_gbs
								     : NULL;
		if (!slot)
			return mt_seterr(err, errlen, MT_EINVAL, "unknown fabric key '%.*s' (valid: %s)", (int)kl, s,
					   FABRIC_VALID);
		if (*slot)
			return mt_seterr(err, errlen, MT_EINVAL, "fabric key '%.*s' given twice", (int)kl, s);
		char num[32], *end;
		size_t vl = n - kl - 1;
		if (!vl || vl >= sizeof(num))
			return mt_seterr(err, errlen, MT_EINVAL, "bad fabric value '%.*s' (valid: %s)", (int)n, s,
					   FABRIC_VALID);
		memcpy(num, colon + 1, vl);
		num[vl] = '\0';
		double x = strtod(num, &end);
		bool over = slot == &v.oversub;
		if (*end || !(over ? x >= 1 : x > 0) || x > 1e6)
			return mt_seterr(err, errlen, MT_EINVAL, "bad fabric value '%.*s' (valid: %s)", (int)n, s,
					   FABRIC_VALID);
		*slot = x;
		s += n;
		if (*s == ',' && !*++s)
			return mt_seterr(err, errlen, MT_EINVAL, "fabric description ends in ',' (valid: %s)", FABRIC_VALID);
	}
	if (!v.oversub)
		return mt_seterr(err, errlen, MT_EINVAL, "fabric description without oversub:N (valid: %s)", FABRIC_VALID);
	*f = v;
	return 0;
}

void mt_fabric_params(const struct mt_fabric *f, int route_groups, struct mt_sim_params *sp)
{
	mt_sim_default_params(sp);
	if (f->oversub >= 1)
		sp->oversub = f->oversub;
	if (f->nic_gbs > 0)
		sp->nic_gbs = f->nic_gbs;
	if (f->nvlink_gbs > 0)
		sp->nvlink_gbs = f->nvlink_gbs;
	sp->route_groups = route_groups;
}
