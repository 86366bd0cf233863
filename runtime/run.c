/* runtime/run.c — set-up, the VL and action threads, supervision and teardown of a run
 * (runtime/run.h); the control thread is in runtime/run_control.c. */
#include "runtime/run.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hal/camera.h"
#include "kernels/backend.h"
#include "runtime/policy.h"
#include "runtime/rt.h"
#include "runtime/status.h"
#include "kernels/gpu_split.h"
#include "runtime/run_impl.h"
#include "runtime/telemetry.h"

static const rtv_tel_stage stage_defs[N_STAGES] = {
    [ST_VL] = { .name = "vl_encode", .v_names = { "seq", "frame_age_ms", "", "" } },
    [ST_ACT] = { .name = "action", .v_names = { "uses", "vl_age_ms", "wake_late_us", "chunk" },
                 .hist_mask = 1 },
    [ST_CTRL] = { .name = "control", .v_names = { "index", "skipped", "n_chunks", "wake_late_us" } },
    [ST_BUS_WRITE] = { .name = "bus_write", .v_names = { "safety_flags", "", "", "" } },
    [ST_BUS_READ] = { .name = "bus_read", .v_names = { "", "", "", "" } },
};

static _Atomic int pending_stop;

void rtv_run_request_stop(int level)
{
    int cur = atomic_load(&pending_stop);
    if (level > cur) atomic_store(&pending_stop, level);
}

static void on_signal(int sig)
{
    (void)sig;
    /* first signal: graceful; a second one: torque off now */
    rtv_run_request_stop(atomic_load(&pending_stop) >= 1 ? 2 : 1);
}

struct rtv_robot *rtv_run_robot(rtv_run *run) { return run ? run->robot : NULL; }
void rtv_run_inject_vl_stall(rtv_run *run, int stall_ms) { atomic_store(&run->vl_stall_ms, stall_ms); }

void rtv_run_set_fault(rtv_run *r, const char *what, const char *detail)
{
    if (atomic_exchange(&r->fault_claim, 1)) return; /* the first fault is the one reported */
    snprintf(r->fault_msg, sizeof(r->fault_msg), "%s%s%s", what, detail && *detail ? ": " : "",
             detail ? detail : "");
    atomic_store_explicit(&r->fault, 1, memory_order_release);
}

/* ---- VL thread ---- */

static void *vl_main(void *arg)
{
    rtv_run *r = arg;
    const rtv_config *cfg = r->cfg;
    rtv_rt_thread_setup("rtv-vl", cfg->runtime.prio_vl, cfg->runtime.cpu_vl, RUN_STACK_PREFAULT,
                        &r->g_vl);
    if (rtv_gpu_split_use(RTV_GPU_SIDE_VL)) {
        rtv_run_set_fault(r, "VL thread: GPU split", rtv_last_error());
        return NULL;
    }
    /* Background work: below the camera capture threads and the bus simulator, which stand
     * for hardware the control loop waits on. */
    if (cfg->runtime.prio_vl == 0) setpriority(PRIO_PROCESS, (id_t)gettid(), 5);
    rtv_frame views[RTV_MAX_CAMERAS];
    uint64_t seq = 0;
    while (!atomic_load(&r->stop) && !atomic_load(&r->fault)) {
        int w = rtv_mailbox_wait_want(r->mb, 100);
        if (w == 0) break;
        if (w < 0) continue;
        int stall = atomic_exchange(&r->vl_stall_ms, 0);
        if (stall > 0) rtv_clock_sleep_until(rtv_clock_now_ns() + (int64_t)stall * 1000000);
        int64_t t0 = rtv_clock_now_ns();
        int64_t oldest = INT64_MAX;
        int st = RTV_OK;
        for (int i = 0; i < r->n_cams && !st; i++) {
            st = rtv_camera_latest_rt(r->cams[i], &views[i]);
            if (!st && views[i].t_capture_ns < oldest) oldest = views[i].t_capture_ns;
        }
        rtv_mailbox_slot *slot = rtv_mailbox_write_slot(r->mb);
        rtv_features *f = slot->payload;
        if (!st) {
            f->seq = seq + 1;
            for (int i = 0; i < r->n_cams && i < 8; i++) f->t_capture_ns[i] = views[i].t_capture_ns;
            f->t_encode_start_ns = t0;
            st = rtv_policy_encode(r->vl, views, r->n_cams, f);
        }
        int64_t t1 = rtv_clock_now_ns();
        if (st) {
            atomic_fetch_add_explicit(&r->vl_errors, 1, memory_order_relaxed);
            rtv_tel_push_rt(r->ring_vl, ST_VL, t0, t1, RTV_TEL_F_FAULT, NAN, NAN, 0, 0);
            /* camera without a fresh frame, or an encode error: try again shortly; the action
             * side sees the features age and applies stale_policy */
            rtv_clock_sleep_until(t1 + 5000000);
            continue;
        }
        f->t_encode_end_ns = t1;
        seq++;
        rtv_mailbox_publish(r->mb, oldest, t1);
        atomic_fetch_add_explicit(&r->vl_encodes, 1, memory_order_relaxed);
        rtv_tel_push_rt(r->ring_vl, ST_VL, t0, t1, RTV_TEL_F_FRESH, (float)seq,
                        (float)(t0 - oldest) / 1e6f, 0, 0);
    }
    return NULL;
}

