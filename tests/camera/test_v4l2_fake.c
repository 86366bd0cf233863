/* tests/camera/test_v4l2_fake.c — the V4L2 path end to end on a fake driver (fake_v4l2.c):
 * listing (formats, sizes, rates), format negotiation and refusals, mmap streaming with
 * kernel timestamps and sequence accounting, and the faults: a stalled device (reader gets
 * "no frame newer than" within max age; capture thread counts it and reopens) and a vanished
 * device (ENODEV: counted, reopened once it is back, no crash, no leak). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/videodev2.h>

#include "check.h"
#include "fake_v4l2.h"
#include "hal/camera.h"
#include "hal/v4l2.h"
#include "runtime/status.h"

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static int mentions(const char *needle) { return strstr(rtv_last_error(), needle) != NULL; }

static fake_v4l2_cfg base_cfg(void)
{
    fake_v4l2_cfg c;
    memset(&c, 0, sizeof(c));
    c.stall_after = c.vanish_after = -1;
    return c;
}

static rtv_camera_cfg cam_cfg(const char *dev, int w, int h, int fps, int age)
{
    rtv_camera_cfg c;
    memset(&c, 0, sizeof(c));
    snprintf(c.name, sizeof(c.name), "wrist");
    snprintf(c.source, sizeof(c.source), "%s", dev);
    c.width = w;
    c.height = h;
    c.fps = fps;
    c.max_age_ms = age;
    return c;
}

static int pattern_ok(const rtv_frame *f, uint32_t seq)
{
    for (int y = 0; y < f->h; y++)
        for (int x = 0; x < f->w; x++)
            for (int c = 0; c < 3; c++)
                if (f->rgb[(size_t)y * (size_t)f->stride + 3 * (size_t)x + (size_t)c] != fake_v4l2_pixel(seq, x, y, c))
                    return 0;
    return 1;
}

static void no_leaks(const char *when)
{
    fake_v4l2_counts k = fake_v4l2_get_counts();
    CHECK_MSG(k.open_fds == 0 && k.opens == k.closes, "%s: %d opens, %d closes", when, k.opens, k.closes);
    CHECK_MSG(k.mmaps == k.munmaps, "%s: %d mmaps, %d munmaps", when, k.mmaps, k.munmaps);
    CHECK_MSG(!k.streaming, "%s: still streaming", when);
}

static void test_listing(void)
{
    fake_v4l2_install(NULL);
    char *text = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&text, &n);
    CHECK(rtv_v4l2_describe("/dev/video0", out, "") == RTV_OK);
    fclose(out);
    CHECK_MSG(strstr(text, "/dev/video0: fakecam \"Fake Camera\" usb-fake-1\n") != NULL, "%s", text);
    CHECK_MSG(strstr(text, "  MJPG 1280x720 (30, 15 fps), 640x480 (30, 15 fps), 320x240 (60, 30 fps)  [Motion-JPEG]\n") != NULL, "%s", text);
    CHECK_MSG(strstr(text, "  YUYV 640x480 (30, 15 fps), 320x240 (60, 30 fps)  [YUYV 4:2:2]\n") != NULL, "%s", text);
    CHECK_MSG(strstr(text, "  via libv4l2: RGB3 BGR3\n") != NULL, "%s", text);
    free(text);
    out = fopen("/dev/null", "w");
    CHECK(rtv_v4l2_describe("/dev/video1", out, "") == RTV_E_UNSUPPORTED);
    CHECK(mentions("/dev/video1") && mentions("metadata"));
    CHECK(rtv_v4l2_describe("/dev/video7", out, "") == RTV_E_DEVICE);
    CHECK(mentions("/dev/video7") && mentions("no such camera"));
    fclose(out);
    no_leaks("listing");
    fake_v4l2_uninstall();

    /* Node discovery: videoN only, numeric order. */
    char dir[] = "/tmp/rtv_cam_nodes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const char *names[] = { "video10", "video2", "video0", "videoX", "video", "foo", "video3a" };
    char p[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        fclose(fopen(p, "w"));
    }
    char nodes[8][64];
    int k = rtv_v4l2_nodes(dir, nodes, 8);
    CHECK(k == 3);
    if (k == 3) {
        snprintf(p, sizeof(p), "%s/video0", dir);
        CHECK(!strcmp(nodes[0], p));
        snprintf(p, sizeof(p), "%s/video2", dir);
        CHECK(!strcmp(nodes[1], p));
        snprintf(p, sizeof(p), "%s/video10", dir);
        CHECK(!strcmp(nodes[2], p));
    }
    CHECK(rtv_v4l2_nodes(dir, nodes, 2) == 2);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    CHECK(rtv_v4l2_nodes("/nonexistent-rtvla", nodes, 8) == RTV_E_OS);

    char cc[5];
    rtv_v4l2_fourcc_str(V4L2_PIX_FMT_MJPEG, cc);
    CHECK(!strcmp(cc, "MJPG"));
}

