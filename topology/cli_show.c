/* cli_show.c - placeholder until the node work lands its commands. */
#include <stdio.h>
#include "cli.h"
int mt_cli_show(int argc, char **argv) { fprintf(stderr, "moetopo: show is not built yet\n"); return 1; }
int mt_cli_export(int argc, char **argv) { fprintf(stderr, "moetopo: export is not built yet\n"); return 1; }
