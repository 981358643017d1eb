/* fuzz_spec.c - the SPEC grammar (mt_spec_parse): whatever a user writes after --moe-topology=.
 * A parsed spec must format back into text that parses to the same spec. */
#include "fuzz.h"
#include "mt_plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size), err[MT_ERRLEN], buf[512], err2[MT_ERRLEN];
	struct mt_spec s, t;
	if (mt_spec_parse(text, &s, err, sizeof(err)) == 0) {
		if (mt_spec_format(&s, buf, sizeof(buf)) < 0)
			abort();
		if (mt_spec_parse(buf, &t, err2, sizeof(err2)) != 0 || memcmp(&s, &t, sizeof(s)) != 0)
			abort(); /* the canonical text must mean the same spec */
	} else if (!err[0] || strchr(err, '\n'))
		abort(); /* an error is always one line */
	free(text);
	return 0;
}
