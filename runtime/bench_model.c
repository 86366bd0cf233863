/* runtime/bench_model.c — `rtvla bench model`: per-component latency of the policy.
 *
 *   rtvla bench model [-c CONFIG] [--set k=v]... [--views N] [--head flow|regression]
 *                     [--prompt-len N] [--chunk N] [--steps N] [--iters N] [--warmup N]
 *                     [--csv FILE] [--json FILE]
 * Each iteration runs one VL encode (synthetic 640x480 views, a task of exactly N tokens) and
 * one action cycle. Two passes: the first with the policy's stage timer on (a stream sync after
 * each stage, eager launches) gives the component rows; the second as the runtime runs (no
 * stage syncs, CUDA graphs where the backend has them) gives VL encode, action cycle and full
 * forward. Reports p50/p95/p99/max/mean in ms for preprocess, vision tower,
 * prefix LLM, sensor encoding, head, VL encode, action cycle and the full forward
 * (encode + act). Output columns are stable across commits. Defaults: --iters 100 after
 * --warmup 2 (pi0 on a CPU wants --iters 1).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "encoder/tokenizer.h"
#include "runtime/bench.h"
#include "runtime/config.h"
#include "runtime/policy_impl.h"
#include "runtime/status.h"

#define MAX_SETS 64
enum { C_PRE, C_VIS, C_PREFIX, C_SENSOR, C_HEAD, C_ENCODE, C_ACT, C_FULL, N_COMP };
static const char *const comp_name[N_COMP] = {
    "preprocess", "vision_tower", "prefix_llm", "sensor", "head", "vl_encode", "action_cycle",
    "full_forward"};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stat_row {
    double p50, p95, p99, max, mean;
} stat_row;

/* Nearest-rank index of percentile pct in n sorted values. */
static int rank(double pct, int n)
{
    int k = (int)ceil(pct / 100.0 * n) - 1;
    return k < 0 ? 0 : k >= n ? n - 1 : k;
}

/* Nearest-rank percentiles of v[n] (sorted in place). */
static stat_row stats_of(double *v, int n)
{
    stat_row r = {0, 0, 0, 0, 0};
    if (n < 1)
        return r;
    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    r.p50 = v[rank(50, n)];
    r.p95 = v[rank(95, n)];
    r.p99 = v[rank(99, n)];
    r.max = v[n - 1];
    r.mean = sum / n;
    return r;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: rtvla bench model [-c CONFIG] [--set k=v]... [--views N]\n"
            "                         [--head flow|regression] [--prompt-len N] [--chunk N] [--steps N] [--iters N]\n"
            "                         [--warmup N] [--csv FILE] [--json FILE]\n");
    return 2;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "rtvla bench model: %s: expected an integer in [%ld, %ld], got '%s'\n",
                flag, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* A task whose prompt is exactly n tokens (BOS + words + "\n"), or as close as the
 * tokenizer allows from below; the actual count goes to *got. */
static void make_task(const rtv_tokenizer *t, int n, char *buf, size_t cap, int *got)
{
    static const char *const words[] = {"pick", "up", "the", "red", "cube", "and", "place",
                                        "it", "in", "bowl"};
    int32_t ids[1100];
    buf[0] = 0;
    *got = 0;
    if (n <= 0)
        return;
    size_t len = 0;
    for (int w = 0; len + 8 < cap; w++) {
        int k, need;
        size_t old = len;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", w ? " " : "", words[w % 10]);
        if (rtv_policy_tokenize(t, buf, ids, 1100, &k, &need) || need > n) {
            buf[old] = 0;
            break;
        }
        *got = need;
        if (need == n)
            break;
    }
}

