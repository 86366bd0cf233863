/* hal/v4l2.c — V4L2 capture through libv4l2: RGB24, mmap streaming, kernel timestamps.
 *
 * libv4l2 sits between us and the driver: asked for RGB24 it converts from the camera's
 * MJPEG or YUYV and emulates the mmap buffers, so this file only ever sees RGB24. All device
 * calls go through `ops` (hal/v4l2.h) so tests can put a fake driver underneath. */
#include "hal/v4l2.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include <libv4l2.h>
#include <linux/videodev2.h>

#include "runtime/status.h"

#define N_BUFFERS 4

static int lib_open(const char *path, int flags) { return v4l2_open(path, flags); }
static int lib_ioctl(int fd, unsigned long req, void *arg) { return v4l2_ioctl(fd, req, arg); }
static void *lib_mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)
{
    return v4l2_mmap(addr, len, prot, flags, fd, off);
}

static const rtv_v4l2_ops lib_ops = {
    .open = lib_open, .close = v4l2_close, .ioctl = lib_ioctl,
    .mmap = lib_mmap, .munmap = v4l2_munmap, .poll = poll,
};
static const rtv_v4l2_ops *ops = &lib_ops;

const rtv_v4l2_ops *rtv_v4l2_set_ops(const rtv_v4l2_ops *o)
{
    const rtv_v4l2_ops *prev = ops;
    ops = o ? o : &lib_ops;
    return prev;
}

static int xioctl(int fd, unsigned long req, void *arg)
{
    int r;
    do r = ops->ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void rtv_v4l2_fourcc_str(uint32_t f, char out[5])
{
    for (int i = 0; i < 4; i++) {
        char ch = (char)((f >> (8 * i)) & 0xff);
        out[i] = ch >= 32 && ch < 127 ? ch : '.';
    }
    out[4] = 0;
}

static int open_node(const char *path, int *fd)
{
    *fd = ops->open(path, O_RDWR | O_NONBLOCK);
    if (*fd >= 0) return RTV_OK;
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO)
        return rtv_fail(RTV_E_DEVICE, "%s: no such camera (%s); unplugged? `rtvla check` lists "
                        "the video devices present", path, strerror(e));
    if (e == EACCES || e == EPERM)
        return rtv_fail(RTV_E_OS, "%s: permission denied; add yourself to the group that owns it "
                        "(usually video): sudo usermod -aG video $USER, then log in again", path);
    if (e == EBUSY)
        return rtv_fail(RTV_E_DEVICE, "%s: device busy (another program is streaming from it)", path);
    return rtv_fail(RTV_E_OS, "%s: open: %s", path, strerror(e));
}

/* Capability set of this node (device_caps where the driver reports per-node caps). */
static uint32_t node_caps(const struct v4l2_capability *cap)
{
    return (cap->capabilities & V4L2_CAP_DEVICE_CAPS) ? cap->device_caps : cap->capabilities;
}

void rtv_v4l2_close(rtv_v4l2 *d)
{
    if (!d) return;
    if (d->fd >= 0) {
        enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        if (d->n_buf > 0) xioctl(d->fd, VIDIOC_STREAMOFF, &type);
        for (int i = 0; i < d->n_buf; i++)
            if (d->buf[i].p) ops->munmap(d->buf[i].p, d->buf[i].len);
        if (d->n_buf > 0) {
            struct v4l2_requestbuffers rb = { .count = 0, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
                                              .memory = V4L2_MEMORY_MMAP };
            xioctl(d->fd, VIDIOC_REQBUFS, &rb);
        }
        ops->close(d->fd);
    }
    memset(d->buf, 0, sizeof(d->buf));
    d->n_buf = 0;
    d->fd = -1;
}

static int fail_ioctl(rtv_v4l2 *d, int code, const char *what)
{
    int e = errno;
    if (e == ENODEV) code = RTV_E_DEVICE;
    rtv_fail(code, "%s: %s failed: %s%s", d->path, what, strerror(e),
             e == ENODEV ? " (device unplugged?)" : "");
    rtv_v4l2_close(d);
    return code;
}

