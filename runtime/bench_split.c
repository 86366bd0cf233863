/* runtime/bench_split.c — `rtvla bench split`: how the GPU's SMs should be split between the
 * action thread and the VL thread, measured with the user's model config.
 *
 *   rtvla bench split [-c CONFIG] [--set k=v]... [--modes LIST] [--samples N] [--hz HZ]
 *                     [--vl-seconds S] [--csv FILE] [--json FILE]
 *
 * LIST is comma-separated: off, streams, green:SMS, mps:SMS (default: off, streams, green at
 * 16, 32, 48, 64 and 80 action SMs; with an MPS daemon running, mps at 32, 48, 64 and 80). For each entry:
 *   1. action alone: N action cycles back to back (after warm-up) -> p50/p99;
 *   2. VL alone: encodes back to back for S seconds -> encodes/s;
 *   3. both: the VL thread encodes back to back while the action thread runs N cycles paced at
 *      HZ (default runtime.action_hz) -> action p50/p99 under load, VL encodes/s under load,
 *      and the reuse count that rate implies at HZ (action cycles per encoding, rounded up).
 * The policy (weights) is created once; each entry makes its own split, streams and graphs.
 * Recommendation (targets: loaded action p99 <= 1.5 x the unsplit action p99 alone, loaded
 * VL rate >= 60% of the unsplit VL rate alone): the lowest loaded p99 meeting both; else the
 * highest VL rate meeting the p99 target; else the lowest p99 meeting the VL target; else the
 * lowest p99 whose reuse fits runtime.max_reuse. Output columns are stable across commits.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/gpu_split.h"
#include "runtime/bench.h"
#include "runtime/config.h"
#include "runtime/policy_impl.h"
#include "runtime/rt.h"
#include "runtime/status.h"

#define MAX_SETS 64
#define MAX_ENTRIES 16

typedef struct entry {
    rtv_gpu_split_mode mode;
    int ask_sms;
    rtv_gpu_split eff;
    int ok;
    char err[256];
    double alone_p50, alone_p99, vl_alone_hz;
    double load_p50, load_p99, vl_load_hz;
    int reuse;
} entry;

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(double), cmp_dbl);
    int k = (int)ceil(p / 100.0 * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static int usage(void)
{
    fprintf(stderr,
            "usage: rtvla bench split [-c CONFIG] [--set k=v]... [--modes LIST] [--samples N]\n"
            "                         [--hz HZ] [--vl-seconds S] [--csv FILE] [--json FILE]\n"
            "  LIST: comma-separated off | streams | green:SMS | mps:SMS\n"
            "  (default: off,streams,green:16,green:32,green:48,green:64,green:80; with an MPS\n"
            "   daemon running: off,streams,mps:32,mps:48,mps:64,mps:80)\n");
    return 2;
}

static int parse_modes(const char *list, entry *e, int *n)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list);
    *n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (*n >= MAX_ENTRIES)
            return rtv_fail(RTV_E_ARG, "--modes: at most %d entries", MAX_ENTRIES);
        entry *x = &e[(*n)++];
        memset(x, 0, sizeof(*x));
        char *colon = strchr(tok, ':');
        if (colon) *colon = 0;
        if (!strcmp(tok, "off")) x->mode = RTV_GPU_SPLIT_OFF;
        else if (!strcmp(tok, "streams")) x->mode = RTV_GPU_SPLIT_STREAMS;
        else if (!strcmp(tok, "green")) x->mode = RTV_GPU_SPLIT_GREEN;
        else if (!strcmp(tok, "mps")) x->mode = RTV_GPU_SPLIT_MPS;
        else
            return rtv_fail(RTV_E_ARG, "--modes: '%s' is not off, streams, green:SMS or mps:SMS",
                            tok);
        if (x->mode == RTV_GPU_SPLIT_GREEN || x->mode == RTV_GPU_SPLIT_MPS) {
            char *end = NULL;
            long v = colon ? strtol(colon + 1, &end, 10) : 0;
            if (!colon || !end || *end || v < 1 || v > 1024)
                return rtv_fail(RTV_E_ARG, "--modes: %s needs an SM count, e.g. %s:32", tok, tok);
            x->ask_sms = (int)v;
        } else if (colon) {
            return rtv_fail(RTV_E_ARG, "--modes: %s takes no SM count", tok);
        }
    }
    if (!*n) return rtv_fail(RTV_E_ARG, "--modes: empty list");
    return RTV_OK;
}

/* ---- the VL load thread ---- */
typedef struct vl_load {
    rtv_policy *p;
    rtv_vl_ctx *vl;
    rtv_features *f[2];
    const rtv_frame *frames;
    int nv;
    _Atomic int stop, started;
    _Atomic uint64_t encodes;
    int err;
    char errmsg[256];
} vl_load;

