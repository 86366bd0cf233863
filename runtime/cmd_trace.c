/* `rtvla trace RUN_DIR [-o FILE]`: the run's telemetry as a Chrome-trace JSON (one track per
 * thread, one slice per record, values and flags as args); open it in ui.perfetto.dev or
 * chrome://tracing. Default output: RUN_DIR/trace.json. */
#include <stdio.h>
#include <string.h>

#include "runtime/cli.h"
#include "runtime/status.h"
#include "runtime/telemetry.h"

int rtv_cmd_trace(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rtvla trace RUN_DIR [-o FILE]   (default FILE: RUN_DIR/trace.json)\n");
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "rtvla trace: unexpected argument '%s'\n"
                            "usage: rtvla trace RUN_DIR [-o FILE]\n", argv[i]);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: rtvla trace RUN_DIR [-o FILE]\n");
        return 2;
    }
    char path[1024];
    if (!out) {
        snprintf(path, sizeof(path), "%s/trace.json", dir);
        out = path;
    }
    rtv_tel_file f;
    if (rtv_tel_file_read(&f, dir)) {
        fprintf(stderr, "rtvla trace: %s\n", rtv_last_error());
        return 1;
    }
    int st = rtv_tel_trace_write(&f, out);
    if (st) {
        fprintf(stderr, "rtvla trace: %s\n", rtv_last_error());
    } else {
        printf("%s: %llu events on %u threads (%llu records dropped during the run)\n", out,
               (unsigned long long)f.h.n_records, f.h.n_threads,
               (unsigned long long)f.h.n_dropped);
    }
    rtv_tel_file_free(&f);
    return st ? 1 : 0;
}
