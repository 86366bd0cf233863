/* tests/camera/test_image.c — vision/image.c: PPM and JPEG in, PPM out, and every way a file
 * can be wrong giving an error that names it. JPEGs are written here with libjpeg. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "check.h"
#include "runtime/status.h"
#include "vision/image.h"

static char dir[512];

static const char *path_of(const char *name)
{
    static char buf[4][768];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    fwrite(p, 1, n, f);
    fclose(f);
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *p = malloc(*n);
    if (fread(p, 1, *n, f) != *n) exit(1);
    fclose(f);
    return p;
}

/* Writes rgb (w x h x comps) as a JPEG; comps 1 = greyscale, 3 = RGB, 4 = CMYK. */
static void write_jpeg(const char *path, const uint8_t *px, int w, int h, int comps, int quality)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    FILE *f = fopen(path, "wb");
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    if (comps == 3) { /* 4:4:4: chroma at full resolution, so the tolerance below is about quantization */
        ci.comp_info[0].h_samp_factor = ci.comp_info[0].v_samp_factor = 1;
    }
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * (size_t)w * (size_t)comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

/* Smooth colour field: JPEG-friendly, every channel varies. */
static uint8_t *smooth_image(int w, int h)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * (size_t)w + (size_t)x) * 3;
            q[0] = (uint8_t)(255 * x / (w - 1));
            q[1] = (uint8_t)(255 * y / (h - 1));
            q[2] = (uint8_t)(128 + 100 * (x - y) / (w + h));
        }
    return p;
}

static int mentions(const char *needle) { return strstr(rtv_last_error(), needle) != NULL; }

static void test_ppm_roundtrip(void)
{
    /* A frame with row padding: the writer must use the stride, the reader gives stride 3w. */
    int w = 37, h = 11, stride = 37 * 3 + 9;
    uint8_t *px = malloc((size_t)stride * (size_t)h);
    for (int i = 0; i < stride * h; i++) px[i] = (uint8_t)(i * 31 + 7);
    rtv_frame f = { .rgb = px, .w = w, .h = h, .stride = stride };
    const char *p = path_of("rt.ppm");
    CHECK(rtv_image_write_ppm(&f, p) == RTV_OK);
    rtv_frame g;
    CHECK(rtv_image_load(&g, p) == RTV_OK);
    CHECK(g.w == w && g.h == h && g.stride == w * 3);
    int same = 1;
    for (int y = 0; y < h && g.rgb; y++)
        same &= !memcmp(g.rgb + y * g.stride, px + y * stride, (size_t)w * 3);
    CHECK(same);
    rtv_image_free(&g);
    CHECK(g.rgb == NULL && g.w == 0);
    rtv_image_free(&g); /* twice is fine */
    free(px);

    /* Comments between header tokens, maxval 100 scaled to 255. */
    const char hdr[] = "P6\n# made by hand\n2 # width\n1\n#c\n100\n";
    uint8_t buf[sizeof(hdr) - 1 + 6];
    memcpy(buf, hdr, sizeof(hdr) - 1);
    const uint8_t pix[6] = { 0, 50, 100, 1, 99, 25 };
    memcpy(buf + sizeof(hdr) - 1, pix, 6);
    write_bytes(path_of("c.ppm"), buf, sizeof(buf));
    CHECK(rtv_image_load(&g, path_of("c.ppm")) == RTV_OK);
    CHECK(g.w == 2 && g.h == 1);
    if (g.rgb) {
        CHECK(g.rgb[0] == 0 && g.rgb[1] == 128 && g.rgb[2] == 255);
        CHECK(g.rgb[3] == 3 && g.rgb[4] == 252 && g.rgb[5] == 64);
    }
    rtv_image_free(&g);
}

static void expect_fail(const char *name, const void *bytes, size_t n, int code, const char *what)
{
    const char *p = path_of(name);
    write_bytes(p, bytes, n);
    rtv_frame g;
    int st = rtv_image_load(&g, p);
    CHECK_MSG(st == code, "%s: got %d (%s), expected %d", name, st, rtv_last_error(), code);
    CHECK_MSG(mentions(p), "%s: message does not name the file: %s", name, rtv_last_error());
    CHECK_MSG(mentions(what), "%s: message lacks '%s': %s", name, what, rtv_last_error());
    CHECK(g.rgb == NULL);
}

