/* test_spec.c - the SPEC grammar: every key, defaults, canonical text, and one-line errors that name
 * the bad key or value and list the valid choices. */
#include <string.h>

#include "mt_plan.h"
#include "tap.h"

static int parse(const char *t, struct mt_spec *s, char *err)
{
	return mt_spec_parse(t, s, err, MT_ERRLEN);
}

int main(void)
{
	struct mt_spec s;
	char err[MT_ERRLEN], buf[256];

	TAP_INT(parse(NULL, &s, err), 0, "NULL spec is auto");
	TAP_INT(s.mode, MT_MODE_AUTO, "NULL -> MT_MODE_AUTO");
	TAP_INT(parse("auto", &s, err), 0, "auto parses");
	TAP_INT(s.tp, 1, "tp defaults to 1");
	TAP_INT(s.pp, 1, "pp defaults to 1");
	TAP_INT(s.ep, 0, "ep defaults to 0 (auto)");
	TAP_INT(parse("off", &s, err), 0, "off parses");
	TAP_INT(s.mode, MT_MODE_OFF, "off -> MT_MODE_OFF");
	TAP_INT(parse("help", &s, err), 0, "help parses");
	TAP_INT(s.mode, MT_MODE_HELP, "help -> MT_MODE_HELP");

	TAP_INT(parse("ep=32,tp=2,pp=4,experts=256,route-groups=4,gpus=single,cpu=none,export=torch,verbose", &s, err),
		0, "every key parses");
	TAP_INT(s.mode, MT_MODE_SPEC, "key=value -> MT_MODE_SPEC");
	TAP_INT(s.ep, 32, "ep");
	TAP_INT(s.tp, 2, "tp");
	TAP_INT(s.pp, 4, "pp");
	TAP_INT(s.experts, 256, "experts");
	TAP_INT(s.route_groups, 4, "route-groups");
	TAP_INT(s.gpus, MT_GPUS_SINGLE, "gpus=single");
	TAP_INT(s.cpu, MT_CPU_NONE, "cpu=none");
	TAP_INT(s.export_, MT_EXPORT_TORCH, "export=torch");
	tap_ok(s.verbose, "bare verbose sets verbose");
	mt_spec_format(&s, buf, sizeof(buf));
	TAP_STR(buf, "ep=32,tp=2,pp=4,experts=256,route-groups=4,gpus=single,cpu=none,export=torch,verbose",
		"canonical text lists every non-default key in grammar order");
	struct mt_spec s2;
	TAP_INT(parse(buf, &s2, err), 0, "canonical text parses back");
	tap_ok(!memcmp(&s, &s2, sizeof(s)), "format/parse round trip gives the same spec");

	TAP_INT(parse("ep=auto,verbose=0", &s, err), 0, "ep=auto and verbose=0");
	TAP_INT(s.ep, 0, "ep=auto -> 0");
	tap_ok(!s.verbose, "verbose=0 clears verbose");
	mt_spec_format(&s, buf, sizeof(buf));
	TAP_STR(buf, "ep=auto", "defaults format as ep=auto");
	TAP_INT(parse("gpus=all,cpu=numa,export=moe", &s, err), 0, "default values are accepted");

	/* errors: one line naming the problem and the valid choices; the output spec is untouched */
	struct mt_spec keep;
	mt_spec_default(&keep);
	keep.ep = 7;
	s = keep;
	TAP_INT(parse("ep=32,bogus=1", &s, err), MT_EINVAL, "unknown key is an error");
	tap_ok(strstr(err, "unknown key 'bogus'") && strstr(err, "route-groups"), "names the key and the valid keys: %s", err);
	tap_ok(!strchr(err, '\n'), "error is one line");
	TAP_INT(s.ep, 7, "spec untouched on error");
	TAP_INT(parse("ep=0", &s, err), MT_EINVAL, "ep=0 is an error");
	tap_ok(strstr(err, "ep=0") && strstr(err, "auto"), "ep error lists valid values: %s", err);
	TAP_INT(parse("ep=-4", &s, err), MT_EINVAL, "negative ep is an error");
	TAP_INT(parse("ep=4x", &s, err), MT_EINVAL, "trailing junk is an error");
	TAP_INT(parse("tp=", &s, err), MT_EINVAL, "empty value is an error");
	TAP_INT(parse("ep", &s, err), MT_EINVAL, "key without value is an error");
	tap_ok(strstr(err, "needs a value") != NULL, "says the key needs a value: %s", err);
	TAP_INT(parse("gpus=some", &s, err), MT_EINVAL, "bad gpus value");
	tap_ok(strstr(err, "all, single") != NULL, "lists all, single: %s", err);
	TAP_INT(parse("cpu=core", &s, err), MT_EINVAL, "bad cpu value");
	tap_ok(strstr(err, "numa, none") != NULL, "lists numa, none: %s", err);
	TAP_INT(parse("export=mpi", &s, err), MT_EINVAL, "bad export value");
	tap_ok(strstr(err, "moe, torch") != NULL, "lists moe, torch: %s", err);
	TAP_INT(parse("verbose=maybe", &s, err), MT_EINVAL, "bad verbose value");
	TAP_INT(parse("ep=4,ep=8", &s, err), MT_EINVAL, "duplicate key is an error");
	tap_ok(strstr(err, "twice") != NULL, "says twice: %s", err);
	TAP_INT(parse("ep=4,,tp=2", &s, err), MT_EINVAL, "empty item is an error");
	TAP_INT(parse("ep=4,", &s, err), MT_EINVAL, "trailing comma is an error");
	TAP_INT(parse("ep=4,off", &s, err), MT_EINVAL, "off inside a list is an error");
	TAP_INT(parse("EP=4", &s, err), MT_EINVAL, "keys are lower case");
	TAP_INT(parse("experts=99999999999", &s, err), MT_EINVAL, "overflowing number is an error");

	const char *h = mt_spec_help();
	tap_ok(h && strstr(h, "route-groups=M") && strstr(h, "off") && strstr(h, "ep=N"), "help text documents the grammar");
	return tap_done();
}