int rtv_v4l2_open(rtv_v4l2 *d, const char *path, int w, int h, int fps)
{
    memset(d, 0, sizeof(*d));
    d->fd = -1;
    snprintf(d->path, sizeof(d->path), "%s", path);
    int st = open_node(path, &d->fd);
    if (st) return st;

    struct v4l2_capability cap;
    memset(&cap, 0, sizeof(cap));
    if (xioctl(d->fd, VIDIOC_QUERYCAP, &cap) < 0)
        return fail_ioctl(d, RTV_E_DEVICE, "VIDIOC_QUERYCAP (not a V4L2 device?)");
    uint32_t caps = node_caps(&cap);
    if (!(caps & V4L2_CAP_VIDEO_CAPTURE)) {
        rtv_fail(RTV_E_UNSUPPORTED, "%s: '%.32s' is not a video capture node (capabilities 0x%08x%s)",
                 path, (const char *)cap.card, caps,
                 (caps & V4L2_CAP_META_CAPTURE) ? ": a metadata node; UVC cameras use the other "
                 "/dev/videoN of the pair" : "");
        rtv_v4l2_close(d);
        return RTV_E_UNSUPPORTED;
    }
    if (!(caps & V4L2_CAP_STREAMING)) {
        rtv_fail(RTV_E_UNSUPPORTED, "%s: '%.32s' has no streaming I/O (V4L2_CAP_STREAMING); "
                 "read()-only devices are not supported", path, (const char *)cap.card);
        rtv_v4l2_close(d);
        return RTV_E_UNSUPPORTED;
    }

    struct v4l2_format fmt;
    memset(&fmt, 0, sizeof(fmt));
    fmt.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    fmt.fmt.pix.width = (uint32_t)w;
    fmt.fmt.pix.height = (uint32_t)h;
    fmt.fmt.pix.pixelformat = V4L2_PIX_FMT_RGB24;
    fmt.fmt.pix.field = V4L2_FIELD_ANY;
    if (xioctl(d->fd, VIDIOC_S_FMT, &fmt) < 0) {
        char what[96];
        snprintf(what, sizeof(what), "VIDIOC_S_FMT (RGB24 %dx%d through libv4l2's conversion)", w, h);
        return fail_ioctl(d, errno == EINVAL ? RTV_E_UNSUPPORTED : RTV_E_DEVICE, what);
    }
    if (fmt.fmt.pix.pixelformat != V4L2_PIX_FMT_RGB24) {
        char got[5];
        rtv_v4l2_fourcc_str(fmt.fmt.pix.pixelformat, got);
        rtv_fail(RTV_E_UNSUPPORTED, "%s: asked for pixel format RGB3 (RGB24), the driver set %s "
                 "and libv4l2 cannot convert it", path, got);
        rtv_v4l2_close(d);
        return RTV_E_UNSUPPORTED;
    }
    d->w = (int)fmt.fmt.pix.width;
    d->h = (int)fmt.fmt.pix.height;
    d->stride = fmt.fmt.pix.bytesperline ? (int)fmt.fmt.pix.bytesperline : d->w * 3;
    if (d->w < 1 || d->h < 1 || d->w > 16384 || d->h > 16384 || d->stride < d->w * 3 ||
        (fmt.fmt.pix.sizeimage && fmt.fmt.pix.sizeimage < (uint32_t)d->stride * (uint32_t)d->h)) {
        rtv_fail(RTV_E_DEVICE, "%s: driver format is inconsistent: %dx%d, %d bytes per row "
                 "(expected >= %d), image %u bytes", path, d->w, d->h, d->stride, d->w * 3,
                 fmt.fmt.pix.sizeimage);
        rtv_v4l2_close(d);
        return RTV_E_DEVICE;
    }

    /* Frame rate: not every driver takes S_PARM; then it runs at its own rate (fps 0 =
     * unknown) and the capture thread still reports what arrives. */
    struct v4l2_streamparm parm;
    memset(&parm, 0, sizeof(parm));
    parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    parm.parm.capture.timeperframe.numerator = 1;
    parm.parm.capture.timeperframe.denominator = (uint32_t)(fps > 0 ? fps : 30);
    if (xioctl(d->fd, VIDIOC_S_PARM, &parm) < 0) {
        memset(&parm, 0, sizeof(parm));
        parm.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        if (xioctl(d->fd, VIDIOC_G_PARM, &parm) < 0) memset(&parm, 0, sizeof(parm));
    }
    if (parm.parm.capture.timeperframe.numerator && parm.parm.capture.timeperframe.denominator)
        d->fps = (double)parm.parm.capture.timeperframe.denominator /
                 parm.parm.capture.timeperframe.numerator;

    struct v4l2_requestbuffers rb = { .count = N_BUFFERS, .type = V4L2_BUF_TYPE_VIDEO_CAPTURE,
                                      .memory = V4L2_MEMORY_MMAP };
    if (xioctl(d->fd, VIDIOC_REQBUFS, &rb) < 0) return fail_ioctl(d, RTV_E_DEVICE, "VIDIOC_REQBUFS (4 mmap buffers)");
    if (rb.count < 2) {
        rtv_fail(RTV_E_DEVICE, "%s: VIDIOC_REQBUFS gave %u buffers, expected at least 2", path, rb.count);
        rtv_v4l2_close(d);
        return RTV_E_DEVICE;
    }
    int n = rb.count > 8 ? 8 : (int)rb.count;
    d->n_buf = n; /* from here rtv_v4l2_close releases the buffers */
    for (int i = 0; i < n; i++) {
        struct v4l2_buffer b;
        memset(&b, 0, sizeof(b));
        b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b.memory = V4L2_MEMORY_MMAP;
        b.index = (uint32_t)i;
        if (xioctl(d->fd, VIDIOC_QUERYBUF, &b) < 0) return fail_ioctl(d, RTV_E_DEVICE, "VIDIOC_QUERYBUF");
        if (b.length < (uint32_t)d->stride * (uint32_t)d->h) {
            rtv_fail(RTV_E_DEVICE, "%s: buffer %d is %u bytes, a %dx%d frame needs %d", path, i,
                     b.length, d->w, d->h, d->stride * d->h);
            rtv_v4l2_close(d);
            return RTV_E_DEVICE;
        }
        void *p = ops->mmap(NULL, b.length, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, b.m.offset);
        if (p == MAP_FAILED) return fail_ioctl(d, RTV_E_OS, "mmap of a capture buffer");
        d->buf[i].p = p;
        d->buf[i].len = b.length;
    }
    for (int i = 0; i < n; i++) {
        struct v4l2_buffer b;
        memset(&b, 0, sizeof(b));
        b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b.memory = V4L2_MEMORY_MMAP;
        b.index = (uint32_t)i;
        if (xioctl(d->fd, VIDIOC_QBUF, &b) < 0) return fail_ioctl(d, RTV_E_DEVICE, "VIDIOC_QBUF");
    }
    enum v4l2_buf_type type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    if (xioctl(d->fd, VIDIOC_STREAMON, &type) < 0) return fail_ioctl(d, RTV_E_DEVICE, "VIDIOC_STREAMON");
    return RTV_OK;
}