/* ---- action thread ---- */

static void publish_cmd(rtv_run *r, int cmd, int64_t t_obs, uint64_t chunk_seq, uint64_t *msg_seq)
{
    chunk_msg *m = &r->chunk_slot[rtv_tribuf_write_idx(&r->chunk_tb)];
    m->cmd = cmd;
    m->t_obs_ns = t_obs;
    m->t_pub_ns = rtv_clock_now_ns();
    m->seq = ++*msg_seq;
    m->chunk_seq = chunk_seq;
    rtv_tribuf_publish(&r->chunk_tb);
}

static void *act_main(void *arg)
{
    rtv_run *r = arg;
    const rtv_config *cfg = r->cfg;
    rtv_rt_thread_setup("rtv-action", rtv_cfg_action_prio(cfg), cfg->runtime.cpu_action,
                        RUN_STACK_PREFAULT, &r->g_act);
    if (rtv_gpu_split_use(RTV_GPU_SIDE_ACTION)) {
        rtv_run_set_fault(r, "action thread: GPU split", rtv_last_error());
        return NULL;
    }
    rtv_period per;
    int64_t period_ns = 1000000000LL / cfg->runtime.action_hz;
    rtv_period_init(&per, period_ns, rtv_clock_now_ns());
    uint64_t msg_seq = 0, chunk_seq = 0, cycle = 0, prev_missed = 0;
    const state_msg *sm = NULL;
    atomic_store(&r->act_started, 1);
    while (!atomic_load(&r->stop) && !atomic_load(&r->fault)) {
        uint64_t missed = 0;
        int64_t late = rtv_period_wait_rt(&per, &missed);
        if (atomic_load(&r->stop) || atomic_load(&r->fault)) break;
        int64_t t0 = rtv_clock_now_ns();
        uint32_t flags = 0;
        if (missed || prev_missed) flags |= RTV_TEL_F_MISS;
        if (missed) atomic_fetch_add_explicit(&r->act_misses, missed, memory_order_relaxed);
        prev_missed = 0;
        if (rtv_tribuf_take_rt(&r->state_tb) || !sm) sm = &r->state_slot[rtv_tribuf_read_idx(&r->state_tb)];
        rtv_mb_take tk;
        rtv_mailbox_take_rt(r->mb, t0, &tk);
        float uses = NAN, age_ms = NAN;
        if (tk.slot) age_ms = (float)tk.age_ns / 1e6f;
        if (tk.fresh) flags |= RTV_TEL_F_FRESH;
        if (sm->t_ns == 0 || tk.verdict == RTV_MB_EMPTY) {
            /* no state read yet or no encoding yet: the robot holds */
            publish_cmd(r, CMD_HOLD, t0, 0, &msg_seq);
            flags |= RTV_TEL_F_HOLD;
        } else if (tk.verdict == RTV_MB_HOLD) {
            publish_cmd(r, CMD_HOLD, sm->t_ns, 0, &msg_seq);
            flags |= RTV_TEL_F_HOLD | RTV_TEL_F_STALE;
            atomic_fetch_add_explicit(&r->act_holds, 1, memory_order_relaxed);
        } else if (tk.verdict == RTV_MB_STOP) {
            publish_cmd(r, CMD_STOP, sm->t_ns, 0, &msg_seq);
            flags |= RTV_TEL_F_HOLD | RTV_TEL_F_STALE | RTV_TEL_F_FAULT;
            char why[128];
            snprintf(why, sizeof(why), "%u uses, %.0f ms old (max_reuse %d, max_age_ms %d)",
                     tk.uses + 1, (double)age_ms, cfg->runtime.max_reuse, cfg->runtime.max_age_ms);
            rtv_run_set_fault(r, "stale features with stale_policy stop", why);
        } else {
            uses = (float)tk.uses;
            if (tk.stale) {
                flags |= RTV_TEL_F_STALE;
                atomic_fetch_add_explicit(&r->act_stale, 1, memory_order_relaxed);
            }
            chunk_msg *m = &r->chunk_slot[rtv_tribuf_write_idx(&r->chunk_tb)];
            const float *hist = NULL;
            if (r->history) {
                memcpy(r->hist_copy, sm->hist, sizeof(float) * (size_t)r->history * 3 * (size_t)r->dof);
                hist = r->hist_copy;
            }
            int st = rtv_policy_act_rt(r->act, tk.slot->payload, sm->pos, hist,
                                       cfg->model.seed + cycle, m->act);
            if (st) {
                /* a failed cycle: nothing new to execute; the control thread runs out of the
                 * previous chunk and holds */
                flags |= RTV_TEL_F_FAULT;
            } else {
                publish_cmd(r, CMD_ACT, sm->t_ns, ++chunk_seq, &msg_seq);
                atomic_fetch_add_explicit(&r->act_chunks, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&r->act_uses_sum, tk.uses, memory_order_relaxed);
                if (!atomic_load_explicit(&r->act_marked, memory_order_relaxed)) {
                    /* warm-up done (first real cycle, lazy backend buffers made): from here on
                     * this thread must not allocate */
                    r->rt_allocs_act = rtv_rt_alloc_count();
                    rtv_rt_thread_mark();
                    atomic_store(&r->act_marked, 1);
                }
            }
        }
        if (tk.slot) atomic_store_explicit(&r->vl_age_ms, (uint32_t)(age_ms > 0 ? age_ms : 0),
                                           memory_order_relaxed);
        /* Pacing (runtime.vl_every_n_cycles): the want is posted after this cycle's head ran, so
         * on a shared GPU the paced encode runs in the gap before the next cycle instead of
         * beside this one. */
        rtv_mailbox_tick_rt(r->mb);
        int64_t t1 = rtv_clock_now_ns();
        if (t1 - t0 > period_ns) {
            flags |= RTV_TEL_F_MISS;
            prev_missed = 1;
        }
        atomic_store_explicit(&r->act_dur_us[cycle % RUN_WIN], (uint32_t)((t1 - t0) / 1000),
                              memory_order_relaxed);
        atomic_fetch_add_explicit(&r->act_cycles, 1, memory_order_release);
        rtv_tel_push_rt(r->ring_act, ST_ACT, t0, t1, flags, uses, age_ms, (float)late / 1e3f,
                        (float)chunk_seq);
        cycle++;
    }
    rtv_rt_thread_unmark();
    return NULL;
}