static void test_open_errors(void)
{
    rtv_camera *c;
    rtv_camera_cfg cfg = cam_cfg("/dev/video0", 640, 480, 30, 200);

    fake_v4l2_cfg f = base_cfg();
    f.refuse_fmt = 1;
    fake_v4l2_install(&f);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_UNSUPPORTED && c == NULL);
    CHECK(mentions("camera wrist") && mentions("/dev/video0") && mentions("VIDIOC_S_FMT") &&
          mentions("RGB24") && mentions("Invalid argument"));
    no_leaks("refused format");

    f = base_cfg();
    f.subst_fmt = V4L2_PIX_FMT_YUYV;
    fake_v4l2_install(&f);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_UNSUPPORTED && c == NULL);
    CHECK(mentions("/dev/video0") && mentions("the driver set YUYV") && mentions("RGB3"));
    no_leaks("substituted format");

    fake_v4l2_install(NULL);
    cfg = cam_cfg("/dev/video1", 640, 480, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_UNSUPPORTED);
    CHECK(mentions("/dev/video1") && mentions("not a video capture node") && mentions("metadata"));
    cfg = cam_cfg("/dev/video5", 640, 480, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_DEVICE);
    CHECK(mentions("camera wrist") && mentions("/dev/video5") && mentions("no such camera"));
    no_leaks("missing nodes");
    fake_v4l2_uninstall();
}

/* Raw device level: buffers, drain to newest, sequence gaps, kernel timestamps. */
static void test_raw_stream(void)
{
    fake_v4l2_cfg f = base_cfg();
    f.pad = 64;
    fake_v4l2_install(&f);
    rtv_v4l2 d;
    CHECK(rtv_v4l2_open(&d, "/dev/video0", 300, 200, 60) == RTV_OK);
    CHECK(d.w == 320 && d.h == 240 && d.stride == 320 * 3 + 64); /* snapped like a driver */
    CHECK(d.fps == 60 && d.n_buf == 4);
    fake_v4l2_counts k = fake_v4l2_get_counts();
    CHECK(k.mmaps == 4 && k.streamons == 1);

    /* Let 7+ frames fall due with nobody dequeuing: 4 fill the buffers, the rest are dropped
     * by the "driver" (no free buffer). grab keeps the newest filled one (seq 3). */
    sleep_ms(130);
    int w = d.w, h = d.h;
    uint8_t *dst = malloc((size_t)w * h * 3);
    int64_t t;
    uint64_t seq = 99, dropped = 0;
    CHECK(rtv_v4l2_grab(&d, dst, w * 3, 100, &t, &seq, &dropped) == RTV_OK);
    CHECK(seq == 3 && dropped == 3);
    rtv_frame fr = { .rgb = dst, .w = w, .h = h, .stride = w * 3 };
    CHECK(pattern_ok(&fr, 3));
    CHECK(t == fake_v4l2_frame_time_ns(3) && d.kernel_timestamps == 1);

    /* The next frame's sequence jumps over the ones dropped for lack of buffers: every
     * frame before it is either delivered (seq 3) or counted dropped. */
    uint64_t seq2 = 0;
    CHECK(rtv_v4l2_grab(&d, dst, w * 3, 100, &t, &seq2, &dropped) == RTV_OK);
    CHECK(seq2 > 6 && dropped == seq2 - 1);
    CHECK(pattern_ok(&fr, (uint32_t)seq2) && t == fake_v4l2_frame_time_ns((uint32_t)seq2));

    /* Nothing due within a 1 ms wait: "no frame", not an error. */
    uint64_t s3;
    int st = rtv_v4l2_grab(&d, dst, w * 3, 1, &t, &s3, &dropped);
    CHECK(st == RTV_OK || st == RTV_V4L2_NO_FRAME);
    rtv_v4l2_close(&d);
    rtv_v4l2_close(&d); /* twice is fine */
    no_leaks("raw stream");
    free(dst);
    fake_v4l2_uninstall();
}

