/* tests/camera/test_camera.c — synthetic and image-file cameras through the public API:
 * frame content per index, real paced timestamps, latest-frame semantics (fresh, same again,
 * stale after max age, nothing yet), config errors, and `rtvla check`'s camera section. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "hal/camera.h"
#include "runtime/config.h"
#include "runtime/status.h"

static char dir[256];

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

static rtv_camera_cfg cam_cfg(const char *name, const char *source, int w, int h, int fps, int age)
{
    rtv_camera_cfg c;
    memset(&c, 0, sizeof(c));
    snprintf(c.name, sizeof(c.name), "%s", name);
    snprintf(c.source, sizeof(c.source), "%s", source);
    c.width = w;
    c.height = h;
    c.fps = fps;
    c.max_age_ms = age;
    return c;
}

static int mentions(const char *needle) { return strstr(rtv_last_error(), needle) != NULL; }

static void test_render(void)
{
    int w = 160, h = 120;
    uint8_t *a = malloc((size_t)w * h * 3), *b = malloc((size_t)w * h * 3);
    rtv_camera_synth_render(a, w, h, w * 3, 17);
    rtv_camera_synth_render(b, w, h, w * 3, 17);
    CHECK(!memcmp(a, b, (size_t)w * h * 3));
    rtv_camera_synth_render(b, w, h, w * 3, 18);
    CHECK(memcmp(a, b, (size_t)w * h * 3) != 0);
    /* The index is readable from the code strip: cell k (of 32) is white iff bit 31-k is set. */
    uint64_t idx = 0x5a5a1234u;
    rtv_camera_synth_render(a, w, h, w * 3, idx);
    int cell = w / 64 > 1 ? w / 64 : 1;
    uint64_t got = 0;
    for (int k = 0; k < 32; k++) got = (got << 1) | (a[3 * (k * cell)] == 255);
    CHECK(got == idx);
    /* Red, green and blue shapes are all present. */
    int red = 0, green = 0, blue = 0;
    for (int i = 0; i < w * h; i++) {
        red += a[3 * i] == 220 && a[3 * i + 1] == 40;
        green += a[3 * i + 1] == 200;
        blue += a[3 * i + 2] == 220;
    }
    CHECK(red > 100 && green > 100 && blue > 100);
    free(a);
    free(b);
}