/* ---- set-up and teardown ---- */

/* Backends with graphs capture one per (context, feature slot) on first use. Do all of them
 * now, with a grey frame per view, so the action thread never instantiates a graph (an
 * allocation) in its first cycles. The slots' contents are overwritten before any publish. */
static int warm_graphs(rtv_run *r)
{
    const rtv_model_cfg *mc = rtv_policy_cfg(r->policy);
    const int S = 64, n = r->n_cams;
    uint8_t *px = malloc((size_t)S * S * 3);
    float *state = calloc(RTV_MAX_DOF, sizeof(float));
    float *hist = calloc((size_t)(mc->history > 0 ? mc->history : 1) * 3 * RTV_MAX_DOF, sizeof(float));
    float *chunk = calloc((size_t)mc->chunk * RTV_MAX_DOF, sizeof(float));
    rtv_frame fr[RTV_MAX_CAMERAS];
    int st = RTV_OK;
    if (!px || !state || !hist || !chunk) {
        st = rtv_fail(RTV_E_NOMEM, "run: out of memory");
        goto done;
    }
    memset(px, 128, (size_t)S * S * 3);
    for (int v = 0; v < n; v++) fr[v] = (rtv_frame){ .rgb = px, .w = S, .h = S, .stride = 3 * S };
    for (int i = 0; i < 3 && !st; i++) {
        if ((st = rtv_gpu_split_use(RTV_GPU_SIDE_VL)) ||
            (st = rtv_policy_encode(r->vl, fr, n, r->feat[i])) ||
            (st = rtv_gpu_split_use(RTV_GPU_SIDE_ACTION)))
            break;
        st = rtv_policy_act_rt(r->act, r->feat[i], state, mc->history ? hist : NULL, 0, chunk);
    }
    if (st) rtv_fail_prefix(st, "run: graph warm-up");
done:
    free(px);
    free(state);
    free(hist);
    free(chunk);
    return st;
}

