/* hal/camera.h — camera sources and the newest-frame slot the VL thread reads.
 *
 * A camera is opened from one rtv_camera_cfg; its `source` picks the back end:
 *   "synthetic"    moving coloured shapes, a pure function of the frame index, paced at cfg.fps
 *                  with real CLOCK_MONOTONIC timestamps (tests, CI, the default demo);
 *   "file:PATH"    a PPM (P6) or JPEG shown as a camera at cfg.fps (its own size, not cfg's);
 *   anything else  a V4L2 device path ("/dev/video0", "/dev/v4l/by-id/..."), through libv4l2:
 *                  RGB24 (libv4l2 converts MJPEG/YUYV), cfg size/fps (the driver may adjust
 *                  them: rtv_camera_get_stats says what it gave), mmap streaming with 4 buffers,
 *                  kernel timestamps (CLOCK_MONOTONIC).
 *
 * Threads and ownership. rtv_camera_open/start/stop/free and rtv_camera_check are init-time
 * calls from one control thread. rtv_camera_start() spawns one capture thread (SCHED_OTHER)
 * that writes each frame into the back buffer of a lock-free triple buffer and publishes it
 * with one atomic exchange. One reader thread (the VL thread) calls rtv_camera_latest_rt(): it
 * never blocks, never allocates, takes no lock; the frame it gets stays valid and unchanged
 * until that reader's next rtv_camera_latest_rt() or rtv_camera_stop().
 *
 * Faults. A device that stops delivering (no frame within max(500 ms, 4 periods)) or vanishes
 * (ENODEV, unplugged) costs a counted error; the capture thread closes it and reopens it every
 * 500 ms until it streams again or the camera is stopped. The reader meanwhile gets
 * RTV_E_TIMEOUT "camera NAME: no frame newer than X ms ..." once its newest frame is older
 * than cfg.max_age_ms. Nothing on these paths exits or aborts.
 */
#ifndef RTV_CAMERA_H
#define RTV_CAMERA_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/config.h"
#include "vision/image.h"

typedef struct rtv_camera rtv_camera;

typedef struct rtv_camera_stats {
    uint64_t captured;      /* frames published to the slot */
    uint64_t dropped;       /* frames lost before publishing: driver sequence gaps, buffers
                               skipped to reach the newest, synthetic periods missed */
    uint64_t unread;        /* published frames replaced before the reader took them (normal
                               when the camera is faster than the reader) */
    uint64_t errors;        /* stalls, device errors, failed reopen attempts */
    uint64_t reopens;       /* successful reopens after a fault */
    int64_t last_age_ns;    /* now - capture time of the newest published frame; -1: none yet */
    int w, h;               /* frame size actually delivered, px */
    double fps;             /* frame rate the source runs at (driver's answer for V4L2), Hz */
    int kernel_timestamps;  /* 1: t_capture_ns is the driver's CLOCK_MONOTONIC stamp;
                               0: taken on the host when the frame was read */
    char state[16];         /* "idle" | "streaming" | "stalled" | "reopening" | "stopped" */
    char last_error[256];   /* the last fault's message ("" if none) */
} rtv_camera_stats;

/* Opens the source (V4L2: opens the device, sets format and rate, maps the buffers; file:
 * decodes the image) and allocates the three frame buffers. Does not start capturing.
 * Errors name the camera, the device or file, and what was expected vs got. *out is NULL on
 * error. */
int rtv_camera_open(rtv_camera **out, const rtv_camera_cfg *cfg);
/* Spawns the capture thread. */
int rtv_camera_start(rtv_camera *c);
/* The newest frame if it is at most cfg.max_age_ms old (by its capture time vs
 * CLOCK_MONOTONIC now). Returns RTV_OK and fills *out; or RTV_E_TIMEOUT naming the camera,
 * the age of its newest frame (or "no frame yet") and the source's state; *out then still
 * describes the stale frame (or is zeroed when there is none). Reader thread only; real-time
 * safe. out->rgb stays valid and unchanged until this reader's next call or rtv_camera_free(). */
int rtv_camera_latest_rt(rtv_camera *c, rtv_frame *out);
/* Joins the capture thread (returns within about 100 ms); a V4L2 device stays open. The last
 * frame stays readable; rtv_camera_start() may be called again. */
void rtv_camera_stop(rtv_camera *c);
/* Stops if needed, closes the source, frees everything. Accepts NULL. */
void rtv_camera_free(rtv_camera *c);

/* Counters and state, for the status line and `rtvla check`. Any thread; may briefly take a
 * lock shared with the capture thread's error path (never with the reader). */
void rtv_camera_get_stats(rtv_camera *c, rtv_camera_stats *out);
const char *rtv_camera_name(const rtv_camera *c);
/* The memory every frame rtv_camera_latest_rt() hands out lies in (the frame slot's buffers),
 * for page-locking it once (rtv_backend.host_pin); *bytes gets its size. Fixed from
 * rtv_camera_open() to rtv_camera_free(). */
void *rtv_camera_buffer(rtv_camera *c, size_t *bytes);

/* `rtvla check`: lists V4L2 devices (driver, card, bus, stable /dev/v4l/by-id names, formats
 * with sizes and frame rates), checks each configured camera (device present, read/write
 * permission with the video-group fix, a first frame within 3 s, size/fps as asked) and prints
 * checklist lines "  [ok]   ...", "  [FAIL] ..." / "  [warn] ..." with "fix: ..." lines.
 * Returns RTV_OK when every configured camera delivered a frame, else RTV_E_DEVICE. */
int rtv_camera_check(const rtv_config *cfg, FILE *out);

/* Renders synthetic frame `index` (RGB24, w x h, row stride `stride` bytes): what the
 * "synthetic" source delivers with seq == index. Deterministic; tests compare against it. */
void rtv_camera_synth_render(uint8_t *rgb, int w, int h, int stride, uint64_t index);

#endif