static void test_synthetic(void)
{
    int w = 160, h = 120, fps = 50, age = 250;
    rtv_camera_cfg cfg = cam_cfg("base_0_rgb", "synthetic", w, h, fps, age);
    rtv_camera *c;
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    CHECK(!strcmp(rtv_camera_name(c), "base_0_rgb"));
    rtv_frame f;
    CHECK(rtv_camera_latest_rt(c, &f) == RTV_E_TIMEOUT);
    CHECK(mentions("base_0_rgb") && mentions("no frame yet"));

    int64_t t_start = mono_ns();
    CHECK(rtv_camera_start(c) == RTV_OK);
    CHECK(rtv_camera_start(c) == RTV_E_ARG); /* twice */
    uint8_t *ref = malloc((size_t)w * h * 3);
    uint64_t first_seq = 0, last_seq = 0, n_frames = 0, wrong = 0;
    int64_t first_t = 0, last_t = 0, worst_step_err = 0, worst_age = 0;
    int got_first = 0;
    while (mono_ns() - t_start < 700000000LL) {
        int st = rtv_camera_latest_rt(c, &f);
        int64_t now = mono_ns();
        if (st == RTV_OK && (!got_first || f.seq != last_seq)) {
            CHECK(f.w == w && f.h == h && f.stride == w * 3);
            rtv_camera_synth_render(ref, w, h, w * 3, f.seq);
            if (memcmp(ref, f.rgb, (size_t)w * h * 3)) wrong++;
            if (now - f.t_capture_ns > worst_age) worst_age = now - f.t_capture_ns;
            CHECK(f.t_capture_ns >= t_start && f.t_capture_ns <= now);
            if (got_first) {
                CHECK(f.seq > last_seq);
                /* paced: frames (seq) are 20 ms apart on the capture clock */
                int64_t err = (f.t_capture_ns - last_t) - (int64_t)(f.seq - last_seq) * 20000000;
                if (llabs(err) > worst_step_err) worst_step_err = llabs(err);
            } else {
                first_seq = f.seq;
                first_t = f.t_capture_ns;
                got_first = 1;
            }
            last_seq = f.seq;
            last_t = f.t_capture_ns;
            n_frames++;
            /* Asking again at once gives the same frame, same pixels, still valid. */
            rtv_frame g;
            if (rtv_camera_latest_rt(c, &g) == RTV_OK && g.seq == f.seq) CHECK(g.rgb == f.rgb);
        } else if (st != RTV_OK) {
            CHECK_MSG(!got_first, "a running 50 fps camera went stale: %s", rtv_last_error());
        }
        sleep_ms(3);
    }
    double rate = got_first && last_seq > first_seq
                      ? (double)(last_t - first_t) / (double)(last_seq - first_seq) / 1e6 : 0;
    printf("synthetic: %llu distinct frames seen, seq %llu..%llu, %.2f ms per frame, worst step "
           "error %.2f ms, worst age %.2f ms\n", (unsigned long long)n_frames,
           (unsigned long long)first_seq, (unsigned long long)last_seq, rate,
           worst_step_err / 1e6, worst_age / 1e6);
    CHECK(wrong == 0);
    CHECK(n_frames >= 10);
    CHECK(last_seq - first_seq >= 25);
    CHECK(rate > 19.0 && rate < 21.0);          /* mean period over ~0.7 s */
    CHECK(worst_step_err < 40000000);           /* one frame's jitter on a loaded 2-core VM */
    CHECK(worst_age <= (int64_t)age * 1000000);

    rtv_camera_stats s;
    rtv_camera_get_stats(c, &s);
    CHECK(s.captured >= 25 && s.errors == 0 && s.w == w && s.h == h && s.fps == fps);
    CHECK(!strcmp(s.state, "streaming") && s.last_age_ns >= 0 && s.last_age_ns < (int64_t)age * 1000000);
    CHECK(s.kernel_timestamps == 0 && s.last_error[0] == 0);

    /* Stop: the newest frame stays readable until it is older than max_age, then stale. */
    int64_t t_stop = mono_ns();
    rtv_camera_stop(c);
    CHECK(mono_ns() - t_stop < 300000000LL);
    rtv_camera_get_stats(c, &s);
    CHECK(!strcmp(s.state, "stopped"));
    int st = rtv_camera_latest_rt(c, &f);
    int64_t t_last = f.t_capture_ns;
    if (mono_ns() - t_last < (int64_t)(age - 20) * 1000000) CHECK(st == RTV_OK);
    while (mono_ns() - t_last <= (int64_t)(age + 5) * 1000000) sleep_ms(5);
    CHECK(rtv_camera_latest_rt(c, &f) == RTV_E_TIMEOUT);
    CHECK(mentions("base_0_rgb") && mentions("no frame newer than 250 ms") && mentions("stopped"));
    CHECK(f.rgb != NULL && f.t_capture_ns == t_last); /* the stale frame is still described */

    /* It can be started again. */
    CHECK(rtv_camera_start(c) == RTV_OK);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++, sleep_ms(5)) ok = rtv_camera_latest_rt(c, &f) == RTV_OK;
    CHECK(ok);
    rtv_camera_free(c);
    rtv_camera_free(NULL);
    free(ref);
}

static void test_file(void)
{
    int w = 64, h = 48;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(i * 7 + 3);
    char path[600], src[620];
    snprintf(path, sizeof(path), "%s/cam_file.ppm", dir);
    rtv_frame img = { .rgb = px, .w = w, .h = h, .stride = w * 3 };
    CHECK(rtv_image_write_ppm(&img, path) == RTV_OK);
    snprintf(src, sizeof(src), "file:%s", path);
    rtv_camera_cfg cfg = cam_cfg("left_wrist_0_rgb", src, 640, 480, 40, 200);
    rtv_camera *c;
    CHECK(rtv_camera_open(&c, &cfg) == RTV_OK);
    if (!c) return;
    CHECK(rtv_camera_start(c) == RTV_OK);
    rtv_frame f;
    int st = RTV_E_TIMEOUT;
    for (int i = 0; i < 100 && st; i++, sleep_ms(5)) st = rtv_camera_latest_rt(c, &f);
    CHECK(st == RTV_OK);
    if (st == RTV_OK) {
        CHECK(f.w == w && f.h == h); /* the file's size, not the config's */
        CHECK(!memcmp(f.rgb, px, (size_t)w * h * 3));
    }
    sleep_ms(120);
    CHECK(rtv_camera_latest_rt(c, &f) == RTV_OK && f.seq >= 3);
    rtv_camera_free(c);
    free(px);
}

