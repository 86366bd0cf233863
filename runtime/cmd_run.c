/* `rtvla run -c CONFIG --task "..." [--duration S] [--set key=value]...`: one robot run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli.h"
#include "runtime/config.h"
#include "runtime/run.h"
#include "runtime/status.h"

#define MAX_SETS 64

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rtvla run [-c CONFIG] --task TEXT [--duration S] [--set key.path=value]...\n"
            "  -c CONFIG      YAML config (default: the embedded default, configs/sim.yaml)\n"
            "  --task TEXT    the instruction for the policy\n"
            "  --duration S   stop after S seconds (default: run until Ctrl-C)\n"
            "  --set K=V      override one config key (rtvla config lists them)\n"
            "  --no-status    no status line\n"
            "Ctrl-C: hold, then robot.torque_on_exit; a second Ctrl-C: torque off now.\n");
}

int rtv_cmd_run(int argc, char **argv)
{
    const char *path = NULL, *task = NULL;
    const char *sets[MAX_SETS];
    int n_sets = 0, status = -1;
    double duration = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-status")) {
            status = 0;
            continue;
        } else if (!v) {
            fprintf(stderr, "rtvla run: option '%s' needs a value\n", a);
            usage(stderr);
            return 2;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            path = v;
        } else if (!strcmp(a, "--task")) {
            task = v;
        } else if (!strcmp(a, "--duration")) {
            char *end;
            duration = strtod(v, &end);
            if (*end || !(duration > 0 && duration < 1e7)) {
                fprintf(stderr, "rtvla run: --duration: expected seconds > 0, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--set")) {
            if (n_sets == MAX_SETS) {
                fprintf(stderr, "rtvla run: more than %d --set options\n", MAX_SETS);
                return 2;
            }
            sets[n_sets++] = v;
        } else {
            fprintf(stderr, "rtvla run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!task || !*task) {
        fprintf(stderr, "rtvla run: --task \"...\" is required\n");
        usage(stderr);
        return 2;
    }
    rtv_config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        fprintf(stderr, "rtvla run: out of memory\n");
        return 1;
    }
    if (rtv_config_load(cfg, path, sets, n_sets)) {
        fprintf(stderr, "rtvla run: %s\n", rtv_last_error());
        free(cfg);
        return 2;
    }
    rtv_run_opts o = { .task = task, .duration_s = duration, .signals = 1, .status_line = status };
    rtv_run_result res;
    int st = rtv_run_main(cfg, &o, &res);
    int rc = 0;
    if (st) {
        fprintf(stderr, "rtvla run: %s\n", rtv_last_error());
        rc = 1;
    } else if (res.end == RTV_RUN_END_FAULT) {
        fprintf(stderr, "rtvla run: stopped safely after a fault: %s\n", res.end_reason);
        rc = 1;
    }
    if (res.run_dir[0]) printf("run folder: %s\n", res.run_dir);
    free(cfg);
    return rc;
}