int rtv_v4l2_grab(rtv_v4l2 *d, uint8_t *dst, int dst_stride, int timeout_ms, int64_t *t_ns,
                  uint64_t *seq, uint64_t *dropped)
{
    if (d->fd < 0) return rtv_fail(RTV_E_DEVICE, "%s: not open", d->path);
    struct pollfd pfd = { .fd = d->fd, .events = POLLIN };
    int r = ops->poll(&pfd, 1, timeout_ms);
    if (r < 0) {
        if (errno == EINTR) return RTV_V4L2_NO_FRAME;
        return rtv_fail(RTV_E_OS, "%s: poll: %s", d->path, strerror(errno));
    }
    if (r == 0) return RTV_V4L2_NO_FRAME;

    /* Dequeue everything ready and keep the newest: the reader wants "now", not a backlog. */
    struct v4l2_buffer b;
    int have = 0;
    for (;;) {
        struct v4l2_buffer nb;
        memset(&nb, 0, sizeof(nb));
        nb.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        nb.memory = V4L2_MEMORY_MMAP;
        if (xioctl(d->fd, VIDIOC_DQBUF, &nb) < 0) {
            int e = errno;
            if (e == EAGAIN) break;
            return rtv_fail(RTV_E_DEVICE, "%s: VIDIOC_DQBUF: %s%s", d->path, strerror(e),
                            e == ENODEV ? " (camera unplugged)" : "");
        }
        if (nb.index >= (uint32_t)d->n_buf)
            return rtv_fail(RTV_E_DEVICE, "%s: VIDIOC_DQBUF returned buffer %u, only %d exist",
                            d->path, nb.index, d->n_buf);
        if (have) {
            (*dropped)++;
            if (xioctl(d->fd, VIDIOC_QBUF, &b) < 0)
                return rtv_fail(RTV_E_DEVICE, "%s: VIDIOC_QBUF: %s", d->path, strerror(errno));
        }
        b = nb;
        have = 1;
    }
    if (!have) {
        if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
            return rtv_fail(RTV_E_DEVICE, "%s: poll reports an error (revents 0x%x) and no frame is "
                            "ready (camera unplugged or streaming stopped)", d->path, pfd.revents);
        return RTV_V4L2_NO_FRAME;
    }

    if (d->have_seq) {
        uint32_t gap = b.sequence - d->last_seq - 1;
        if (gap < (1u << 20)) *dropped += gap;
    }
    d->last_seq = b.sequence;
    d->have_seq = 1;

    /* The last row need not carry the row padding. */
    uint32_t need = (uint32_t)d->stride * (uint32_t)(d->h - 1) + (uint32_t)d->w * 3;
    int bad = (b.flags & V4L2_BUF_FLAG_ERROR) || (b.bytesused && b.bytesused < need);
    if (!bad) {
        if ((b.flags & V4L2_BUF_FLAG_TIMESTAMP_MASK) == V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC &&
            (b.timestamp.tv_sec || b.timestamp.tv_usec)) {
            *t_ns = (int64_t)b.timestamp.tv_sec * 1000000000 + (int64_t)b.timestamp.tv_usec * 1000;
            d->kernel_timestamps = 1;
        } else {
            *t_ns = mono_ns();
            d->kernel_timestamps = 0;
        }
        *seq = b.sequence;
        const uint8_t *src = d->buf[b.index].p;
        for (int y = 0; y < d->h; y++)
            memcpy(dst + (size_t)y * (size_t)dst_stride, src + (size_t)y * (size_t)d->stride,
                   (size_t)d->w * 3);
    }
    uint32_t used = b.bytesused, flags = b.flags;
    if (xioctl(d->fd, VIDIOC_QBUF, &b) < 0)
        return rtv_fail(RTV_E_DEVICE, "%s: VIDIOC_QBUF: %s%s", d->path, strerror(errno),
                        errno == ENODEV ? " (camera unplugged)" : "");
    if (bad)
        return rtv_fail(RTV_V4L2_BAD_FRAME, "%s: bad frame %u (%s%u bytes, expected >= %u); "
                        "skipped", d->path, b.sequence,
                        (flags & V4L2_BUF_FLAG_ERROR) ? "driver error flag, " : "", used, need);
    return RTV_OK;
}

