/* rtvla bench KIND ...: dispatches to the benchmarks of bench.h. */
#include <stdio.h>
#include <string.h>

#include "runtime/bench.h"
#include "runtime/cli.h"

int rtv_cmd_bench(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } kinds[] = {
        { "bus", rtv_bench_bus },
        { "loop", rtv_bench_loop },
        { "model", rtv_bench_model },
        { "split", rtv_bench_split },
    };
    if (argc >= 2)
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            if (!strcmp(argv[1], kinds[i].name)) return kinds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "usage: rtvla bench bus|loop|model|split [options]\n");
    return 2;
}