static int make_run_dir(const rtv_config *cfg, char *out, size_t n)
{
    if (mkdir(cfg->log.dir, 0755) && errno != EEXIST)
        return rtv_fail(RTV_E_OS, "%s: log.dir '%s': cannot create: %s", cfg->path, cfg->log.dir,
                        strerror(errno));
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    for (int k = 1; k < 100; k++) {
        if (k == 1) snprintf(out, n, "%s/%s", cfg->log.dir, stamp);
        else snprintf(out, n, "%s/%s-%d", cfg->log.dir, stamp, k);
        if (mkdir(out, 0755) == 0) return RTV_OK;
        if (errno != EEXIST)
            return rtv_fail(RTV_E_OS, "%s: cannot create run folder: %s", out, strerror(errno));
    }
    return rtv_fail(RTV_E_OS, "%s/%s: 99 run folders with this timestamp exist", cfg->log.dir, stamp);
}

static int alloc_buffers(rtv_run *r)
{
    size_t chunk_n = (size_t)r->horizon * (size_t)r->dof;
    for (int i = 0; i < 3; i++) {
        r->chunk_slot[i].act = calloc(chunk_n, sizeof(float));
        if (!r->chunk_slot[i].act) return rtv_fail(RTV_E_NOMEM, "run: out of memory");
        if (r->history) {
            r->state_slot[i].hist = calloc((size_t)r->history * 3 * (size_t)r->dof, sizeof(float));
            if (!r->state_slot[i].hist) return rtv_fail(RTV_E_NOMEM, "run: out of memory");
        }
    }
    if (r->history) {
        r->hist_ring = calloc((size_t)r->history * 3 * (size_t)r->dof, sizeof(float));
        r->hist_copy = calloc((size_t)r->history * 3 * (size_t)r->dof, sizeof(float));
        if (!r->hist_ring || !r->hist_copy) return rtv_fail(RTV_E_NOMEM, "run: out of memory");
    }
    rtv_tribuf_init(&r->chunk_tb);
    rtv_tribuf_init(&r->state_tb);
    return RTV_OK;
}

