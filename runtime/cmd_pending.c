/* Weak fallbacks for subcommands whose files have not landed yet; removed once all exist. */
#include <stdio.h>

#include "runtime/cli.h"

#define PENDING(fn, name)                                                                 \
    __attribute__((weak)) int fn(int argc, char **argv)                                   \
    {                                                                                     \
        (void)argc; (void)argv;                                                           \
        fprintf(stderr, "rtvla: '%s' is not in this build yet\n", name);                  \
        return 2;                                                                         \
    }
PENDING(rtv_cmd_run, "run")
PENDING(rtv_cmd_infer, "infer")
PENDING(rtv_cmd_model, "model")
PENDING(rtv_cmd_check, "check")
PENDING(rtv_cmd_trace, "trace")
PENDING(rtv_cmd_config, "config")
#include "runtime/bench.h"
PENDING(rtv_bench_bus, "bench bus")
PENDING(rtv_bench_loop, "bench loop")
PENDING(rtv_bench_model, "bench model")
PENDING(rtv_bench_split, "bench split")
