/* hal/camera.c — one camera: its source, its capture thread, its newest-frame slot.
 *
 * The capture thread loops: grab one frame from the source into the slot's back buffer
 * (waiting at most SLICE_MS so a stop is seen quickly), publish it, count. A source that
 * delivers nothing for stall_ns, or fails, costs one counted error; a V4L2 device is then
 * closed and reopened every REOPEN_MS until it streams again. The reader side
 * (rtv_camera_latest_rt) only touches the slot and a few atomics. */
#include "hal/camera.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hal/camera_slot.h"
#include "hal/v4l2.h"
#include "runtime/rt.h"
#include "runtime/status.h"

#define SLICE_MS 100
#define REOPEN_MS 500
#define STALL_MIN_MS 500
#define FIRST_FRAME_MS 2000 /* after (re)open: UVC cameras take up to a second to start */

typedef enum src_kind { SRC_SYNTH, SRC_FILE, SRC_V4L2 } src_kind;
enum { ST_IDLE, ST_STREAMING, ST_STALLED, ST_REOPENING, ST_STOPPED };
static const char *const state_names[] = { "idle", "streaming", "stalled", "reopening", "stopped" };

struct rtv_camera {
    rtv_camera_cfg cfg;
    src_kind kind;
    const char *what;           /* device path, file path, or "synthetic" (into cfg.source) */
    rtv_frameslot slot;

    /* Source state: written at open, then by the capture thread only. */
    rtv_v4l2 dev;               /* SRC_V4L2 */
    rtv_frame image;            /* SRC_FILE: decoded picture (owned) */
    int64_t period_ns;          /* paced sources: 1e9 / fps */
    int64_t t0_ns;              /* paced sources: time of frame index 0 */
    uint64_t next_index;        /* paced sources: next frame index to deliver */
    uint64_t seq_base;          /* SRC_V4L2: added to the driver's sequence, so seq keeps
                                   growing across reopens */
    uint64_t last_seq;
    int64_t stall_ns;

    pthread_t thread;
    int thread_started;         /* w/r: control thread */
    atomic_int running;         /* w:control r:capture */
    atomic_int state;           /* w:capture (control at start/stop) r:any; ST_* */
    atomic_int kernel_ts;       /* w:capture r:any */
    atomic_int fps_mhz;         /* w:open, capture (reopen) r:any; source rate, millihertz */
    atomic_uint_fast64_t captured, dropped, unread, errors, reopens; /* w:capture r:any, relaxed */
    atomic_int_fast64_t last_t_ns; /* w:capture r:any; capture time of the newest publish */