static void test_ppm_errors(void)
{
    uint8_t full[15 + 4 * 3 * 3];
    int hn = snprintf((char *)full, sizeof(full), "P6\n4 3\n255\n");
    memset(full + hn, 9, 36);
    expect_fail("trunc.ppm", full, (size_t)hn + 35, RTV_E_INPUT, "truncated");
    expect_fail("trunc_hdr.ppm", "P6\n4 ", 5, RTV_E_INPUT, "height");
    expect_fail("garbage.ppm", "P6\nab 3\n255\n", 12, RTV_E_INPUT, "width");
    expect_fail("zero.ppm", "P6\n0 3\n255\n", 11, RTV_E_INPUT, "0x3");
    expect_fail("huge.ppm", "P6\n100000 100000\n255\n", 21, RTV_E_INPUT, "100000x100000");
    expect_fail("deep.ppm", "P6\n1 1\n65535\n\0\0\0\0\0\0", 19, RTV_E_UNSUPPORTED, "16-bit");
    expect_fail("ascii.ppm", "P3\n1 1\n255\n0 0 0\n", 17, RTV_E_UNSUPPORTED, "P3");
    expect_fail("nospace.ppm", "P6\n1 1\n255", 10, RTV_E_INPUT, "whitespace");
    expect_fail("over.ppm", "P6\n1 1\n10\n\x05\x0b\x01", 13, RTV_E_INPUT, "exceeds maxval");
    expect_fail("text.txt", "hello world\n", 12, RTV_E_INPUT, "not a PPM");
    expect_fail("empty.ppm", "", 0, RTV_E_INPUT, "empty");

    rtv_frame g;
    const char *missing = path_of("does_not_exist.jpg");
    CHECK(rtv_image_load(&g, missing) == RTV_E_OS);
    CHECK(mentions(missing) && mentions("No such file"));
}

static void test_jpeg(void)
{
    int w = 96, h = 64;
    uint8_t *src = smooth_image(w, h);
    char p[768];
    snprintf(p, sizeof(p), "%s", path_of("smooth.jpg"));
    write_jpeg(p, src, w, h, 3, 95);
    rtv_frame g;
    CHECK(rtv_image_load(&g, p) == RTV_OK);
    CHECK(g.w == w && g.h == h && g.stride == w * 3);
    if (g.rgb) {
        double sum = 0;
        int maxd = 0;
        for (int i = 0; i < w * h * 3; i++) {
            int d = abs((int)g.rgb[i] - (int)src[i]);
            sum += d;
            if (d > maxd) maxd = d;
        }
        double mean = sum / (w * h * 3);
        /* quality 95, 4:4:4, smooth content: quantization error of a few levels per sample */
        CHECK_MSG(mean < 2.0 && maxd <= 16, "JPEG error mean %.2f max %d", mean, maxd);
    }
    rtv_image_free(&g);

    /* Greyscale decodes to RGB with R = G = B. */
    uint8_t grey[32 * 16];
    for (int i = 0; i < 32 * 16; i++) grey[i] = (uint8_t)(i % 32 * 8);
    write_jpeg(path_of("grey.jpg"), grey, 32, 16, 1, 95);
    CHECK(rtv_image_load(&g, path_of("grey.jpg")) == RTV_OK);
    int eq = g.rgb != NULL, close = g.rgb != NULL;
    for (int i = 0; g.rgb && i < 32 * 16; i++) {
        eq &= g.rgb[3 * i] == g.rgb[3 * i + 1] && g.rgb[3 * i] == g.rgb[3 * i + 2];
        close &= abs((int)g.rgb[3 * i] - (int)grey[i]) <= 8;
    }
    CHECK(eq && close);
    rtv_image_free(&g);

    /* CMYK: refused with a clear message. */
    uint8_t *cmyk = calloc(16 * 8 * 4, 1);
    write_jpeg(path_of("cmyk.jpg"), cmyk, 16, 8, 4, 90);
    free(cmyk);
    CHECK(rtv_image_load(&g, path_of("cmyk.jpg")) == RTV_E_UNSUPPORTED);
    CHECK(mentions("cmyk.jpg") && mentions("colour space"));

    /* Truncated at several points: always an error naming the file, never grey filler. */
    size_t n;
    uint8_t *bytes = read_bytes(p, &n);
    const size_t cuts[] = { 3, 20, n / 3, n / 2, n - 10, n - 2 };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "cut%zu.jpg", i);
        expect_fail(name, bytes, cuts[i], RTV_E_INPUT, "JPEG");
    }
    /* A corrupt marker right after SOI. */
    uint8_t *bad = malloc(n);
    memcpy(bad, bytes, n);
    bad[2] = 0xFF;
    bad[3] = 0x01;
    bad[4] = 0x00;
    bad[5] = 0x02;
    expect_fail("badmarker.jpg", bad, n, RTV_E_INPUT, "corrupt");
    free(bad);
    free(bytes);
    free(src);
}

int main(int argc, char **argv)
{
    const char *d = getenv("RTV_TEST_DIR");
    snprintf(dir, sizeof(dir), "%s", d ? d : "/tmp");
    test_ppm_roundtrip();
    test_ppm_errors();
    test_jpeg();
    return check_report(argv[0]);
}
