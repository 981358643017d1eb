/* fuzz_plugstack.c - the plugin's plugstack.conf arguments (mtp_config_parse), compiled in directly as
 * tests/slurm/test_plugin_parse.c does.  Input: one argument per line. */
#include "fuzz.h"
#include "config.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_str(data, size), *av[32];
	int ac = 0;
	for (char *s = text, *save = NULL, *a; ac < 32 && (a = strtok_r(s, "\n", &save)); s = NULL)
		av[ac++] = a;
	struct mtp_config c;
	int rc = mtp_config_parse(ac, av, &c);
	if (rc != 0 && (!c.error[0] || c.default_spec || c.domains || c.topology || c.strict))
		abort(); /* an error leaves nothing half-applied and says why */
	mtp_config_free(&c);
	free(text);
	return 0;
}
