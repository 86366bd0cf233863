/* tests/camera/fake_v4l2.h — a fake V4L2 driver behind hal/v4l2.h's ops table.
 *
 * "/dev/video0" is a USB-like camera: MJPG and YUYV natively, RGB3/BGR3 flagged as libv4l2
 * emulations; sizes 1280x720, 640x480 (30, 15 fps) and 320x240 (60, 30 fps); S_FMT snaps to
 * the nearest size like a driver; REQBUFS/QUERYBUF/mmap/QBUF/DQBUF with real queues
 * (EAGAIN when nothing is done; a frame due with no queued buffer is dropped and its
 * sequence number skipped); frames produced on a CLOCK_MONOTONIC schedule with
 * V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC stamps; poll() that sleeps until a frame is due.
 * "/dev/video1" is a UVC metadata node. Anything else: ENOENT.
 * Pixels: byte (x, y, c) of frame `seq` is fake_v4l2_pixel(seq, x, y, c); rows are padded
 * with `pad` bytes of 0xEE that must never reach a frame.
 */
#ifndef FAKE_V4L2_H
#define FAKE_V4L2_H

#include <stdint.h>

typedef struct fake_v4l2_cfg {
    int stall_after;    /* >= 0: produce this many frames in total, then none (stream stays up) */
    int vanish_after;   /* >= 0: after this many frames the device is unplugged: ENODEV on
                           its fds, POLLERR|POLLHUP, ENOENT on open, until fake_v4l2_replug() */
    int refuse_fmt;     /* S_FMT fails with EINVAL */
    uint32_t subst_fmt; /* S_FMT sets this pixel format instead of RGB24 (0: off) */
    int no_monotonic;   /* timestamps without the monotonic flag (TIMESTAMP_UNKNOWN) */
    int pad;            /* row padding bytes (bytesperline = 3 * w + pad) */
    int bad_every;      /* every Nth frame carries V4L2_BUF_FLAG_ERROR (0: never) */
} fake_v4l2_cfg;

typedef struct fake_v4l2_counts {
    int opens, closes, mmaps, munmaps, streamons, streamoffs;
    int open_fds, streaming;
    uint32_t produced;  /* frames produced since install (all streams) */
} fake_v4l2_counts;

/* Installs the fake (rtv_v4l2_set_ops) with cfg (NULL: all defaults: stall_after and
 * vanish_after -1); resets all state. */
void fake_v4l2_install(const fake_v4l2_cfg *cfg);
/* Restores libv4l2's ops and frees the fake's buffers. */
void fake_v4l2_uninstall(void);
/* Plugs a vanished device back in (and no longer vanishes). */
void fake_v4l2_replug(void);
/* Lets a stalled device produce frames again. */
void fake_v4l2_unstall(void);
fake_v4l2_counts fake_v4l2_get_counts(void);
/* Capture time of frame `seq` of the current stream, as its timeval stamp says (us precision). */
int64_t fake_v4l2_frame_time_ns(uint32_t seq);

static inline uint8_t fake_v4l2_pixel(uint32_t seq, int x, int y, int c)
{
    return (uint8_t)(seq * 7u + (unsigned)x * 3u + (unsigned)y * 5u + (unsigned)c * 11u);
}

#endif
