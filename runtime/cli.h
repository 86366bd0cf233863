/* runtime/cli.h — the rtvla subcommands. Each returns the process exit status
 * (0 ok, 1 runtime failure, 2 usage error) and prints its own errors to stderr. */
#ifndef RTV_CLI_H
#define RTV_CLI_H

int rtv_cmd_run(int argc, char **argv);    /* runtime/cmd_run.c */
int rtv_cmd_infer(int argc, char **argv);  /* runtime/cmd_infer.c */
int rtv_cmd_model(int argc, char **argv);  /* runtime/cmd_model.c: model init */
int rtv_cmd_check(int argc, char **argv);  /* runtime/cmd_check.c */
int rtv_cmd_bench(int argc, char **argv);  /* runtime/cmd_bench.c */
int rtv_cmd_trace(int argc, char **argv);  /* runtime/cmd_trace.c */
int rtv_cmd_config(int argc, char **argv); /* runtime/config.c: print the config table */

#endif
