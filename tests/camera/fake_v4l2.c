/* tests/camera/fake_v4l2.c — see fake_v4l2.h. One device state, guarded by one mutex. */
#include "fake_v4l2.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <linux/videodev2.h>

#include "hal/v4l2.h"

#define FD_CAM 1000
#define FD_META 2000
#define MAXB 8

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static fake_v4l2_cfg cfg;
static fake_v4l2_counts cnt;
static int vanished;

static struct {
    int w, h, stride;
    uint32_t pixfmt;
    int fps;
    int n_buf;
    struct {
        uint8_t *p;
        size_t len;
        int state;              /* 0 dequeued (owned by the app), 1 queued, 2 done */
        struct v4l2_buffer info;
    } b[MAXB];
    int inq[MAXB], n_in;        /* FIFO of queued indices */
    int doneq[MAXB], n_done;    /* FIFO of done indices */
    int64_t t0_ns, next_ns;     /* stream start, next frame due */
    uint32_t sequence;
} dev;

static const struct { int w, h, fps[2]; } sizes[] = {
    { 1280, 720, { 30, 15 } }, { 640, 480, { 30, 15 } }, { 320, 240, { 60, 30 } },
};
#define N_SIZES 3

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int size_index(int w, int h)
{
    for (int i = 0; i < N_SIZES; i++)
        if (sizes[i].w == w && sizes[i].h == h) return i;
    return -1;
}

static int64_t period_ns(void) { return 1000000000LL / dev.fps; }

static void free_buffers(void)
{
    for (int i = 0; i < dev.n_buf; i++) free(dev.b[i].p);
    memset(dev.b, 0, sizeof(dev.b));
    dev.n_buf = dev.n_in = dev.n_done = 0;
}

/* Produces every frame due by now (mutex held). */
static void advance(void)
{
    if (!cnt.streaming || vanished) return;
    int64_t now = now_ns();
    while (dev.next_ns <= now) {
        if (cfg.stall_after >= 0 && cnt.produced >= (uint32_t)cfg.stall_after) return;
        if (cfg.vanish_after >= 0 && cnt.produced >= (uint32_t)cfg.vanish_after) {
            vanished = 1;
            return;
        }
        uint32_t seq = dev.sequence++;
        int64_t t = dev.next_ns;
        dev.next_ns += period_ns();
        cnt.produced++;
        if (dev.n_in == 0) continue; /* no buffer queued: the frame is dropped */
        int i = dev.inq[0];
        memmove(dev.inq, dev.inq + 1, sizeof(int) * (size_t)--dev.n_in);
        uint8_t *p = dev.b[i].p;
        memset(p, 0xEE, dev.b[i].len);
        for (int y = 0; y < dev.h; y++)
            for (int x = 0; x < dev.w; x++)
                for (int c = 0; c < 3; c++)
                    p[(size_t)y * (size_t)dev.stride + 3 * (size_t)x + (size_t)c] = fake_v4l2_pixel(seq, x, y, c);
        struct v4l2_buffer *bi = &dev.b[i].info;
        memset(bi, 0, sizeof(*bi));
        bi->index = (uint32_t)i;
        bi->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        bi->memory = V4L2_MEMORY_MMAP;
        bi->bytesused = (uint32_t)(dev.stride * dev.h);
        bi->length = (uint32_t)dev.b[i].len;
        bi->field = V4L2_FIELD_NONE;
        bi->sequence = seq;
        bi->flags = (cfg.no_monotonic ? V4L2_BUF_FLAG_TIMESTAMP_UNKNOWN : V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC) |
                    V4L2_BUF_FLAG_DONE;
        if (cfg.bad_every > 0 && seq % (uint32_t)cfg.bad_every == (uint32_t)cfg.bad_every - 1)
            bi->flags |= V4L2_BUF_FLAG_ERROR;
        bi->timestamp.tv_sec = t / 1000000000;
        bi->timestamp.tv_usec = (t % 1000000000) / 1000;
        dev.b[i].state = 2;
        dev.doneq[dev.n_done++] = i;
    }
}

