/* runtime/cmd_infer.c — `rtvla infer`: one encode + one action cycle, the chunk as JSON.
 *
 *   rtvla infer -c CONFIG [--set key=value]... --image NAME=FILE ... --state v1,v2,...
 *               [--task "..."] [--seed N]
 * NAME is a camera name of the config (cameras[].name); every camera needs an image (PPM or
 * JPEG). Output (stdout): {"chunk": [[robot_dof floats] x chunk], "n_prefix": N,
 * "timing_ms": {"encode": ms, "act": ms}}. Errors name the flag or file; exit 2 for usage,
 * 1 for a runtime failure.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/cli.h"
#include "runtime/config.h"
#include "runtime/policy.h"
#include "runtime/status.h"

#define MAX_SETS 64

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int usage(void)
{
    fprintf(stderr, "usage: rtvla infer -c CONFIG [--set key=value]... --image NAME=FILE ...\n"
                    "                   --state v1,v2,... [--task \"...\"] [--seed N]\n");
    return 2;
}

/* "v1,v2,..." -> out[max]; returns the count or -1 (message printed). */
static int parse_floats(const char *s, float *out, int max)
{
    int n = 0;
    const char *q = s;
    while (*q) {
        char *end;
        errno = 0;
        double v = strtod(q, &end);
        if (end == q || errno || !isfinite(v) || (*end && *end != ',')) {
            fprintf(stderr, "rtvla infer: --state: expected comma-separated numbers, got '%s'\n",
                    s);
            return -1;
        }
        if (n == max) {
            fprintf(stderr, "rtvla infer: --state: more than %d values\n", max);
            return -1;
        }
        out[n++] = (float)v;
        q = *end ? end + 1 : end;
        if (*end && !*q) {
            fprintf(stderr, "rtvla infer: --state: trailing ',' in '%s'\n", s);
            return -1;
        }
    }
    return n;
}