static void *vl_load_main(void *arg)
{
    vl_load *L = arg;
    if (rtv_gpu_split_use(RTV_GPU_SIDE_VL)) {
        L->err = 1;
        snprintf(L->errmsg, sizeof(L->errmsg), "%s", rtv_last_error());
        atomic_store(&L->started, 1);
        return NULL;
    }
    atomic_store(&L->started, 1);
    uint64_t k = 0;
    while (!atomic_load(&L->stop)) {
        if (rtv_policy_encode(L->vl, L->frames, L->nv, L->f[k & 1])) {
            L->err = 1;
            snprintf(L->errmsg, sizeof(L->errmsg), "%s", rtv_last_error());
            break;
        }
        k++;
        atomic_store(&L->encodes, k);
    }
    return NULL;
}

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = { (time_t)(t_ns / 1000000000), (long)(t_ns % 1000000000) };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

/* Measures one entry. The policy's streams are made here, on the entry's split. */
static int measure(rtv_policy *p, const rtv_config *cfg, entry *e, const rtv_frame *frames,
                   int nv, int samples, double hz, double vl_seconds, const char *task)
{
    rtv_vl_ctx *vl = NULL;
    rtv_act_ctx *ac = NULL;
    rtv_features *f[3] = { NULL, NULL, NULL };
    const rtv_model_cfg *m = &p->cfg;
    float state[RTV_MAX_DOF] = { 0 };
    float *out = calloc((size_t)m->chunk * m->robot_dof, sizeof(float));
    float *hist = m->history ? calloc((size_t)m->history * 3 * m->robot_dof, sizeof(float))
                             : NULL;
    double *t = calloc((size_t)samples, sizeof(double));
    int st = RTV_OK;
    if (!out || !t || (m->history && !hist)) {
        st = rtv_fail(RTV_E_NOMEM, "out of memory");
        goto done;
    }
    if ((st = rtv_gpu_split_init(&e->eff, cfg->gpu.device, e->mode, e->ask_sms)))
        goto done;
    if ((st = rtv_gpu_split_use(RTV_GPU_SIDE_VL)) || (st = rtv_vl_ctx_new(p, &vl)) ||
        (st = rtv_gpu_split_use(RTV_GPU_SIDE_ACTION)) || (st = rtv_act_ctx_new(p, &ac)))
        goto done;
    for (int i = 0; i < 3; i++)
        if ((st = rtv_features_new(p, &f[i]))) goto done;
    if (p->tok && task[0] && (st = rtv_vl_set_task(vl, task)) < 0) goto done;
    st = RTV_OK;
    /* the action side's encoding (slot 0), made on the VL side's stream */
    if ((st = rtv_gpu_split_use(RTV_GPU_SIDE_VL)) || (st = rtv_policy_encode(vl, frames, nv, f[0])))
        goto done;
    if ((st = rtv_gpu_split_use(RTV_GPU_SIDE_ACTION))) goto done;

    /* 1. action alone, back to back */
    for (int i = -10; i < samples; i++) {
        int64_t t0 = rtv_clock_now_ns();
        if ((st = rtv_policy_act_rt(ac, f[0], state, hist, (uint64_t)i, out))) goto done;
        if (i >= 0) t[i] = (rtv_clock_now_ns() - t0) * 1e-6;
    }
    e->alone_p50 = pct(t, samples, 50);
    e->alone_p99 = pct(t, samples, 99);

    /* 2. VL alone */
    vl_load L;
    memset(&L, 0, sizeof(L));
    L.p = p;
    L.vl = vl;
    L.f[0] = f[1];
    L.f[1] = f[2];
    L.frames = frames;
    L.nv = nv;
    pthread_t th;
    int64_t t0 = rtv_clock_now_ns();
    if (pthread_create(&th, NULL, vl_load_main, &L)) {
        st = rtv_fail(RTV_E_OS, "pthread_create");
        goto done;
    }
    sleep_until(t0 + (int64_t)(vl_seconds * 1e9));
    uint64_t n0 = atomic_load(&L.encodes);
    int64_t t1 = rtv_clock_now_ns();
    e->vl_alone_hz = (double)n0 / ((t1 - t0) * 1e-9);

    /* 3. both: VL keeps encoding; the action thread runs paced at hz */
    const int64_t period = (int64_t)(1e9 / hz);
    int64_t next = rtv_clock_now_ns() + period;
    uint64_t e0 = atomic_load(&L.encodes);
    int64_t tl0 = rtv_clock_now_ns();
    for (int i = 0; i < samples && !L.err; i++) {
        sleep_until(next);
        next += period;
        int64_t a = rtv_clock_now_ns();
        if ((st = rtv_policy_act_rt(ac, f[0], state, hist, (uint64_t)i, out))) break;
        t[i] = (rtv_clock_now_ns() - a) * 1e-6;
    }
    uint64_t e1 = atomic_load(&L.encodes);
    int64_t tl1 = rtv_clock_now_ns();
    atomic_store(&L.stop, 1);
    pthread_join(th, NULL);
    if (st) goto done;
    if (L.err) {
        st = rtv_fail(RTV_E_DEVICE, "VL thread: %s", L.errmsg);
        goto done;
    }
    e->load_p50 = pct(t, samples, 50);
    e->load_p99 = pct(t, samples, 99);
    e->vl_load_hz = (double)(e1 - e0) / ((tl1 - tl0) * 1e-9);
    e->reuse = e->vl_load_hz > 0 ? (int)ceil(hz / e->vl_load_hz) : -1;
    e->ok = 1;
done:
    if (st && !e->err[0]) snprintf(e->err, sizeof(e->err), "%s", rtv_last_error());
    for (int i = 0; i < 3; i++) rtv_features_free(p, f[i]);
    rtv_act_ctx_free(ac);
    rtv_vl_ctx_free(vl);
    rtv_gpu_split_free();
    free(out);
    free(hist);
    free(t);
    return st;
}