/* ---- listing ---- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int rtv_v4l2_nodes(const char *dir, char paths[][64], int max)
{
    DIR *dp = opendir(dir);
    if (!dp) return rtv_fail(RTV_E_OS, "%s: cannot list: %s", dir, strerror(errno));
    int nums[256], n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) && n < 256) {
        const char *s = de->d_name;
        if (strncmp(s, "video", 5) || !s[5]) continue;
        char *end;
        long v = strtol(s + 5, &end, 10);
        if (*end || s[5] < '0' || s[5] > '9' || v < 0 || v > 1 << 20) continue;
        nums[n++] = (int)v;
    }
    closedir(dp);
    qsort(nums, (size_t)n, sizeof(int), cmp_int);
    int k = 0;
    for (int i = 0; i < n && k < max; i++, k++)
        snprintf(paths[k], 64, "%.40s/video%d", dir, nums[i]);
    return k;
}

/* Appends "WxH (a, b fps)" or a stepwise range for one size of one format. */
static void print_intervals(FILE *out, int fd, uint32_t pixfmt, uint32_t w, uint32_t h)
{
    struct v4l2_frmivalenum iv;
    int printed = 0;
    for (uint32_t i = 0; i < 32; i++) {
        memset(&iv, 0, sizeof(iv));
        iv.index = i;
        iv.pixel_format = pixfmt;
        iv.width = w;
        iv.height = h;
        if (xioctl(fd, VIDIOC_ENUM_FRAMEINTERVALS, &iv) < 0) break;
        if (iv.type == V4L2_FRMIVAL_TYPE_DISCRETE) {
            if (!iv.discrete.numerator) continue;
            fprintf(out, "%s%g", printed ? ", " : " (",
                    (double)iv.discrete.denominator / iv.discrete.numerator);
            printed = 1;
        } else {
            const struct v4l2_fract *lo = &iv.stepwise.max, *hi = &iv.stepwise.min; /* max interval = min fps */
            if (lo->numerator && hi->numerator)
                fprintf(out, "%s%g-%g", printed ? ", " : " (", (double)lo->denominator / lo->numerator,
                        (double)hi->denominator / hi->numerator);
            printed = 1;
            break;
        }
    }
    if (printed) fprintf(out, " fps)");
}