static void test_open_errors(void)
{
    rtv_camera *c = (rtv_camera *)1;
    rtv_camera_cfg cfg = cam_cfg("front", "rtsp://cam", 640, 480, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_ARG && c == NULL);
    CHECK(mentions("camera front") && mentions("rtsp://cam") && mentions("synthetic"));

    char src[700];
    snprintf(src, sizeof(src), "file:%s/no_such_image.jpg", dir);
    cfg = cam_cfg("front", src, 640, 480, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_OS && c == NULL);
    CHECK(mentions("camera front") && mentions("no_such_image.jpg"));

    char bad[600];
    snprintf(bad, sizeof(bad), "%s/cam_bad.ppm", dir);
    FILE *fp = fopen(bad, "wb");
    fputs("P6\n10 10\n255\nshort", fp);
    fclose(fp);
    snprintf(src, sizeof(src), "file:%s", bad);
    cfg = cam_cfg("front", src, 640, 480, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_INPUT && c == NULL);
    CHECK(mentions("camera front") && mentions("cam_bad.ppm") && mentions("truncated"));

    cfg = cam_cfg("", "synthetic", 640, 480, 30, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_ARG);
    cfg = cam_cfg("x", "synthetic", 640, 480, 0, 200);
    CHECK(rtv_camera_open(&c, &cfg) == RTV_E_ARG && mentions("fps 0"));
}

static void test_config_cameras(void)
{
    /* The embedded default's cameras open, run and deliver. */
    rtv_config cfg;
    rtv_config_defaults(&cfg);
    CHECK(cfg.n_cameras >= 1);
    rtv_camera *cams[RTV_MAX_CAMERAS] = { 0 };
    for (int i = 0; i < cfg.n_cameras; i++) {
        CHECK(rtv_camera_open(&cams[i], &cfg.cameras[i]) == RTV_OK);
        if (cams[i]) CHECK(rtv_camera_start(cams[i]) == RTV_OK);
    }
    sleep_ms(100);
    for (int i = 0; i < cfg.n_cameras; i++) {
        rtv_frame f;
        if (!cams[i]) continue;
        CHECK(rtv_camera_latest_rt(cams[i], &f) == RTV_OK);
        CHECK(f.w == cfg.cameras[i].width && f.h == cfg.cameras[i].height);
        rtv_camera_free(cams[i]);
    }
}

static char *capture_check(const rtv_config *cfg, int *st)
{
    char *text = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&text, &n);
    *st = rtv_camera_check(cfg, out);
    fclose(out);
    return text;
}

static void test_check(void)
{
    rtv_config cfg;
    rtv_config_defaults(&cfg);
    int st;
    char *text = capture_check(&cfg, &st);
    CHECK_MSG(st == RTV_OK, "%s", text);
    CHECK(strstr(text, "[ok]   cameras[0] base_0_rgb: synthetic: first frame after") != NULL);
    CHECK(strstr(text, "[FAIL]") == NULL);
    free(text);

    /* A missing device: FAIL with a fix; a broken file: FAIL naming the file. */
    cfg.n_cameras = 2;
    snprintf(cfg.cameras[0].source, sizeof(cfg.cameras[0].source), "/dev/video-rtvla-test-missing");
    snprintf(cfg.cameras[1].source, sizeof(cfg.cameras[1].source), "file:%s/no_such.ppm", dir);
    text = capture_check(&cfg, &st);
    CHECK(st == RTV_E_DEVICE);
    CHECK_MSG(strstr(text, "[FAIL] cameras[0] base_0_rgb: /dev/video-rtvla-test-missing: No such file") != NULL, "%s", text);
    CHECK(strstr(text, "fix: plug the camera in") != NULL);
    CHECK(strstr(text, "no_such.ppm") != NULL);
    free(text);
}

int main(int argc, char **argv)
{
    const char *d = getenv("RTV_TEST_DIR");
    snprintf(dir, sizeof(dir), "%s", d ? d : "/tmp");
    test_render();
    test_synthetic();
    test_file();
    test_open_errors();
    test_config_cameras();
    test_check();
    return check_report(argv[0]);
}