static int f_open(const char *path, int flags)
{
    (void)flags;
    pthread_mutex_lock(&mu);
    int fd = -1;
    if (!strcmp(path, "/dev/video0") && !vanished) fd = FD_CAM;
    else if (!strcmp(path, "/dev/video1")) fd = FD_META;
    if (fd >= 0) {
        cnt.opens++;
        cnt.open_fds++;
    }
    pthread_mutex_unlock(&mu);
    if (fd < 0) errno = ENOENT;
    return fd;
}

static int f_close(int fd)
{
    pthread_mutex_lock(&mu);
    cnt.closes++;
    cnt.open_fds--;
    if (fd == FD_CAM) {
        cnt.streaming = 0;
        free_buffers();
    }
    pthread_mutex_unlock(&mu);
    return 0;
}

static int einval(void)
{
    errno = EINVAL;
    return -1;
}

static int cam_ioctl(unsigned long req, void *arg)
{
    switch (req) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof(*c));
        strcpy((char *)c->driver, "fakecam");
        strcpy((char *)c->card, "Fake Camera");
        strcpy((char *)c->bus_info, "usb-fake-1");
        c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        c->capabilities = c->device_caps | V4L2_CAP_DEVICE_CAPS | V4L2_CAP_META_CAPTURE;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *f = arg;
        static const struct { uint32_t fmt; const char *d; uint32_t flags; } fmts[] = {
            { V4L2_PIX_FMT_MJPEG, "Motion-JPEG", V4L2_FMT_FLAG_COMPRESSED },
            { V4L2_PIX_FMT_YUYV, "YUYV 4:2:2", 0 },
            { V4L2_PIX_FMT_RGB24, "RGB3", V4L2_FMT_FLAG_EMULATED },
            { V4L2_PIX_FMT_BGR24, "BGR3", V4L2_FMT_FLAG_EMULATED },
        };
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || f->index >= 4) return einval();
        uint32_t i = f->index;
        memset(f, 0, sizeof(*f));
        f->index = i;
        f->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        f->pixelformat = fmts[i].fmt;
        f->flags = fmts[i].flags;
        strcpy((char *)f->description, fmts[i].d);
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        uint32_t n = s->pixel_format == V4L2_PIX_FMT_YUYV ? 2 : N_SIZES;
        int known = s->pixel_format == V4L2_PIX_FMT_MJPEG || s->pixel_format == V4L2_PIX_FMT_YUYV ||
                    s->pixel_format == V4L2_PIX_FMT_RGB24 || s->pixel_format == V4L2_PIX_FMT_BGR24;
        if (!known || s->index >= n) return einval();
        int i = s->pixel_format == V4L2_PIX_FMT_YUYV ? (int)s->index + 1 : (int)s->index;
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = (uint32_t)sizes[i].w;
        s->discrete.height = (uint32_t)sizes[i].h;
        return 0;
    }
    case VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *v = arg;
        int i = size_index((int)v->width, (int)v->height);
        if (i < 0 || v->index >= 2) return einval();
        v->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        v->discrete.numerator = 1;
        v->discrete.denominator = (uint32_t)sizes[i].fps[v->index];
        return 0;
    }
    case VIDIOC_S_FMT: case VIDIOC_G_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return einval();
        if (req == VIDIOC_S_FMT) {
            if (cfg.refuse_fmt) return einval();
            if (cnt.streaming || dev.n_buf) {
                errno = EBUSY;
                return -1;
            }
            int best = 0, bd = 1 << 30;
            for (int i = 0; i < N_SIZES; i++) {
                int d = abs(sizes[i].w - (int)f->fmt.pix.width) + abs(sizes[i].h - (int)f->fmt.pix.height);
                if (d < bd) { bd = d; best = i; }
            }
            dev.w = sizes[best].w;
            dev.h = sizes[best].h;
            dev.stride = 3 * dev.w + cfg.pad;
            dev.pixfmt = cfg.subst_fmt ? cfg.subst_fmt : V4L2_PIX_FMT_RGB24;
            dev.fps = sizes[best].fps[0];
        }
        memset(&f->fmt.pix, 0, sizeof(f->fmt.pix));
        f->fmt.pix.width = (uint32_t)dev.w;
        f->fmt.pix.height = (uint32_t)dev.h;
        f->fmt.pix.pixelformat = dev.pixfmt;
        f->fmt.pix.field = V4L2_FIELD_NONE;
        f->fmt.pix.bytesperline = (uint32_t)dev.stride;
        f->fmt.pix.sizeimage = (uint32_t)(dev.stride * dev.h);
        return 0;
    }
    case VIDIOC_S_PARM: case VIDIOC_G_PARM: {
        struct v4l2_streamparm *p = arg;
        if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return einval();
        int i = size_index(dev.w, dev.h);
        if (i < 0) return einval();
        if (req == VIDIOC_S_PARM && p->parm.capture.timeperframe.numerator) {
            double want = (double)p->parm.capture.timeperframe.denominator /
                          p->parm.capture.timeperframe.numerator;
            dev.fps = fabs(want - sizes[i].fps[0]) <= fabs(want - sizes[i].fps[1]) ? sizes[i].fps[0]
                                                                                   : sizes[i].fps[1];
        }
        memset(&p->parm, 0, sizeof(p->parm));
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = 1;
        p->parm.capture.timeperframe.denominator = (uint32_t)dev.fps;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP) return einval();
        if (cnt.streaming) {
            errno = EBUSY;
            return -1;
        }
        free_buffers();
        uint32_t n = r->count > MAXB ? MAXB : r->count;
        for (uint32_t i = 0; i < n; i++) {
            dev.b[i].len = (size_t)dev.stride * (size_t)dev.h;
            dev.b[i].p = malloc(dev.b[i].len);
            if (!dev.b[i].p) {
                errno = ENOMEM;
                return -1;
            }
        }
        dev.n_buf = (int)n;
        r->count = n;
        return 0;
    }
    case VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= (uint32_t)dev.n_buf) return einval();
        uint32_t i = b->index;
        memset(b, 0, sizeof(*b));
        b->index = i;
        b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b->memory = V4L2_MEMORY_MMAP;
        b->length = (uint32_t)dev.b[i].len;
        b->m.offset = i * 0x100000u;
        return 0;
    }
    case VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= (uint32_t)dev.n_buf || dev.b[b->index].state != 0) return einval();
        dev.b[b->index].state = 1;
        dev.inq[dev.n_in++] = (int)b->index;
        return 0;
    }
    case VIDIOC_DQBUF: {
        struct v4l2_buffer *b = arg;
        advance();
        if (vanished) {
            errno = ENODEV;
            return -1;
        }
        if (!dev.n_done) {
            errno = EAGAIN;
            return -1;
        }
        int i = dev.doneq[0];
        memmove(dev.doneq, dev.doneq + 1, sizeof(int) * (size_t)--dev.n_done);
        dev.b[i].state = 0;
        *b = dev.b[i].info;
        return 0;
    }
    case VIDIOC_STREAMON:
        if (!dev.n_buf) return einval();
        cnt.streaming = 1;
        cnt.streamons++;
        dev.sequence = 0;
        dev.t0_ns = now_ns();
        dev.next_ns = dev.t0_ns + period_ns();
        return 0;
    case VIDIOC_STREAMOFF:
        cnt.streaming = 0;
        cnt.streamoffs++;
        for (int i = 0; i < dev.n_buf; i++) dev.b[i].state = 0;
        dev.n_in = dev.n_done = 0;
        return 0;
    }
    errno = ENOTTY;
    return -1;
}