int rtv_cmd_infer(int argc, char **argv)
{
    const char *cfg_path = NULL, *task = "", *state_arg = NULL;
    const char *sets[MAX_SETS] = {0}, *images[RTV_MAX_CAMERAS * 2] = {0};
    int n_sets = 0, n_images = 0, have_seed = 0, ret = 1;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            fprintf(stderr, "rtvla infer: %s needs a value\n", a);
            return usage();
        }
        i++;
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            cfg_path = v;
        } else if (!strcmp(a, "--set")) {
            if (n_sets == MAX_SETS) {
                fprintf(stderr, "rtvla infer: more than %d --set\n", MAX_SETS);
                return 2;
            }
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--image")) {
            if (n_images == (int)(sizeof(images) / sizeof(images[0]))) {
                fprintf(stderr, "rtvla infer: too many --image\n");
                return 2;
            }
            images[n_images++] = v;
        } else if (!strcmp(a, "--state")) {
            state_arg = v;
        } else if (!strcmp(a, "--task")) {
            task = v;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 0);
            if (!*v || *end || errno || *v == '-') {
                fprintf(stderr, "rtvla infer: --seed: expected an unsigned integer, got '%s'\n", v);
                return 2;
            }
            have_seed = 1;
        } else {
            fprintf(stderr, "rtvla infer: unknown option '%s'\n", a);
            return usage();
        }
    }
    if (!state_arg) {
        fprintf(stderr, "rtvla infer: --state is required\n");
        return usage();
    }

    static rtv_config cfg; /* large: keep it off the stack */
    if (rtv_config_load(&cfg, cfg_path, sets, n_sets)) {
        fprintf(stderr, "rtvla infer: %s\n", rtv_last_error());
        return 2;
    }
    const rtv_model_cfg *m = &cfg.model.m;
    const int nv = m->n_views;

    /* images: NAME=FILE matched to the cameras of the config, in camera order */
    rtv_frame frames[RTV_MAX_CAMERAS] = {{0}};
    int loaded[RTV_MAX_CAMERAS] = {0};
    for (int i = 0; i < n_images; i++) {
        const char *eq = strchr(images[i], '=');
        if (!eq) {
            fprintf(stderr, "rtvla infer: --image '%s': expected NAME=FILE\n", images[i]);
            ret = 2;
            goto out;
        }
        int idx = -1;
        for (int c = 0; c < cfg.n_cameras; c++)
            if (strlen(cfg.cameras[c].name) == (size_t)(eq - images[i]) &&
                !strncmp(cfg.cameras[c].name, images[i], (size_t)(eq - images[i])))
                idx = c;
        if (idx < 0 || idx >= nv) {
            fprintf(stderr, "rtvla infer: --image '%s': no camera named '%.*s' in %s (cameras:",
                    images[i], (int)(eq - images[i]), images[i], cfg.path);
            for (int c = 0; c < cfg.n_cameras && c < nv; c++)
                fprintf(stderr, " %s", cfg.cameras[c].name);
            fprintf(stderr, ")\n");
            ret = 2;
            goto out;
        }
        if (loaded[idx]) {
            fprintf(stderr, "rtvla infer: --image: camera '%s' given twice\n",
                    cfg.cameras[idx].name);
            ret = 2;
            goto out;
        }
        if (rtv_image_load(&frames[idx], eq + 1)) {
            fprintf(stderr, "rtvla infer: --image %s: %s\n", images[i], rtv_last_error());
            ret = 2;
            goto out;
        }
        loaded[idx] = 1;
    }
    for (int c = 0; c < nv; c++)
        if (!loaded[c]) {
            fprintf(stderr, "rtvla infer: no --image for camera '%s' (the model takes %d views: "
                    "give --image NAME=FILE for each camera of %s)\n",
                    c < cfg.n_cameras ? cfg.cameras[c].name : "?", nv, cfg.path);
            ret = 2;
            goto out;
        }

    rtv_policy *p = NULL;
    rtv_vl_ctx *vl = NULL;
    rtv_act_ctx *ac = NULL;
    rtv_features *f = NULL;
    float *chunk = NULL;
    if (rtv_policy_from_config(&p, &cfg)) {
        fprintf(stderr, "rtvla infer: %s\n", rtv_last_error());
        goto out;
    }
    const rtv_model_cfg *pm = rtv_policy_cfg(p);
    float state[RTV_MAX_DOF];
    int n_state = parse_floats(state_arg, state, RTV_MAX_DOF);
    if (n_state < 0) {
        ret = 2;
        goto out_policy;
    }
    if (n_state != pm->robot_dof) {
        fprintf(stderr, "rtvla infer: --state: %d values, the robot has %d (model.robot_dof)\n",
                n_state, pm->robot_dof);
        ret = 2;
        goto out_policy;
    }
    if (pm->history) {
        fprintf(stderr, "rtvla infer: model.history is %d: infer has no sensor history to give "
                "(set model.history=0)\n", pm->history);
        ret = 2;
        goto out_policy;
    }
    chunk = malloc((size_t)pm->chunk * pm->robot_dof * sizeof(float));
    if (!chunk || rtv_vl_ctx_new(p, &vl) || rtv_act_ctx_new(p, &ac) || rtv_features_new(p, &f)) {
        fprintf(stderr, "rtvla infer: %s\n", chunk ? rtv_last_error() : "out of memory");
        goto out_policy;
    }
    int tr = rtv_vl_set_task(vl, task);
    if (tr < 0) {
        fprintf(stderr, "rtvla infer: --task: %s\n", rtv_last_error());
        ret = 2;
        goto out_policy;
    }
    if (tr > 0)
        fprintf(stderr, "rtvla infer: warning: --task is %d tokens longer than model.max_prompt "
                "(%d); truncated\n", tr, pm->max_prompt);
    double t0 = now_ms();
    if (rtv_policy_encode(vl, frames, nv, f)) {
        fprintf(stderr, "rtvla infer: %s\n", rtv_last_error());
        goto out_policy;
    }
    double t1 = now_ms();
    if (rtv_policy_act_rt(ac, f, state, NULL, have_seed ? seed : cfg.model.seed, chunk)) {
        fprintf(stderr, "rtvla infer: %s\n", rtv_last_error());
        goto out_policy;
    }
    double t2 = now_ms();
    printf("{\"chunk\": [");
    for (int r = 0; r < pm->chunk; r++) {
        printf("%s[", r ? ", " : "");
        for (int d = 0; d < pm->robot_dof; d++)
            printf("%s%.7g", d ? ", " : "", (double)chunk[(size_t)r * pm->robot_dof + d]);
        printf("]");
    }
    printf("], \"n_prefix\": %d, \"timing_ms\": {\"encode\": %.3f, \"act\": %.3f}}\n", f->n_prefix,
           t1 - t0, t2 - t1);
    ret = 0;
out_policy:
    free(chunk);
    rtv_features_free(p, f);
    rtv_act_ctx_free(ac);
    rtv_vl_ctx_free(vl);
    rtv_policy_free(p);
out:
    for (int c = 0; c < RTV_MAX_CAMERAS; c++)
        if (loaded[c])
            rtv_image_free(&frames[c]);
    return ret;
}