static void test_capture(void)
{
    fake_v4l2_cfg f = base_cfg();
    f.pad = 32;
    fake_v4l2_install(&f);
    rtv_camera *c;
    rtv_camera_cfg cfg = cam_cfg("/dev/video0", 300, 200, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    rtv_camera_stats s;
    rtv_camera_get_stats(c, &s);
    CHECK(s.w == 320 && s.h == 240 && s.fps == 30 && !strcmp(s.state, "idle"));
    CHECK(rtv_camera_start(c) == RTV_OK);
    int64_t t0 = mono_ns();
    uint64_t last = 0, n = 0, bad_px = 0, bad_ts = 0;
    int64_t worst_age = 0;
    rtv_frame fr;
    while (mono_ns() - t0 < 600000000LL) {
        int64_t before = mono_ns();
        if (rtv_camera_latest_rt(c, &fr) == RTV_OK && (n == 0 || fr.seq != last)) {
            CHECK(n == 0 || fr.seq > last);
            if (!pattern_ok(&fr, (uint32_t)fr.seq)) bad_px++;
            if (fr.t_capture_ns != fake_v4l2_frame_time_ns((uint32_t)fr.seq)) bad_ts++;
            if (before - fr.t_capture_ns > worst_age) worst_age = before - fr.t_capture_ns;
            last = fr.seq;
            n++;
        }
        sleep_ms(4);
    }
    printf("fake capture: %llu frames seen, last seq %llu, worst age %.1f ms\n",
           (unsigned long long)n, (unsigned long long)last, worst_age / 1e6);
    CHECK(n >= 10 && bad_px == 0 && bad_ts == 0);
    CHECK(fr.w == 320 && fr.h == 240 && fr.stride == 320 * 3);
    rtv_camera_get_stats(c, &s);
    CHECK(s.captured >= 10 && s.errors == 0 && s.kernel_timestamps == 1);
    CHECK(!strcmp(s.state, "streaming"));
    rtv_camera_free(c);
    no_leaks("capture");

    /* A driver without monotonic timestamps: host time at dequeue, and stats say so. */
    f = base_cfg();
    f.no_monotonic = 1;
    fake_v4l2_install(&f);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    int64_t ts = mono_ns();
    CHECK(rtv_camera_start(c) == RTV_OK);
    int st = RTV_E_TIMEOUT;
    for (int i = 0; i < 200 && st; i++, sleep_ms(5)) st = rtv_camera_latest_rt(c, &fr);
    CHECK(st == RTV_OK && fr.t_capture_ns > ts && fr.t_capture_ns <= mono_ns());
    CHECK(fr.t_capture_ns != fake_v4l2_frame_time_ns((uint32_t)fr.seq));
    rtv_camera_get_stats(c, &s);
    CHECK(s.kernel_timestamps == 0);
    rtv_camera_free(c);
    no_leaks("host timestamps");

    /* Frames the driver flags bad are skipped and counted; the good ones keep flowing. */
    f = base_cfg();
    f.bad_every = 3;
    fake_v4l2_install(&f);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    CHECK(rtv_camera_start(c) == RTV_OK);
    sleep_ms(400);
    rtv_camera_get_stats(c, &s);
    CHECK(s.errors >= 2 && s.captured >= 4 && strstr(s.last_error, "bad frame") != NULL);
    CHECK(strstr(s.last_error, "camera wrist") && strstr(s.last_error, "/dev/video0"));
    CHECK(rtv_camera_latest_rt(c, &fr) == RTV_OK && fr.seq % 3 != 2);
    CHECK(!strcmp(s.state, "streaming") && s.reopens == 0);
    rtv_camera_free(c);
    no_leaks("bad frames");
    fake_v4l2_uninstall();
}

static void test_stall(void)
{
    fake_v4l2_cfg f = base_cfg();
    f.stall_after = 6;
    fake_v4l2_install(&f);
    rtv_camera *c;
    int age = 100;
    rtv_camera_cfg cfg = cam_cfg("/dev/video0", 640, 480, 30, age);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    CHECK(rtv_camera_start(c) == RTV_OK);
    rtv_frame fr;
    int64_t t0 = mono_ns(), t_stale = 0, t_newest = 0;
    /* Poll until the reader is told the camera is stale after its last frame (seq 5); it must
     * say so no later than max_age after that frame was captured (plus the poll period and
     * scheduling). A frame before the stall may also go stale when the machine is loaded (a
     * sanitizer build with parallel tests once delayed one by > 100 ms): that is reported
     * too, rightly, and the poll goes on. */
    while (mono_ns() - t0 < 2000000000LL) {
        int st = rtv_camera_latest_rt(c, &fr);
        if (st == RTV_E_TIMEOUT && fr.seq == 5) { /* *fr still describes the stale frame */
            t_stale = mono_ns();
            t_newest = fr.t_capture_ns;
            break;
        }
        sleep_ms(2);
    }
    CHECK(t_stale != 0);
    CHECK(fr.seq == 5);
    int64_t late_ms = (t_stale - t_newest) / 1000000;
    printf("stall: reader told %lld ms after the newest frame (max_age %d ms)\n", (long long)late_ms, age);
    CHECK(late_ms >= age && late_ms <= age + 40);
    CHECK(mentions("camera wrist (/dev/video0): no frame newer than 100 ms"));

    /* The capture thread notices (no frame for 500 ms), counts it, reopens the device. */
    rtv_camera_stats s;
    int64_t t1 = mono_ns();
    do {
        sleep_ms(20);
        rtv_camera_get_stats(c, &s);
    } while (s.reopens == 0 && mono_ns() - t1 < 2000000000LL);
    CHECK(s.errors >= 1 && s.reopens >= 1);
    CHECK(strstr(s.last_error, "camera wrist (/dev/video0): no frame for") != NULL);
    CHECK(strstr(s.last_error, "stalled") != NULL);
    CHECK(rtv_camera_latest_rt(c, &fr) == RTV_E_TIMEOUT);

    /* The device recovers: fresh frames again, seq still growing across the reopen. */
    fake_v4l2_unstall();
    int st = RTV_E_TIMEOUT;
    for (int i = 0; i < 300 && st; i++, sleep_ms(5)) st = rtv_camera_latest_rt(c, &fr);
    CHECK(st == RTV_OK && fr.seq > 5);
    int64_t t_stop = mono_ns();
    rtv_camera_free(c);
    CHECK(mono_ns() - t_stop < 300000000LL);
    no_leaks("stall");
    fake_v4l2_uninstall();
}

static void test_vanish(void)
{
    fake_v4l2_cfg f = base_cfg();
    f.vanish_after = 8;
    fake_v4l2_install(&f);
    rtv_camera *c;
    rtv_camera_cfg cfg = cam_cfg("/dev/video0", 640, 480, 30, 150);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    CHECK(rtv_camera_start(c) == RTV_OK);
    rtv_camera_stats s;
    int64_t t0 = mono_ns();
    do {
        sleep_ms(10);
        rtv_camera_get_stats(c, &s);
    } while (s.errors == 0 && mono_ns() - t0 < 2000000000LL);
    CHECK(s.errors >= 1 && s.captured >= 1 && s.captured <= 8);
    /* the DQBUF ENODEV message, or already the first reopen attempt's */
    CHECK_MSG(strstr(s.last_error, "/dev/video0") &&
              (strstr(s.last_error, "No such device") || strstr(s.last_error, "no such camera")),
              "%s", s.last_error);
    uint64_t seq_before = 0;
    rtv_frame fr;
    rtv_camera_latest_rt(c, &fr);
    seq_before = fr.seq;

    /* While unplugged: reopen attempts every 500 ms, each a counted error; reader stale. */
    sleep_ms(1100);
    rtv_camera_get_stats(c, &s);
    CHECK(s.errors >= 3 && !strcmp(s.state, "reopening"));
    CHECK(strstr(s.last_error, "reopen failed") && strstr(s.last_error, "no such camera"));
    CHECK(rtv_camera_latest_rt(c, &fr) == RTV_E_TIMEOUT);
    CHECK(mentions("no frame newer than 150 ms") && mentions("reopening"));
    fake_v4l2_counts k = fake_v4l2_get_counts();
    CHECK(k.open_fds == 0 && k.mmaps == k.munmaps); /* the dead device was released */

    /* Plugged back in: frames again, seq beyond the old ones. */
    fake_v4l2_replug();
    int st = RTV_E_TIMEOUT;
    for (int i = 0; i < 400 && st; i++, sleep_ms(5)) st = rtv_camera_latest_rt(c, &fr);
    CHECK(st == RTV_OK && fr.seq > seq_before);
    /* after a reopen seq = (newest seq before) + 1 + the new stream's driver sequence */
    CHECK(pattern_ok(&fr, (uint32_t)(fr.seq - seq_before - 1)));
    rtv_camera_get_stats(c, &s);
    CHECK(s.reopens == 1 && !strcmp(s.state, "streaming"));
    rtv_camera_free(c);
    no_leaks("vanish");
    fake_v4l2_uninstall();
}

int main(int argc, char **argv)
{
    test_listing();
    test_open_errors();
    test_raw_stream();
    test_capture();
    test_stall();
    test_vanish();
    return check_report(argv[0]);
}
