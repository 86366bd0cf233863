/* rtvla — real-time VLA runtime. main() only dispatches to the subcommands of cli.h. */
#include <stdio.h>
#include <string.h>

#include "runtime/cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *doc;
} cmds[] = {
    { "run", rtv_cmd_run, "run the policy on the robot: -c CONFIG --task TEXT [--duration S]" },
    { "infer", rtv_cmd_infer, "one forward pass: -c CONFIG --image NAME=FILE --state ... --task ..." },
    { "model", rtv_cmd_model, "model init --preset NAME --seed N -o DIR: write a seeded checkpoint" },
    { "check", rtv_cmd_check, "check servos, cameras, permissions, RT limits, GPU: -c CONFIG" },
    { "bench", rtv_cmd_bench, "benchmarks: bench bus | loop | model | split" },
    { "trace", rtv_cmd_trace, "trace RUN_DIR: write a Chrome-trace JSON of a run" },
    { "config", rtv_cmd_config, "config [-c CONFIG] [--set k=v]: print every config key and value" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: rtvla COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].doc);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "rtvla: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