static int f_ioctl(int fd, unsigned long req, void *arg)
{
    pthread_mutex_lock(&mu);
    int r;
    if (fd == FD_META) {
        if (req == VIDIOC_QUERYCAP) {
            struct v4l2_capability *c = arg;
            memset(c, 0, sizeof(*c));
            strcpy((char *)c->driver, "fakecam");
            strcpy((char *)c->card, "Fake Camera");
            c->device_caps = V4L2_CAP_META_CAPTURE | V4L2_CAP_STREAMING;
            c->capabilities = c->device_caps | V4L2_CAP_DEVICE_CAPS | V4L2_CAP_VIDEO_CAPTURE;
            r = 0;
        } else {
            errno = ENOTTY;
            r = -1;
        }
    } else if (fd != FD_CAM) {
        errno = EBADF;
        r = -1;
    } else if (vanished && req != VIDIOC_STREAMOFF && req != VIDIOC_REQBUFS) {
        errno = ENODEV;
        r = -1;
    } else if (vanished) {
        r = 0; /* teardown on a dead device "works" enough to release memory */
        if (req == VIDIOC_STREAMOFF) cnt.streaming = 0;
    } else {
        r = cam_ioctl(req, arg);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

static void *f_mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)
{
    (void)addr; (void)prot; (void)flags;
    pthread_mutex_lock(&mu);
    void *p = MAP_FAILED;
    uint32_t i = (uint32_t)(off / 0x100000);
    if (fd == FD_CAM && off % 0x100000 == 0 && i < (uint32_t)dev.n_buf && len == dev.b[i].len) {
        p = dev.b[i].p;
        cnt.mmaps++;
    } else {
        errno = EINVAL;
    }
    pthread_mutex_unlock(&mu);
    return p;
}

static int f_munmap(void *addr, size_t len)
{
    (void)addr; (void)len;
    pthread_mutex_lock(&mu);
    cnt.munmaps++;
    pthread_mutex_unlock(&mu);
    return 0;
}

static int f_poll(struct pollfd *fds, nfds_t n, int timeout_ms)
{
    int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int ready = 0;
        int64_t next;
        pthread_mutex_lock(&mu);
        advance();
        for (nfds_t k = 0; k < n; k++) {
            fds[k].revents = 0;
            if (fds[k].fd != FD_CAM) {
                fds[k].revents = POLLNVAL;
            } else if (vanished) {
                fds[k].revents = POLLERR | POLLHUP;
            } else if (!cnt.streaming) {
                fds[k].revents = POLLERR;
            } else if (dev.n_done) {
                fds[k].revents = POLLIN | POLLRDNORM;
            }
            if (fds[k].revents) ready++;
        }
        int stalled = cfg.stall_after >= 0 && cnt.produced >= (uint32_t)cfg.stall_after;
        next = cnt.streaming && !stalled ? dev.next_ns : end;
        pthread_mutex_unlock(&mu);
        int64_t now = now_ns();
        if (ready) return ready;
        if (now >= end) return 0;
        int64_t wake = next < end ? next : end;
        if (wake - now > 5000000) wake = now + 5000000;
        if (wake <= now) wake = now + 100000;
        struct timespec ts = { .tv_sec = wake / 1000000000, .tv_nsec = wake % 1000000000 };
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    }
}

