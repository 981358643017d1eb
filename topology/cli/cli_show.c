/* cli_show.c - `moetopo show` (GPU/NIC matrix, affinity, rails) and `moetopo export` (hwloc XML). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mt_node.h"

static void show_usage(FILE *f)
{
	fprintf(f,
		"usage: moetopo show [--input FILE] [--json] [--no-nvml] [--no-verbs]\n"
		"\n"
		"Prints the GPU/NIC matrix (like `nvidia-smi topo -m`, with its legend), the CPU affinity and\n"
		"NUMA node of each GPU, and the rail table (GPU -> RDMA NIC(s), rail index).\n"
		"\n"
		"  -i, --input FILE  read an hwloc XML (lstopo/moetopo export) or NCCL topology XML\n"
		"                    (NCCL_TOPO_FILE format) instead of the live machine\n"
		"  -j, --json        print the documented JSON form (doc/json-schema.md)\n"
		"      --no-nvml     live machine: do not load NVML (NVLink is then reported unknown)\n"
		"      --no-verbs    live machine: do not read RDMA port details from sysfs\n"
		"  -h, --help        this help\n");
}

int mt_cli_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{"input", required_argument, NULL, 'i'}, {"json", no_argument, NULL, 'j'},
		{"no-nvml", no_argument, NULL, 'N'},     {"no-verbs", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
	};
	const char *input = NULL;
	int json = 0, c;
	unsigned flags = 0;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":i:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'i': input = optarg; break;
		case 'j': json = 1; break;
		case 'N': flags |= MT_LOAD_NO_NVML; break;
		case 'V': flags |= MT_LOAD_NO_VERBS; break;
		case 'h': show_usage(stdout); return 0;
		case ':':
			fprintf(stderr, "moetopo show: option '%s' needs a value (see moetopo show --help)\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "moetopo show: unknown option '%s' (valid: --input FILE, --json, --no-nvml, "
					"--no-verbs, --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moetopo show: unexpected argument '%s' (valid: --input FILE, --json)\n", argv[optind]);
		return 2;
	}
	struct mt_node *n = NULL;
	char err[MT_ERRLEN];
	int rc = input ? mt_node_load_file(input, &n, err, sizeof(err)) : mt_node_load_live(flags, &n, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "moetopo show: %s\n", err);
		/* a bad file is bad input; a live machine that cannot be read is a runtime failure */
		return input || rc == MT_EINVAL ? 2 : 1;
	}
	if (json)
		mt_node_print_json(n, stdout);
	else
		mt_node_print(n, stdout);
	mt_node_free(n);
	if (fflush(stdout) != 0) {
		perror("moetopo show: stdout");
		return 1;
	}
	return 0;
}

static void export_usage(FILE *f)
{
	fprintf(f,
		"usage: moetopo export --output FILE\n"
		"\n"
		"Writes this machine's hwloc XML topology with all I/O devices (GPUs, NICs, PCI bridges), for\n"
		"admins to cache per node; the SPANK plugin and `moetopo show --input` read such files.\n"
		"\n"
		"  -o, --output FILE  where to write (written to a temporary name, then renamed)\n"
		"  -h, --help         this help\n");
}

int mt_cli_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
	};
	const char *output = NULL;
	int c;
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': output = optarg; break;
		case 'h': export_usage(stdout); return 0;
		case ':':
			fprintf(stderr, "moetopo export: option '%s' needs a value (see moetopo export --help)\n",
				argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "moetopo export: unknown option '%s' (valid: --output FILE, --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "moetopo export: unexpected argument '%s' (valid: --output FILE)\n", argv[optind]);
		return 2;
	}
	if (!output || !*output) {
		fprintf(stderr, "moetopo export: --output FILE is required\n");
		return 2;
	}
	char err[MT_ERRLEN];
	if (mt_node_export_live(output, err, sizeof(err)) < 0) {
		fprintf(stderr, "moetopo export: %s\n", err);
		return 1;
	}
	return 0;
}