static void free_run(rtv_run *r)
{
    for (int i = 0; i < r->n_cams; i++) {
        if (r->cam_pinned[i]) r->b->host_unpin(r->cam_pinned[i]);
        rtv_camera_free(r->cams[i]);
    }
    for (int i = 0; i < 3; i++) {
        free(r->chunk_slot[i].act);
        free(r->state_slot[i].hist);
        if (r->feat[i]) rtv_features_free(r->policy, r->feat[i]);
    }
    free(r->hist_ring);
    free(r->hist_copy);
    rtv_chunk_exec_free(&r->exec);
    if (r->act) rtv_act_ctx_free(r->act);
    if (r->vl) rtv_vl_ctx_free(r->vl);
    if (r->policy) rtv_policy_free(r->policy);
    if (r->gpu_split) rtv_gpu_split_free();
    free(r->mb);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void status_line(rtv_run *r, uint64_t *prev, int64_t dt_ns)
{
    uint64_t ac = atomic_load(&r->act_cycles), vl = atomic_load(&r->vl_encodes);
    uint64_t ct = atomic_load(&r->ctrl_ticks), ch = atomic_load(&r->act_chunks);
    uint64_t us = atomic_load(&r->act_uses_sum);
    uint32_t d[RUN_WIN];
    int n = 0;
    for (uint64_t c = prev[0]; c < ac && n < RUN_WIN; c++)
        d[n++] = atomic_load_explicit(&r->act_dur_us[c % RUN_WIN], memory_order_relaxed);
    qsort(d, (size_t)n, sizeof(uint32_t), cmp_u32);
    double p99 = n ? d[(n * 99 + 99) / 100 - 1] / 1e3 : 0;
    double s = (double)dt_ns / 1e9;
    uint64_t misses = atomic_load(&r->act_misses) + atomic_load(&r->ctrl_misses);
    printf("\r\033[Kact %5.1f Hz p99 %6.2f ms | VL %5.1f Hz reuse %4.1f age %4u ms | ctrl %5.1f Hz"
           " | hold %llu | misses %llu",
           (double)(ac - prev[0]) / s, p99, (double)(vl - prev[1]) / s,
           ch > prev[3] ? (double)(us - prev[4]) / (double)(ch - prev[3]) : 0.0,
           atomic_load(&r->vl_age_ms), (double)(ct - prev[2]) / s,
           (unsigned long long)atomic_load(&r->ctrl_holds), (unsigned long long)misses);
    if (r->g_act.fifo_refused || r->g_ctrl.fifo_refused) printf(" | SCHED_OTHER (FIFO refused)");
    fflush(stdout);
    prev[0] = ac, prev[1] = vl, prev[2] = ct, prev[3] = ch, prev[4] = us;
}

static const char *end_name(rtv_run_end e)
{
    switch (e) {
    case RTV_RUN_END_DURATION: return "duration";
    case RTV_RUN_END_REQUEST: return "stop request";
    case RTV_RUN_END_HARD: return "second stop request: torque off now";
    case RTV_RUN_END_FAULT: return "fault: safe stop";
    case RTV_RUN_END_ERROR: return "error";
    }
    return "?";
}

/* The run's facts for summary.json's "run" member (and the top of summary.txt). */
static char *run_json(const rtv_run_result *res, const char *task, int mlocked)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "task", task);
    cJSON_AddStringToObject(o, "end", end_name(res->end));
    if (res->end_reason[0]) cJSON_AddStringToObject(o, "end_reason", res->end_reason);
    cJSON_AddNumberToObject(o, "seconds", round(res->seconds * 100) / 100);
    cJSON_AddStringToObject(o, "sched_action", res->sched_action);
    cJSON_AddStringToObject(o, "sched_control", res->sched_control);
    cJSON_AddStringToObject(o, "sched_vl", res->sched_vl);
    if (res->gpu_split[0]) cJSON_AddStringToObject(o, "gpu_split", res->gpu_split);
    cJSON_AddBoolToObject(o, "mlockall", mlocked);
    const struct { const char *k; uint64_t v; } n[] = {
        { "vl_encodes", res->vl_encodes }, { "vl_errors", res->vl_errors },
        { "action_cycles", res->act_cycles }, { "chunks", res->act_chunks },
        { "action_misses", res->act_misses }, { "stale_holds", res->act_holds },
        { "stale_used", res->act_stale }, { "encodings_never_used", res->mb_skipped },
        { "control_ticks", res->ctrl_ticks }, { "control_misses", res->ctrl_misses },
        { "control_hold_ticks", res->ctrl_holds }, { "watchdog_ticks", res->ctrl_watchdog },
        { "bus_errors", res->ctrl_bus_errors }, { "actions_consumed", res->actions_consumed },
        { "actions_skipped", res->actions_skipped },
    };
    for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++)
        cJSON_AddNumberToObject(o, n[i].k, (double)n[i].v);
    cJSON_AddNumberToObject(o, "max_move", round(res->max_move * 1000) / 1000);
    if (res->rt_alloc_counted) cJSON_AddNumberToObject(o, "rt_allocs", (double)res->rt_allocs);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int rtv_run_main(const rtv_config *cfg, const rtv_run_opts *opts, rtv_run_result *res)
{
    memset(res, 0, sizeof(*res));
    if (!opts->task || !*opts->task)
        return rtv_fail(RTV_E_ARG, "run: a task is required (--task \"...\")");
    rtv_run *r = rtv_alloc_lines(sizeof(*r)); /* its chunk and state triple buffers' indices
                                                * own cache lines */
    if (!r) return rtv_fail(RTV_E_NOMEM, "run: out of memory");
    r->cfg = cfg;
    r->opts = opts;
    int st;
    pthread_t th_vl, th_act, th_ctrl;
    int started_vl = 0, started_act = 0, started_ctrl = 0, tel_started = 0;

    rtv_rt_process proc;
    rtv_rt_process_init(&proc, 16u << 20); /* heap kept resident */

    /* model. CPU backend: one BLAS thread per calling thread, so the FIFO action thread never
     * waits on SCHED_OTHER BLAS workers busy with the VL thread's GEMMs (priority inversion). */
    if (!strcmp(cfg->model.backend, "cpu")) setenv("RTV_BLAS_THREADS", "1", 0);
    const rtv_backend *b;
    if ((st = rtv_backend_by_name(cfg->model.backend, &b))) {
        rtv_fail_prefix(st, "%s: model.backend", cfg->path);
        goto out;
    }
    r->b = b;
    if (!strcmp(cfg->model.backend, "cuda")) {
        /* The SM split comes before any stream exists (kernels/gpu_split.h). */
        rtv_gpu_split sp;
        if ((st = rtv_gpu_split_init(&sp, cfg->gpu.device, (rtv_gpu_split_mode)cfg->gpu.split_mode,
                                     cfg->gpu.action_sms))) {
            rtv_fail_prefix(st, "%s: gpu.split", cfg->path);
            goto out;
        }
        r->gpu_split = 1;
        snprintf(res->gpu_split, sizeof(res->gpu_split), "%s", sp.note);
        fprintf(stderr, "rtvla: GPU split %s\n", sp.note);
    } /* a split with the CPU backend is refused by config validation */
    if (!strcmp(cfg->model.checkpoint, "random"))
        st = rtv_policy_random(&r->policy, &cfg->model.m, b, cfg->model.seed);
    else
        st = rtv_policy_load(&r->policy, &cfg->model.m, b, cfg->model.checkpoint);
    if (st) goto out;
    const rtv_model_cfg *mc = rtv_policy_cfg(r->policy);
    r->dof = mc->robot_dof;
    r->horizon = mc->chunk;
    r->history = mc->history;
    r->n_cams = cfg->n_cameras;
    if (mc->n_views != cfg->n_cameras) {
        st = rtv_fail(RTV_E_ARG, "%s: model.views is %d but %d cameras are configured", cfg->path,
                      mc->n_views, cfg->n_cameras);
        goto out;
    }
    /* each context's stream is made on its side of the SM split */
    if ((st = rtv_gpu_split_use(RTV_GPU_SIDE_VL)) || (st = rtv_vl_ctx_new(r->policy, &r->vl)) ||
        (st = rtv_gpu_split_use(RTV_GPU_SIDE_ACTION)) ||
        (st = rtv_act_ctx_new(r->policy, &r->act)))
        goto out;
    if ((st = rtv_vl_set_task(r->vl, opts->task))) goto out;
    for (int i = 0; i < 3; i++)
        if ((st = rtv_features_new(r->policy, &r->feat[i]))) goto out;
    if (b->capture_begin && (st = warm_graphs(r))) goto out;
    r->mb = rtv_alloc_lines(sizeof(rtv_mailbox));
    if (!r->mb) {
        st = rtv_fail(RTV_E_NOMEM, "run: out of memory");
        goto out;
    }
    rtv_mailbox_cfg mbc = {
        .max_reuse = cfg->runtime.max_reuse,
        .max_age_ns = (int64_t)cfg->runtime.max_age_ms * 1000000,
        .policy = cfg->runtime.stale_policy,
        .every_n_cycles = cfg->runtime.vl_every_n_cycles,
    };
    if ((st = rtv_mailbox_init(r->mb, (void *const *)r->feat, &mbc))) {
        rtv_fail_prefix(st, "%s: runtime", cfg->path);
        goto out;
    }
    int cap = cfg->runtime.aggregate == RTV_AGG_ENSEMBLE
                  ? (int)((int64_t)r->horizon * cfg->runtime.action_hz / cfg->robot.control_hz) + 2
                  : 1;
    if ((st = rtv_chunk_exec_init(&r->exec, r->horizon, r->dof, 1000000000LL / cfg->robot.control_hz,
                                  cfg->runtime.aggregate, cfg->runtime.ensemble_decay, cap)))
        goto out;
    if ((st = alloc_buffers(r))) goto out;

    /* robot: sim started here when robot.port is "sim" */
    r->watchdog_ms = (int)(4000 / cfg->runtime.action_hz); /* 4 action periods */
    if ((st = rtv_run_robot_open(r))) goto out;

    /* cameras */
    for (int i = 0; i < r->n_cams; i++) {
        if ((st = rtv_camera_open(&r->cams[i], &cfg->cameras[i]))) goto out;
        if (b->host_pin) { /* frames reach the GPU by one DMA from the camera's buffers */
            size_t bytes = 0;
            void *buf = rtv_camera_buffer(r->cams[i], &bytes);
            if (b->host_pin(buf, bytes) == RTV_OK)
                r->cam_pinned[i] = buf;
            else /* slower (a copy on the VL thread), not wrong: run on */
                fprintf(stderr, "rtvla: camera %s: %s; its frames go through the staging copy\n",
                        rtv_camera_name(r->cams[i]), rtv_last_error());
        }
        if ((st = rtv_camera_start(r->cams[i]))) goto out;
    }

    /* run folder + telemetry */
    if ((st = make_run_dir(cfg, res->run_dir, sizeof(res->run_dir)))) goto out;
    {
        char p[sizeof(res->run_dir) + 16];
        snprintf(p, sizeof(p), "%s/config.txt", res->run_dir);
        FILE *cf = fopen(p, "w");
        if (cf) {
            fprintf(cf, "# task: %s\n", opts->task);
            rtv_config_print(cfg, cf);
            fclose(cf);
        }
    }
    if ((st = rtv_telemetry_open(&r->tel, res->run_dir, stage_defs, N_STAGES, 16384))) goto out;
    if ((st = rtv_telemetry_add_thread(r->tel, "vl", &r->ring_vl)) ||
        (st = rtv_telemetry_add_thread(r->tel, "action", &r->ring_act)) ||
        (st = rtv_telemetry_add_thread(r->tel, "control", &r->ring_ctrl)))
        goto out;
    if ((st = rtv_telemetry_start(r->tel, 0))) goto out;
    tel_started = 1;

    /* threads: control first (first state), then action, then VL */
    atomic_store(&pending_stop, 0);
    struct sigaction sa_old_int, sa_old_term;
    if (opts->signals) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &sa_old_int);
        sigaction(SIGTERM, &sa, &sa_old_term);
    }
    r->t_start_ns = rtv_clock_now_ns();
    if ((st = rtv_rt_thread_create(&th_ctrl, "control", RUN_STACK_BYTES, rtv_run_control_main, r))) goto stop;
    started_ctrl = 1;
    while (!atomic_load(&r->ctrl_started) && !atomic_load(&r->fault)) sched_yield();
    if ((st = rtv_rt_thread_create(&th_act, "action", RUN_STACK_BYTES, act_main, r))) goto stop;
    started_act = 1;
    if ((st = rtv_rt_thread_create(&th_vl, "vl", RUN_STACK_BYTES, vl_main, r))) goto stop;
    started_vl = 1;

    /* supervise */
    int show = opts->status_line >= 0 ? opts->status_line
                                      : (cfg->log.status_line && isatty(STDOUT_FILENO));
    uint64_t prev[5] = { 0 };
    int64_t last_status = r->t_start_ns;
    res->end = RTV_RUN_END_DURATION;
    for (;;) {
        rtv_clock_sleep_until(rtv_clock_now_ns() + 50000000);
        int64_t now = rtv_clock_now_ns();
        int ps = atomic_load(&pending_stop);
        if (ps) {
            res->end = ps == 2 ? RTV_RUN_END_HARD : RTV_RUN_END_REQUEST;
            break;
        }
        if (atomic_load_explicit(&r->fault, memory_order_acquire)) {
            res->end = RTV_RUN_END_FAULT;
            snprintf(res->end_reason, sizeof(res->end_reason), "%s", r->fault_msg);
            break;
        }
        if (opts->duration_s > 0 && now - r->t_start_ns >= (int64_t)(opts->duration_s * 1e9)) break;
        if (opts->on_tick) opts->on_tick(r, (now - r->t_start_ns) / 1000000, opts->user);
        if (show && now - last_status >= 1000000000LL) {
            status_line(r, prev, now - last_status);
            last_status = now;
        }
    }
    if (show) printf("\n");
    st = RTV_OK;