int rtv_v4l2_describe(const char *path, FILE *out, const char *indent)
{
    int fd;
    int st = open_node(path, &fd);
    if (st) return st;
    struct v4l2_capability cap;
    memset(&cap, 0, sizeof(cap));
    if (xioctl(fd, VIDIOC_QUERYCAP, &cap) < 0) {
        int e = errno;
        ops->close(fd);
        return rtv_fail(RTV_E_DEVICE, "%s: VIDIOC_QUERYCAP: %s (not a V4L2 device?)", path, strerror(e));
    }
    uint32_t caps = node_caps(&cap);
    if (!(caps & V4L2_CAP_VIDEO_CAPTURE)) {
        ops->close(fd);
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: '%.32s' is not a video capture node%s", path,
                        (const char *)cap.card, (caps & V4L2_CAP_META_CAPTURE) ? " (metadata)" : "");
    }
    fprintf(out, "%s%s: %.16s \"%.32s\" %.32s%s\n", indent, path, (const char *)cap.driver,
            (const char *)cap.card, (const char *)cap.bus_info,
            (caps & V4L2_CAP_STREAMING) ? "" : " (no streaming I/O: unusable)");
    char emulated[256] = "";
    for (uint32_t fi = 0; fi < 64; fi++) {
        struct v4l2_fmtdesc fd_;
        memset(&fd_, 0, sizeof(fd_));
        fd_.index = fi;
        fd_.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        if (xioctl(fd, VIDIOC_ENUM_FMT, &fd_) < 0) break;
        char cc[5];
        rtv_v4l2_fourcc_str(fd_.pixelformat, cc);
        if (fd_.flags & V4L2_FMT_FLAG_EMULATED) {
            size_t l = strlen(emulated);
            if (l + 6 < sizeof(emulated)) snprintf(emulated + l, sizeof(emulated) - l, " %s", cc);
            continue;
        }
        fprintf(out, "%s  %s", indent, cc);
        for (uint32_t si = 0; si < 64; si++) {
            struct v4l2_frmsizeenum fs;
            memset(&fs, 0, sizeof(fs));
            fs.index = si;
            fs.pixel_format = fd_.pixelformat;
            if (xioctl(fd, VIDIOC_ENUM_FRAMESIZES, &fs) < 0) break;
            if (fs.type == V4L2_FRMSIZE_TYPE_DISCRETE) {
                fprintf(out, "%s %ux%u", si ? "," : "", fs.discrete.width, fs.discrete.height);
                print_intervals(out, fd, fd_.pixelformat, fs.discrete.width, fs.discrete.height);
            } else {
                fprintf(out, " %ux%u..%ux%u", fs.stepwise.min_width, fs.stepwise.min_height,
                        fs.stepwise.max_width, fs.stepwise.max_height);
                print_intervals(out, fd, fd_.pixelformat, fs.stepwise.max_width, fs.stepwise.max_height);
                break;
            }
        }
        fprintf(out, "  [%.32s]\n", (const char *)fd_.description);
    }
    if (emulated[0]) fprintf(out, "%s  via libv4l2:%s\n", indent, emulated);
    ops->close(fd);
    return RTV_OK;
}