static const rtv_v4l2_ops fake_ops = {
    .open = f_open, .close = f_close, .ioctl = f_ioctl,
    .mmap = f_mmap, .munmap = f_munmap, .poll = f_poll,
};

void fake_v4l2_install(const fake_v4l2_cfg *c)
{
    pthread_mutex_lock(&mu);
    free_buffers();
    memset(&dev, 0, sizeof(dev));
    memset(&cnt, 0, sizeof(cnt));
    vanished = 0;
    if (c) {
        cfg = *c;
    } else {
        memset(&cfg, 0, sizeof(cfg));
        cfg.stall_after = cfg.vanish_after = -1;
    }
    dev.w = 640;
    dev.h = 480;
    dev.stride = 3 * 640 + cfg.pad;
    dev.pixfmt = V4L2_PIX_FMT_RGB24;
    dev.fps = 30;
    pthread_mutex_unlock(&mu);
    rtv_v4l2_set_ops(&fake_ops);
}

void fake_v4l2_uninstall(void)
{
    rtv_v4l2_set_ops(NULL);
    pthread_mutex_lock(&mu);
    free_buffers();
    pthread_mutex_unlock(&mu);
}

void fake_v4l2_replug(void)
{
    pthread_mutex_lock(&mu);
    vanished = 0;
    cfg.vanish_after = -1;
    pthread_mutex_unlock(&mu);
}

void fake_v4l2_unstall(void)
{
    pthread_mutex_lock(&mu);
    cfg.stall_after = -1;
    if (cnt.streaming) dev.next_ns = now_ns() + period_ns();
    pthread_mutex_unlock(&mu);
}

fake_v4l2_counts fake_v4l2_get_counts(void)
{
    pthread_mutex_lock(&mu);
    fake_v4l2_counts c = cnt;
    pthread_mutex_unlock(&mu);
    return c;
}

int64_t fake_v4l2_frame_time_ns(uint32_t seq)
{
    pthread_mutex_lock(&mu);
    int64_t t = dev.t0_ns + (int64_t)(seq + 1) * period_ns();
    pthread_mutex_unlock(&mu);
    return t / 1000 * 1000;
}