    pthread_mutex_t err_lock;   /* guards last_error: capture thread's fault path vs stats */
    char last_error[256];
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = { .tv_sec = t_ns / 1000000000, .tv_nsec = t_ns % 1000000000 };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

const char *rtv_camera_name(const rtv_camera *c) { return c ? c->cfg.name : "(null)"; }

void *rtv_camera_buffer(rtv_camera *c, size_t *bytes)
{
    *bytes = 3 * (size_t)c->slot.h * (size_t)c->slot.stride;
    return c->slot.pixels;
}

static void record_error(rtv_camera *c, const char *msg)
{
    atomic_fetch_add_explicit(&c->errors, 1, memory_order_relaxed);
    pthread_mutex_lock(&c->err_lock);
    size_t n = strnlen(msg, sizeof(c->last_error) - 1); /* long messages are cut */
    memcpy(c->last_error, msg, n);
    c->last_error[n] = 0;
    pthread_mutex_unlock(&c->err_lock);
}

int rtv_camera_open(rtv_camera **out, const rtv_camera_cfg *cfg)
{
    *out = NULL;
    if (!cfg->name[0]) return rtv_fail(RTV_E_ARG, "camera: empty name (cameras[].name is required)");
    if (cfg->fps < 1 || cfg->fps > 1000 || cfg->max_age_ms < 1 || cfg->width < 1 || cfg->height < 1)
        return rtv_fail(RTV_E_ARG, "camera %s: width %d, height %d, fps %d, max_age_ms %d: "
                        "expected all >= 1 (fps <= 1000)", cfg->name, cfg->width, cfg->height,
                        cfg->fps, cfg->max_age_ms);
    rtv_camera *c = rtv_alloc_lines(sizeof(*c)); /* its frame slot's members own lines */
    if (!c) return rtv_fail(RTV_E_NOMEM, "camera %s: no memory", cfg->name);
    c->cfg = *cfg;
    c->cfg.name[sizeof(c->cfg.name) - 1] = 0;
    c->cfg.source[sizeof(c->cfg.source) - 1] = 0;
    c->dev.fd = -1;
    pthread_mutex_init(&c->err_lock, NULL);
    atomic_init(&c->running, 0);
    atomic_init(&c->state, ST_IDLE);
    atomic_init(&c->kernel_ts, 0);
    atomic_init(&c->fps_mhz, cfg->fps * 1000);
    atomic_init(&c->last_t_ns, INT64_MIN);
    c->period_ns = 1000000000LL / cfg->fps;
    int64_t stall = 4 * c->period_ns;
    c->stall_ns = stall > STALL_MIN_MS * 1000000LL ? stall : STALL_MIN_MS * 1000000LL;

    int st = RTV_OK, w = cfg->width, h = cfg->height;
    const char *src = c->cfg.source;
    if (!strcmp(src, "synthetic")) {
        c->kind = SRC_SYNTH;
        c->what = src;
    } else if (!strncmp(src, "file:", 5)) {
        c->kind = SRC_FILE;
        c->what = src + 5;
        if ((st = rtv_image_load(&c->image, c->what))) goto fail;
        w = c->image.w;
        h = c->image.h;
    } else if (src[0] == '/') {
        c->kind = SRC_V4L2;
        c->what = src;
        if ((st = rtv_v4l2_open(&c->dev, src, cfg->width, cfg->height, cfg->fps))) goto fail;
        w = c->dev.w;
        h = c->dev.h;
        atomic_store(&c->kernel_ts, 1); /* assumed until a buffer says otherwise */
        atomic_store(&c->fps_mhz, (int)(c->dev.fps * 1000 + 0.5));
    } else {
        st = rtv_fail(RTV_E_ARG, "source '%s': expected synthetic, file:PATH or a V4L2 device "
                      "path such as /dev/video0", src);
        goto fail;
    }
    if ((st = rtv_frameslot_init(&c->slot, w, h))) goto fail;
    *out = c;
    return RTV_OK;
fail:
    rtv_fail_prefix(st, "camera %s", cfg->name);
    rtv_camera_free(c);
    return st;
}

/* Paced sources (synthetic, file): frame k is due at t0 + k * period. Late by whole periods:
 * skip ahead and count them dropped, never deliver a burst. */
static int grab_paced(rtv_camera *c, uint8_t *dst, int64_t *t_ns, uint64_t *seq, uint64_t *dropped)
{
    int64_t due = c->t0_ns + (int64_t)c->next_index * c->period_ns;
    int64_t now = mono_ns();
    if (now < due) {
        int64_t wake = now + SLICE_MS * 1000000LL;
        sleep_until(due < wake ? due : wake);
        now = mono_ns();
        if (now < due) return RTV_V4L2_NO_FRAME;
    }
    int64_t late = (now - due) / c->period_ns;
    if (late > 0) {
        *dropped += (uint64_t)late;
        c->next_index += (uint64_t)late;
    }
    uint64_t k = c->next_index++;
    if (c->kind == SRC_SYNTH) {
        rtv_camera_synth_render(dst, c->slot.w, c->slot.h, c->slot.stride, k);
    } else {
        for (int y = 0; y < c->slot.h; y++)
            memcpy(dst + (size_t)y * (size_t)c->slot.stride,
                   c->image.rgb + (size_t)y * (size_t)c->image.stride, (size_t)c->slot.w * 3);
    }
    *t_ns = mono_ns();
    *seq = k;
    return RTV_OK;
}

/* Closes and reopens a V4L2 device; the frame size must not change (the slot is sized). */
static int reopen_v4l2(rtv_camera *c)
{
    rtv_v4l2_close(&c->dev);
    int st = rtv_v4l2_open(&c->dev, c->what, c->cfg.width, c->cfg.height, c->cfg.fps);
    if (st) return st;
    if (c->dev.w != c->slot.w || c->dev.h != c->slot.h) {
        rtv_fail(RTV_E_DEVICE, "%s: reopened at %dx%d, was %dx%d; the frame size may not change "
                 "while running", c->what, c->dev.w, c->dev.h, c->slot.w, c->slot.h);
        rtv_v4l2_close(&c->dev);
        return RTV_E_DEVICE;
    }
    c->seq_base = c->last_seq + 1;
    atomic_store_explicit(&c->fps_mhz, (int)(c->dev.fps * 1000 + 0.5), memory_order_relaxed);
    return RTV_OK;
}

static void *capture_main(void *arg)
{
    rtv_camera *c = arg;
    char tname[16];
    snprintf(tname, sizeof(tname), "cam:%.11s", c->cfg.name);
    pthread_setname_np(pthread_self(), tname);
    char msg[RTV_ERR_MAX];

    int64_t last_frame_ns = mono_ns();
    int64_t allowance_ns = c->kind == SRC_V4L2 ? FIRST_FRAME_MS * 1000000LL : c->stall_ns;
    if (allowance_ns < c->stall_ns) allowance_ns = c->stall_ns;
    while (atomic_load_explicit(&c->running, memory_order_acquire)) {
        if (atomic_load_explicit(&c->state, memory_order_relaxed) == ST_REOPENING) {
            if (reopen_v4l2(c) == RTV_OK) {
                atomic_fetch_add_explicit(&c->reopens, 1, memory_order_relaxed);
                atomic_store_explicit(&c->state, ST_STREAMING, memory_order_relaxed);
                last_frame_ns = mono_ns();
                allowance_ns = FIRST_FRAME_MS * 1000000LL;
            } else {
                snprintf(msg, sizeof(msg), "camera %s: reopen failed: %s", c->cfg.name, rtv_last_error());
                record_error(c, msg);
                int64_t until = mono_ns() + REOPEN_MS * 1000000LL;
                while (atomic_load_explicit(&c->running, memory_order_acquire) && mono_ns() < until)
                    sleep_until(mono_ns() + SLICE_MS * 1000000LL);
            }
            continue;
        }

        uint8_t *dst = rtv_frameslot_back_rt(&c->slot);
        int64_t t_ns = 0;
        uint64_t seq = 0, dropped = 0;
        int st = c->kind == SRC_V4L2
                     ? rtv_v4l2_grab(&c->dev, dst, c->slot.stride, SLICE_MS, &t_ns, &seq, &dropped)
                     : grab_paced(c, dst, &t_ns, &seq, &dropped);
        if (dropped) atomic_fetch_add_explicit(&c->dropped, dropped, memory_order_relaxed);
        if (st == RTV_OK) {
            if (c->kind == SRC_V4L2) {
                seq += c->seq_base;
                c->last_seq = seq;
                atomic_store_explicit(&c->kernel_ts, c->dev.kernel_timestamps, memory_order_relaxed);
            }
            if (rtv_frameslot_publish_rt(&c->slot, t_ns, seq))
                atomic_fetch_add_explicit(&c->unread, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->captured, 1, memory_order_relaxed);
            atomic_store_explicit(&c->last_t_ns, t_ns, memory_order_relaxed);
            atomic_store_explicit(&c->state, ST_STREAMING, memory_order_relaxed);
            last_frame_ns = mono_ns();
            allowance_ns = c->stall_ns;
            continue;
        }
        if (st == RTV_V4L2_NO_FRAME) {
            int64_t quiet = mono_ns() - last_frame_ns;
            if (quiet <= allowance_ns) continue;
            snprintf(msg, sizeof(msg), "camera %s (%s): no frame for %lld ms (stalled)%s",
                     c->cfg.name, c->what, (long long)(quiet / 1000000),
                     c->kind == SRC_V4L2 ? "; reopening the device" : "");
            record_error(c, msg);
            last_frame_ns = mono_ns();
            atomic_store_explicit(&c->state, c->kind == SRC_V4L2 ? ST_REOPENING : ST_STALLED,
                                  memory_order_relaxed);
            continue;
        }
        if (st == RTV_V4L2_BAD_FRAME) {
            snprintf(msg, sizeof(msg), "camera %s: %s", c->cfg.name, rtv_last_error());
            record_error(c, msg);
            continue;
        }
        /* A device error (unplugged, driver fault): close now, reopen on the next turn. */
        snprintf(msg, sizeof(msg), "camera %s: %s; reopening every %d ms", c->cfg.name,
                 rtv_last_error(), REOPEN_MS);
        record_error(c, msg);
        rtv_v4l2_close(&c->dev);
        atomic_store_explicit(&c->state, ST_REOPENING, memory_order_relaxed);
    }
    return NULL;
}

int rtv_camera_start(rtv_camera *c)
{
    if (c->thread_started) return rtv_fail(RTV_E_ARG, "camera %s: already started", c->cfg.name);
    if (c->kind == SRC_V4L2 && c->dev.fd < 0)
        atomic_store(&c->state, ST_REOPENING);
    else
        atomic_store(&c->state, ST_STREAMING);
    c->t0_ns = mono_ns();
    c->next_index = 0;
    atomic_store_explicit(&c->running, 1, memory_order_release);
    int e = pthread_create(&c->thread, NULL, capture_main, c);
    if (e) {
        atomic_store(&c->running, 0);
        atomic_store(&c->state, ST_IDLE);
        return rtv_fail(RTV_E_OS, "camera %s: cannot start the capture thread: %s", c->cfg.name,
                        strerror(e));
    }
    c->thread_started = 1;
    return RTV_OK;
}

void rtv_camera_stop(rtv_camera *c)
{
    if (!c || !c->thread_started) return;
    atomic_store_explicit(&c->running, 0, memory_order_release);
    pthread_join(c->thread, NULL);
    c->thread_started = 0;
    atomic_store(&c->state, ST_STOPPED);
}

void rtv_camera_free(rtv_camera *c)
{
    if (!c) return;
    rtv_camera_stop(c);
    rtv_v4l2_close(&c->dev);
    rtv_image_free(&c->image);
    rtv_frameslot_free(&c->slot);
    pthread_mutex_destroy(&c->err_lock);
    free(c);
}

int rtv_camera_latest_rt(rtv_camera *c, rtv_frame *out)
{
    int r = rtv_frameslot_take_rt(&c->slot, out);
    int state = atomic_load_explicit(&c->state, memory_order_relaxed);
    unsigned long long errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
    if (r < 0)
        return rtv_fail(RTV_E_TIMEOUT, "camera %s (%s): no frame yet (source %s, %llu errors)",
                        c->cfg.name, c->what, state_names[state], errors);
    int64_t age = mono_ns() - out->t_capture_ns;
    if (age > (int64_t)c->cfg.max_age_ms * 1000000)
        return rtv_fail(RTV_E_TIMEOUT, "camera %s (%s): no frame newer than %d ms (newest is %lld "
                        "ms old; source %s, %llu errors)", c->cfg.name, c->what, c->cfg.max_age_ms,
                        (long long)(age / 1000000), state_names[state], errors);
    return RTV_OK;
}

void rtv_camera_get_stats(rtv_camera *c, rtv_camera_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->captured = atomic_load_explicit(&c->captured, memory_order_relaxed);
    s->dropped = atomic_load_explicit(&c->dropped, memory_order_relaxed);
    s->unread = atomic_load_explicit(&c->unread, memory_order_relaxed);
    s->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
    s->reopens = atomic_load_explicit(&c->reopens, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&c->last_t_ns, memory_order_relaxed);
    s->last_age_ns = t == INT64_MIN ? -1 : mono_ns() - t;
    s->w = c->slot.w;
    s->h = c->slot.h;
    s->fps = atomic_load_explicit(&c->fps_mhz, memory_order_relaxed) / 1000.0;
    s->kernel_timestamps = c->kind == SRC_V4L2 && atomic_load(&c->kernel_ts);
    snprintf(s->state, sizeof(s->state), "%s", state_names[atomic_load(&c->state)]);
    pthread_mutex_lock(&c->err_lock);
    snprintf(s->last_error, sizeof(s->last_error), "%s", c->last_error);
    pthread_mutex_unlock(&c->err_lock);
}