stop:
    /* graceful: the control thread holds and exits; hard: it exits at its next tick */
    atomic_store(&r->stop, res->end == RTV_RUN_END_HARD ? 2 : 1);
    if (r->mb) rtv_mailbox_close(r->mb);
    if (started_ctrl) pthread_join(th_ctrl, NULL);
    if (started_act) pthread_join(th_act, NULL);
    /* A second Ctrl-C during the graceful part upgrades to torque off now. */
    if (res->end == RTV_RUN_END_REQUEST && atomic_load(&pending_stop) == 2) res->end = RTV_RUN_END_HARD;
    /* torque: hard -> off now; fault -> safe stop; then the exit policy */
    if (rtv_run_robot_finish(r, res->end, &res->torque_off_at_exit))
        fprintf(stderr, "rtvla: robot close: %s\n", rtv_last_error());
    if (started_vl) pthread_join(th_vl, NULL);
    for (int i = 0; i < r->n_cams; i++) rtv_camera_stop(r->cams[i]);
    if (opts->signals) {
        sigaction(SIGINT, &sa_old_int, NULL);
        sigaction(SIGTERM, &sa_old_term, NULL);
    }
    res->seconds = (double)(rtv_clock_now_ns() - r->t_start_ns) / 1e9;

out:
    if (st && res->end != RTV_RUN_END_ERROR) {
        /* keep the message: the teardown below may overwrite this thread's buffer */
        snprintf(res->end_reason, sizeof(res->end_reason), "%s", rtv_last_error());
        res->end = RTV_RUN_END_ERROR;
    }
    /* results */
    res->vl_encodes = atomic_load(&r->vl_encodes);
    res->vl_errors = atomic_load(&r->vl_errors);
    res->act_cycles = atomic_load(&r->act_cycles);
    res->act_chunks = atomic_load(&r->act_chunks);
    res->act_holds = atomic_load(&r->act_holds);
    res->act_stale = atomic_load(&r->act_stale);
    res->act_misses = atomic_load(&r->act_misses);
    res->ctrl_ticks = atomic_load(&r->ctrl_ticks);
    res->ctrl_misses = atomic_load(&r->ctrl_misses);
    res->ctrl_holds = atomic_load(&r->ctrl_holds);
    res->ctrl_watchdog = atomic_load(&r->ctrl_watchdog);
    res->ctrl_bus_errors = atomic_load(&r->ctrl_bus_errors);
    res->actions_consumed = r->exec.n_consumed;
    res->actions_skipped = r->exec.n_skipped;
    res->chunks_received = r->exec.n_chunks;
    if (r->mb) {
        rtv_mailbox_finish(r->mb);
        res->mb_fresh = r->mb->n_fresh;
        res->mb_reused = r->mb->n_reused;
        res->mb_skipped = r->mb->n_skipped;
    }
    res->max_move = r->max_move;
    res->rt_alloc_counted = rtv_rt_alloc_counting();
    /* Both marks happened on their threads before they stopped; the count since the earlier
     * mark covers both threads' steady state (other threads are never marked). */
    if (atomic_load(&r->act_marked) || atomic_load(&r->ctrl_marked)) {
        uint64_t base = r->rt_allocs_ctrl;
        if (atomic_load(&r->act_marked) && (!atomic_load(&r->ctrl_marked) || r->rt_allocs_act < base))
            base = r->rt_allocs_act;
        res->rt_allocs = rtv_rt_alloc_count() - base;
    }
    rtv_rt_grant_str(&r->g_act, res->sched_action, sizeof(res->sched_action));
    rtv_rt_grant_str(&r->g_ctrl, res->sched_control, sizeof(res->sched_control));
    rtv_rt_grant_str(&r->g_vl, res->sched_vl, sizeof(res->sched_vl));

    if (r->robot) { /* set-up failed after the robot opened */
        int off;
        rtv_run_robot_finish(r, RTV_RUN_END_ERROR, &off);
    }
    if (r->tel) {
        if (!tel_started) {
            rtv_telemetry_close(r->tel, NULL, NULL);
        } else if (rtv_telemetry_close(r->tel, &res->tel_records, &res->tel_dropped)) {
            fprintf(stderr, "rtvla: %s\n", rtv_last_error());
        } else {
            rtv_tel_file f;
            if (rtv_tel_file_read(&f, res->run_dir) == RTV_OK) {
                char *extra = run_json(res, opts->task, proc.mlocked);
                if (rtv_tel_summarize(&f, res->run_dir, extra, opts->quiet ? NULL : stdout))
                    fprintf(stderr, "rtvla: summary: %s\n", rtv_last_error());
                cJSON_free(extra);
                rtv_tel_file_free(&f);
            } else {
                fprintf(stderr, "rtvla: %s\n", rtv_last_error());
            }
        }
    }
    free_run(r);
    free(r);
    if (st) rtv_fail(st, "%s", res->end_reason);
    return st;
}
