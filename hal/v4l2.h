/* hal/v4l2.h — the V4L2 camera back end (hal/v4l2.c) and its device listing.
 *
 * Every call to the device goes through one table of functions, libv4l2's by default
 * (v4l2_open, v4l2_close, v4l2_ioctl, v4l2_mmap, v4l2_munmap, and poll(2)). Tests install a
 * fake driver with rtv_v4l2_set_ops() before opening anything; nothing else changes. The
 * capture path (rtv_v4l2_open/grab/close) is used by hal/camera.c from the camera's capture
 * thread; the listing functions are for `rtvla check`. None of this is real-time code.
 */
#ifndef RTV_V4L2_H
#define RTV_V4L2_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct rtv_v4l2_ops {
    int (*open)(const char *path, int flags);      /* fd, or -1 with errno */
    int (*close)(int fd);
    int (*ioctl)(int fd, unsigned long req, void *arg); /* 0, or -1 with errno */
    void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, int64_t offset);
    int (*munmap)(void *addr, size_t len);
    int (*poll)(struct pollfd *fds, nfds_t n, int timeout_ms); /* as poll(2) */
} rtv_v4l2_ops;

/* Installs ops (NULL: libv4l2's) for every later open; returns the previous table. Call it
 * while no V4L2 camera is open (tests only). */
const rtv_v4l2_ops *rtv_v4l2_set_ops(const rtv_v4l2_ops *ops);

/* One streaming device. Fields are read-only to callers. */
typedef struct rtv_v4l2 {
    char path[512];
    int fd;                  /* -1 when closed */
    int w, h, stride;        /* RGB24 frame as the driver set it: px, px, bytes per row */
    double fps;              /* driver's frame rate (0 if it does not say) */
    int kernel_timestamps;   /* 1 if the last buffer had V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC */
    int n_buf;
    struct { void *p; size_t len; } buf[8]; /* mmap'd driver buffers */
    uint32_t last_seq;       /* driver sequence of the last frame (gap = dropped frames) */
    int have_seq;
} rtv_v4l2;

/* Opens path, checks it captures video with streaming I/O, asks for RGB24 at w x h and fps,
 * maps 4 buffers, queues them and starts streaming. Errors name the device, the ioctl and
 * expected vs got. On error d is closed (fd -1). */
int rtv_v4l2_open(rtv_v4l2 *d, const char *path, int w, int h, int fps);
/* rtv_v4l2_grab's results besides RTV_OK and the negative errors. */
enum { RTV_V4L2_NO_FRAME = 1, RTV_V4L2_BAD_FRAME = 2 };
/* Waits up to timeout_ms for a frame; copies the newest ready one (older ready ones are
 * requeued and counted in *dropped, as are driver sequence gaps) into dst (w x h RGB24, row
 * stride dst_stride). Returns RTV_OK; RTV_V4L2_NO_FRAME when none came within timeout_ms;
 * RTV_V4L2_BAD_FRAME when the newest was flagged bad or short (message set, device still
 * streaming); or an error: RTV_E_DEVICE for a vanished device (ENODEV) or a driver fault.
 * *t_ns: capture time, CLOCK_MONOTONIC ns (the kernel timestamp when the driver gives a
 * monotonic one, else the host clock at dequeue). *seq: the driver's frame sequence. */
int rtv_v4l2_grab(rtv_v4l2 *d, uint8_t *dst, int dst_stride, int timeout_ms, int64_t *t_ns,
                  uint64_t *seq, uint64_t *dropped);
/* Stops streaming, unmaps, closes. Accepts a closed or zeroed device. */
void rtv_v4l2_close(rtv_v4l2 *d);

/* The video nodes in dir ("/dev" on a real system): "video<N>" names, sorted by N, written as
 * "dir/videoN" into paths. Returns how many (at most max), or a negative status. */
int rtv_v4l2_nodes(const char *dir, char paths[][64], int max);
/* Prints one device: driver, card, bus, and each format with its sizes and frame rates, e.g.
 *   /dev/video0: uvcvideo "HD USB Camera" usb-0000:00:14.0-1
 *     MJPG  1920x1080 (30, 15 fps)  1280x720 (60, 30 fps) ...
 * Formats libv4l2 emulates are listed on one line ("via libv4l2: RGB3 BGR3 ..."). Returns
 * RTV_OK, RTV_E_UNSUPPORTED for a node that does not capture video (UVC metadata nodes), or
 * an error naming the device. */
int rtv_v4l2_describe(const char *path, FILE *out, const char *indent);

/* Fourcc as 4 printable characters ("MJPG"). */
void rtv_v4l2_fourcc_str(uint32_t fourcc, char out[5]);

#endif