int rtv_bench_model(int argc, char **argv)
{
    const char *cfg_path = NULL, *csv = NULL, *json = NULL, *head = NULL;
    const char *sets[MAX_SETS] = {0};
    int n_sets = 0, views = -1, prompt_len = 20, chunk = -1, steps = -1, iters = 100, warmup = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            fprintf(stderr, "rtvla bench model: %s needs a value\n", a);
            return usage();
        }
        i++;
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) cfg_path = v;
        else if (!strcmp(a, "--set")) {
            if (n_sets == MAX_SETS) return usage();
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--views")) { if (parse_int(a, v, 1, 8, &views)) return 2; }
        else if (!strcmp(a, "--prompt-len")) {
            if (parse_int(a, v, 0, 1024, &prompt_len)) return 2;
        }
        else if (!strcmp(a, "--chunk")) { if (parse_int(a, v, 1, 1000, &chunk)) return 2; }
        else if (!strcmp(a, "--steps")) { if (parse_int(a, v, 1, 100, &steps)) return 2; }
        else if (!strcmp(a, "--iters")) { if (parse_int(a, v, 1, 100000, &iters)) return 2; }
        else if (!strcmp(a, "--warmup")) { if (parse_int(a, v, 0, 1000, &warmup)) return 2; }
        else if (!strcmp(a, "--head")) head = v;
        else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--json")) json = v;
        else {
            fprintf(stderr, "rtvla bench model: unknown option '%s'\n", a);
            return usage();
        }
    }
    static rtv_config cfg;
    if (rtv_config_load(&cfg, cfg_path, sets, n_sets)) {
        fprintf(stderr, "rtvla bench model: %s\n", rtv_last_error());
        return 2;
    }
    /* Bench overrides apply to the model only (synthetic views, no cameras needed). */
    rtv_model_cfg *m = &cfg.model.m;
    if (views > 0) m->n_views = views;
    if (chunk > 0) m->chunk = chunk;
    if (steps > 0) m->steps = steps;
    if (prompt_len > m->max_prompt) m->max_prompt = prompt_len;
    if (head) {
        if (!strcmp(head, "flow")) m->head = RTV_HEAD_FLOW;
        else if (!strcmp(head, "regression")) m->head = RTV_HEAD_REGRESSION;
        else {
            fprintf(stderr, "rtvla bench model: --head: expected flow or regression, got '%s'\n",
                    head);
            return 2;
        }
    }
    if (rtv_model_cfg_validate(m)) {
        fprintf(stderr, "rtvla bench model: %s\n", rtv_last_error());
        return 2;
    }

    int ret = 1;
    rtv_policy *p = NULL;
    rtv_vl_ctx *vl = NULL;
    rtv_act_ctx *ac = NULL;
    rtv_features *f = NULL;
    uint8_t *px = NULL;
    void *pinned = NULL;
    double *samples = NULL;
    float *out = NULL;
    int64_t t_load = now_ns();
    if (rtv_policy_from_config(&p, &cfg)) {
        fprintf(stderr, "rtvla bench model: %s\n", rtv_last_error());
        return 1;
    }
    double load_s = (double)(now_ns() - t_load) * 1e-9;
    m = &p->cfg;
    const int W = 640, Hh = 480, nv = m->n_views, dof = m->robot_dof;
    char task[8192];
    int got_len;
    make_task(p->tok, prompt_len, task, sizeof(task), &got_len);
    px = malloc((size_t)W * Hh * 3 * nv);
    samples = calloc((size_t)N_COMP * iters, sizeof(double));
    out = calloc((size_t)m->chunk * dof, sizeof(float));
    float *histf = m->history ? calloc((size_t)m->history * 3 * dof, sizeof(float)) : NULL;
    if (!px || !samples || !out || (m->history && !histf)) {
        fprintf(stderr, "rtvla bench model: out of memory\n");
        free(histf);
        goto done;
    }
    rtv_frame frames[8];
    for (int v = 0; v < nv; v++) {
        uint8_t *q = px + (size_t)v * W * Hh * 3;
        for (int i = 0; i < W * Hh * 3; i++)
            q[i] = (uint8_t)((i * 7 + v * 31 + (i / (W * 3)) * 3) & 255);
        frames[v] = (rtv_frame){.rgb = q, .w = W, .h = Hh, .stride = 3 * W};
    }
    /* as the runtime does with its camera buffers: frames reach the device by one DMA
     * (RTV_PIN_FRAMES=0: through the staging copy, for comparison) */
    const char *pin_env = getenv("RTV_PIN_FRAMES");
    if (p->b->host_pin && !(pin_env && pin_env[0] == '0')) {
        if (p->b->host_pin(px, (size_t)W * Hh * 3 * nv) == RTV_OK)
            pinned = px;
        else /* as the runtime: slower, not wrong */
            fprintf(stderr, "rtvla bench model: %s; frames go through the staging copy\n",
                    rtv_last_error());
    }
    float state[RTV_MAX_DOF] = {0};
    if (rtv_vl_ctx_new(p, &vl) || rtv_act_ctx_new(p, &ac) || rtv_features_new(p, &f) ||
        rtv_vl_set_task(vl, task) < 0) {
        fprintf(stderr, "rtvla bench model: %s\n", rtv_last_error());
        free(histf);
        goto done;
    }
    rtv_stage_prof vp, ap;
    /* Pass 0: stage timer on (a sync after each stage, eager launches) for the per-component
     * rows. Pass 1: stage timer off, as the runtime runs (graphs where the backend has them)
     * for the VL encode, action cycle and full forward rows. */
    for (int pass = 0; pass < 2; pass++) {
        rtv_vl_ctx_set_profile(vl, pass == 0 ? &vp : NULL);
        rtv_act_ctx_set_profile(ac, pass == 0 ? &ap : NULL);
        for (int it = -warmup; it < iters; it++) {
            memset(&vp, 0, sizeof(vp));
            memset(&ap, 0, sizeof(ap));
            int64_t t0 = now_ns();
            int st = rtv_policy_encode(vl, frames, nv, f);
            int64_t t1 = now_ns();
            if (!st)
                st = rtv_policy_act_rt(ac, f, state, histf, (uint64_t)it, out);
            int64_t t2 = now_ns();
            if (st) {
                fprintf(stderr, "rtvla bench model: %s\n", rtv_last_error());
                free(histf);
                goto done;
            }
            if (it < 0)
                continue;
            double *s = samples + (size_t)it;
            if (pass == 0) {
                s[(size_t)C_PRE * iters] = vp.t_ns[RTV_STAGE_PREPROCESS] * 1e-6;
                s[(size_t)C_VIS * iters] = vp.t_ns[RTV_STAGE_VISION] * 1e-6;
                s[(size_t)C_PREFIX * iters] = vp.t_ns[RTV_STAGE_PREFIX] * 1e-6;
                s[(size_t)C_SENSOR * iters] = ap.t_ns[RTV_STAGE_SENSOR] * 1e-6;
                s[(size_t)C_HEAD * iters] = ap.t_ns[RTV_STAGE_HEAD] * 1e-6;
            } else {
                s[(size_t)C_ENCODE * iters] = (t1 - t0) * 1e-6;
                s[(size_t)C_ACT * iters] = (t2 - t1) * 1e-6;
                s[(size_t)C_FULL * iters] = (t2 - t0) * 1e-6;
            }
        }
    }
    size_t mem_used = 0, mem_total = 0;
    if (p->b->mem_info)
        p->b->mem_info(&mem_used, &mem_total);
    free(histf);
    stat_row rows[N_COMP];
    for (int c = 0; c < N_COMP; c++)
        rows[c] = stats_of(samples + (size_t)c * iters, iters);

    struct utsname u;
    uname(&u);
    const char *head_name = m->head == RTV_HEAD_FLOW ? "flow" : "regression";
    printf("rtvla bench model: latency, ms (components: a sync after each stage, eager; "
           "vl_encode, action_cycle, full_forward: as the runtime runs%s)\n",
           p->b->capture_begin ? ", CUDA graphs" : "");
    printf("machine: %s %s, %ld CPUs; backend %s; preset %s (%s)\n", u.sysname, u.machine,
           sysconf(_SC_NPROCESSORS_ONLN), p->b->name, m->preset, cfg.model.checkpoint);
    printf("views %d, prompt %d tokens, prefix %d, head %s, chunk %d, steps %d, history %d; "
           "%d iterations after %d warm-up; load %.2f s\n\n", nv, got_len, f->n_prefix, head_name,
           m->chunk, m->head == RTV_HEAD_FLOW ? m->steps : 0, m->history, iters, warmup, load_s);
    if (mem_total)
        printf("device memory in use: %.0f MiB of %.0f MiB (whole device, after the run)\n\n",
               mem_used / 1048576.0, mem_total / 1048576.0);
    if (m->head == RTV_HEAD_FLOW && rtv_act_expert_fused(ac)) /* an opt-in path: say it ran */
        printf("expert layers: one expert_layers call per Euler step (the backend's persistent "
               "kernel)\n\n");
    printf("%-14s %10s %10s %10s %10s %10s\n", "component", "p50", "p95", "p99", "max", "mean");
    for (int c = 0; c < N_COMP; c++)
        printf("%-14s %10.3f %10.3f %10.3f %10.3f %10.3f\n", comp_name[c], rows[c].p50,
               rows[c].p95, rows[c].p99, rows[c].max, rows[c].mean);
    if (csv) {
        FILE *fc = fopen(csv, "w");
        if (!fc) {
            fprintf(stderr, "rtvla bench model: --csv %s: %s\n", csv, strerror(errno));
            goto done;
        }
        fprintf(fc, "component,backend,preset,views,prompt_len,head,chunk,steps,iters,p50_ms,"
                    "p95_ms,p99_ms,max_ms,mean_ms\n");
        for (int c = 0; c < N_COMP; c++)
            fprintf(fc, "%s,%s,%s,%d,%d,%s,%d,%d,%d,%.4f,%.4f,%.4f,%.4f,%.4f\n", comp_name[c],
                    p->b->name, m->preset, nv, got_len, head_name, m->chunk, m->steps, iters,
                    rows[c].p50, rows[c].p95, rows[c].p99, rows[c].max, rows[c].mean);
        if (fclose(fc)) {
            fprintf(stderr, "rtvla bench model: --csv %s: %s\n", csv, strerror(errno));
            goto done;
        }
    }
    if (json) {
        FILE *fj = fopen(json, "w");
        if (!fj) {
            fprintf(stderr, "rtvla bench model: --json %s: %s\n", json, strerror(errno));
            goto done;
        }
        fprintf(fj, "{\"bench\": \"model\", \"machine\": \"%s %s, %ld CPUs\", \"backend\": \"%s\", "
                    "\"preset\": \"%s\", \"views\": %d, \"prompt_len\": %d, \"n_prefix\": %d, "
                    "\"head\": \"%s\", \"chunk\": %d, \"steps\": %d, \"iters\": %d, "
                    "\"device_mem_used_mib\": %.1f, \"components_ms\": {",
                u.sysname, u.machine, sysconf(_SC_NPROCESSORS_ONLN), p->b->name, m->preset, nv,
                got_len, f->n_prefix, head_name, m->chunk, m->steps, iters,
                mem_used / 1048576.0);
        for (int c = 0; c < N_COMP; c++)
            fprintf(fj, "%s\"%s\": {\"p50\": %.4f, \"p95\": %.4f, \"p99\": %.4f, \"max\": %.4f, "
                        "\"mean\": %.4f}", c ? ", " : "", comp_name[c], rows[c].p50, rows[c].p95,
                    rows[c].p99, rows[c].max, rows[c].mean);
        fprintf(fj, "}}\n");
        if (fclose(fj)) {
            fprintf(stderr, "rtvla bench model: --json %s: %s\n", json, strerror(errno));
            goto done;
        }
    }
    ret = 0;
done:
    if (pinned) p->b->host_unpin(pinned);
    free(px);
    free(samples);
    free(out);
    rtv_features_free(p, f);
    rtv_act_ctx_free(ac);
    rtv_vl_ctx_free(vl);
    rtv_policy_free(p);
    return ret;
}
