/* cli.h - the `moetopo` subcommands; cli_main.c dispatches to one file per command.
 * Each returns the process exit code: 0 ok, 1 runtime failure, 2 bad input or usage. */
#ifndef MT_CLI_H
#define MT_CLI_H
int mt_cli_show(int argc, char **argv);
int mt_cli_export(int argc, char **argv);
int mt_cli_plan(int argc, char **argv);
int mt_cli_simulate(int argc, char **argv);
#endif