int rtv_bench_split(int argc, char **argv)
{
    const char *cfg_path = NULL, *modes = NULL, *csv = NULL, *json = NULL;
    const char *sets[MAX_SETS];
    int n_sets = 0, samples = 100;
    double hz = 0, vl_seconds = 3.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage();
        if (i + 1 >= argc) {
            fprintf(stderr, "rtvla bench split: %s needs a value\n", a);
            return usage();
        }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) cfg_path = v;
        else if (!strcmp(a, "--set")) {
            if (n_sets >= MAX_SETS) {
                fprintf(stderr, "rtvla bench split: at most %d --set\n", MAX_SETS);
                return 2;
            }
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--modes")) modes = v;
        else if (!strcmp(a, "--samples")) {
            long x = strtol(v, &end, 10);
            if (!end || *end || x < 10 || x > 100000) {
                fprintf(stderr, "rtvla bench split: --samples: expected 10..100000, got '%s'\n", v);
                return 2;
            }
            samples = (int)x;
        } else if (!strcmp(a, "--hz")) {
            hz = strtod(v, &end);
            if (!end || *end || hz < 0.5 || hz > 1000) {
                fprintf(stderr, "rtvla bench split: --hz: expected 0.5..1000, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--vl-seconds")) {
            vl_seconds = strtod(v, &end);
            if (!end || *end || vl_seconds < 0.5 || vl_seconds > 600) {
                fprintf(stderr, "rtvla bench split: --vl-seconds: expected 0.5..600, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--csv")) csv = v;
        else if (!strcmp(a, "--json")) json = v;
        else {
            fprintf(stderr, "rtvla bench split: unknown option '%s'\n", a);
            return usage();
        }
    }
    static rtv_config cfg;
    if (rtv_config_load(&cfg, cfg_path, sets, n_sets)) {
        fprintf(stderr, "rtvla bench split: %s\n", rtv_last_error());
        return 2;
    }
    if (strcmp(cfg.model.backend, "cuda")) {
        fprintf(stderr, "rtvla bench split: %s: model.backend is %s; the SM split needs the CUDA "
                "backend (--set model.backend=cuda on a machine with an NVIDIA GPU)\n",
                cfg.path, cfg.model.backend);
        return 2;
    }
    if (hz == 0) hz = cfg.runtime.action_hz;
    entry ent[MAX_ENTRIES];
    int n_ent = 0;
    char deflist[160];
    /* under a running MPS daemon every context is an MPS client: sweep MPS affinities, not
     * green contexts (gpu_rt.md: do not combine the two) */
    snprintf(deflist, sizeof(deflist), "%s", rtv_gpu_mps_running()
                 ? "off,streams,mps:32,mps:48,mps:64,mps:80"
                 : "off,streams,green:16,green:32,green:48,green:64,green:80");
    if (parse_modes(modes ? modes : deflist, ent, &n_ent)) {
        fprintf(stderr, "rtvla bench split: %s\n", rtv_last_error());
        return 2;
    }
    const rtv_backend *b;
    if (rtv_backend_by_name("cuda", &b) || !b) {
        fprintf(stderr, "rtvla bench split: %s\n", rtv_last_error());
        return 1;
    }
    rtv_policy *p = NULL;
    int64_t tl = rtv_clock_now_ns();
    if (rtv_policy_from_config(&p, &cfg)) {
        fprintf(stderr, "rtvla bench split: %s\n", rtv_last_error());
        return 1;
    }
    double load_s = (rtv_clock_now_ns() - tl) * 1e-9;
    const rtv_model_cfg *m = &p->cfg;
    const int W = 640, H = 480, nv = m->n_views;
    uint8_t *px = malloc((size_t)W * H * 3 * nv);
    if (!px) {
        rtv_policy_free(p);
        return 1;
    }
    rtv_frame frames[8];
    for (int v = 0; v < nv && v < 8; v++) {
        uint8_t *q = px + (size_t)v * W * H * 3;
        for (int i = 0; i < W * H * 3; i++) q[i] = (uint8_t)((i * 7 + v * 31) & 255);
        frames[v] = (rtv_frame){ .rgb = q, .w = W, .h = H, .stride = 3 * W };
    }
    /* a task only when the policy has a tokenizer (random weights have none) */
    const char *task = p->tok ? "pick up the red cube" : "";

    printf("rtvla bench split: preset %s (%s), %d views, head %s, chunk %d, steps %d; action at "
           "%.1f Hz, %d samples per phase, VL alone %.1f s; load %.1f s\n", m->preset,
           cfg.model.checkpoint, nv, m->head == RTV_HEAD_FLOW ? "flow" : "regression", m->chunk,
           m->steps, hz, samples, vl_seconds, load_s);
    for (int i = 0; i < n_ent; i++) {
        entry *e = &ent[i];
        if (measure(p, &cfg, e, frames, nv, samples, hz, vl_seconds, task) &&
            !e->err[0])
            snprintf(e->err, sizeof(e->err), "%s", rtv_last_error());
        if (!e->ok) fprintf(stderr, "  %s:%d failed: %s\n", rtv_gpu_split_mode_name(e->mode),
                            e->ask_sms, e->err);
        fflush(stdout);
    }
    /* reference: the unsplit figures */
    double ref_p99 = 0, ref_vl = 0;
    for (int i = 0; i < n_ent; i++)
        if (ent[i].ok && ent[i].mode == RTV_GPU_SPLIT_OFF) {
            ref_p99 = ent[i].alone_p99;
            ref_vl = ent[i].vl_alone_hz;
            break;
        }
    /* 1: both targets, lowest loaded p99; 2: the p99 target, highest VL rate; 3: the VL
     * target, lowest loaded p99; 4: reuse within max_reuse, lowest loaded p99 */
    int best = -1;
    for (int pass = 0; pass < 4 && best < 0; pass++)
        for (int i = 0; i < n_ent; i++) {
            entry *e = &ent[i];
            if (!e->ok) continue;
            int p99_ok = ref_p99 > 0 && e->load_p99 <= 1.5 * ref_p99;
            int vl_ok = ref_vl > 0 && e->vl_load_hz >= 0.6 * ref_vl;
            int good = pass == 0 ? p99_ok && vl_ok : pass == 1 ? p99_ok : pass == 2 ? vl_ok
                     : (e->reuse > 0 && e->reuse <= cfg.runtime.max_reuse);
            if (!good) continue;
            if (best < 0 || (pass == 1 ? e->vl_load_hz > ent[best].vl_load_hz
                                       : e->load_p99 < ent[best].load_p99))
                best = i;
        }
    printf("\n%-10s %8s %8s | %10s %10s %9s | %10s %10s %9s %6s | %s\n", "mode", "act_sms",
           "vl_sms", "alone_p50", "alone_p99", "vl_hz", "load_p50", "load_p99", "vl_hz", "reuse",
           "note");
    for (int i = 0; i < n_ent; i++) {
        entry *e = &ent[i];
        char name[32];
        snprintf(name, sizeof(name), e->ask_sms ? "%s:%d" : "%s", rtv_gpu_split_mode_name(e->mode),
                 e->ask_sms);
        if (!e->ok) {
            printf("%-10s %8s %8s | %10s %10s %9s | %10s %10s %9s %6s | failed: %.120s\n", name,
                   "-", "-", "-", "-", "-", "-", "-", "-", "-", e->err);
            continue;
        }
        printf("%-10s %8d %8d | %10.3f %10.3f %9.2f | %10.3f %10.3f %9.2f %6d | %s\n", name,
               e->eff.action_sms, e->eff.vl_sms, e->alone_p50, e->alone_p99, e->vl_alone_hz,
               e->load_p50, e->load_p99, e->vl_load_hz, e->reuse,
               i == best ? "<- recommended" : "");
    }
    if (ref_p99 > 0)
        printf("\ntarget: load_p99 <= 1.5 x %.3f ms = %.3f ms (off, alone) and VL >= 60%% of "
               "%.2f/s = %.2f/s\n", ref_p99, 1.5 * ref_p99, ref_vl, 0.6 * ref_vl);
    if (best >= 0) {
        entry *e = &ent[best];
        printf("recommended: gpu.split.mode: %s, gpu.split.action_sms: %d (%s the target; reuse "
               "%d at %.1f Hz; set runtime.max_reuse >= %d)\n", rtv_gpu_split_mode_name(e->mode),
               e->ask_sms ? e->ask_sms : e->eff.action_sms,
               e->load_p99 <= 1.5 * ref_p99 && e->vl_load_hz >= 0.6 * ref_vl ? "meets"
                                                                             : "misses",
               e->reuse, hz, e->reuse);
    } else {
        printf("recommended: none of the entries ran\n");
    }
    int ret = 0;
    if (csv) {
        FILE *fc = fopen(csv, "w");
        if (!fc) {
            fprintf(stderr, "rtvla bench split: --csv %s: %s\n", csv, strerror(errno));
            ret = 1;
        } else {
            fprintf(fc, "mode,ask_sms,action_sms,vl_sms,alone_p50_ms,alone_p99_ms,vl_alone_hz,"
                        "load_p50_ms,load_p99_ms,vl_load_hz,reuse,recommended,error\n");
            for (int i = 0; i < n_ent; i++) {
                entry *e = &ent[i];
                fprintf(fc, "%s,%d,%d,%d,%.4f,%.4f,%.3f,%.4f,%.4f,%.3f,%d,%d,\"%s\"\n",
                        rtv_gpu_split_mode_name(e->mode), e->ask_sms, e->eff.action_sms,
                        e->eff.vl_sms, e->alone_p50, e->alone_p99, e->vl_alone_hz, e->load_p50,
                        e->load_p99, e->vl_load_hz, e->reuse, i == best, e->ok ? "" : e->err);
            }
            fclose(fc);
        }
    }
    if (json) {
        FILE *fj = fopen(json, "w");
        if (!fj) {
            fprintf(stderr, "rtvla bench split: --json %s: %s\n", json, strerror(errno));
            ret = 1;
        } else {
            fprintf(fj, "{\"bench\": \"split\", \"preset\": \"%s\", \"views\": %d, \"hz\": %.2f, "
                        "\"samples\": %d, \"entries\": [", m->preset, nv, hz, samples);
            for (int i = 0; i < n_ent; i++) {
                entry *e = &ent[i];
                fprintf(fj, "%s{\"mode\": \"%s\", \"ask_sms\": %d, \"action_sms\": %d, "
                            "\"vl_sms\": %d, \"ok\": %s, \"alone_p50_ms\": %.4f, "
                            "\"alone_p99_ms\": %.4f, \"vl_alone_hz\": %.3f, \"load_p50_ms\": %.4f, "
                            "\"load_p99_ms\": %.4f, \"vl_load_hz\": %.3f, \"reuse\": %d, "
                            "\"recommended\": %s}", i ? ", " : "",
                        rtv_gpu_split_mode_name(e->mode), e->ask_sms, e->eff.action_sms,
                        e->eff.vl_sms, e->ok ? "true" : "false", e->alone_p50, e->alone_p99,
                        e->vl_alone_hz, e->load_p50, e->load_p99, e->vl_load_hz, e->reuse,
                        i == best ? "true" : "false");
            }
            fprintf(fj, "]}\n");
            fclose(fj);
        }
    }
    free(px);
    rtv_policy_free(p);
    return ret;
}
