/* tests/kernels/test_image.c — preprocess (resize-with-pad, pi0.md 4.1) against a naive
 * reference written from the formula in double, on several aspect ratios, up- and
 * downscaling, padded row strides, and the identity case (an out x out frame is not
 * resampled: exact). A hand case: halving a 448x448 image averages each 2x2 block, which is
 * what align_corners=False bilinear without antialias does at scale 2.
 *
 * Reference, per output pixel (ox, oy) and channel c:
 *   ratio = max(w/out, h/out); rw = int(w/ratio); rh = int(h/ratio);
 *   top = (out-rh)//2; left = (out-rw)//2; outside [left, left+rw) x [top, top+rh): -1
 *   sx = max((x + 0.5) * w/rw - 0.5, 0) with x = ox - left (same for y);
 *   x0 = floor(sx), x1 = min(x0+1, w-1), lx = sx - x0; bilinear over the 4 pixels;
 *   value / 255 * 2 - 1.
 * PyTorch computes the source coordinate in fp32 (scale = (float)in / out, then
 * scale * (dst + 0.5f) - 0.5f); at 640 -> 224 that fp32 scale is 2.4e-8 relative off the true
 * ratio, which moves far pixels by ~1e-5 px and values by up to ~1e-4 where the image is
 * steep. So the reference is checked twice:
 *   - fp32 source coordinate like PyTorch, interpolation in double: tolerance 1e-5 absolute
 *     (values in [-1, 1]; the kernel interpolates in fp32: a few ulps of 255);
 *   - everything in double (the formula as written): tolerance 3e-4 absolute, the size of
 *     the fp32 coordinate effect above with margin.
 * The final v/255*2-1 is fp32 in both (as PyTorch normalises), so the identity case is exact. */
#include <math.h>

#include "kt.h"

static uint8_t *make_image(int w, int h, int stride)
{
    uint8_t *rgb = malloc((size_t)stride * h);   /* exact size: an over-read shows under ASan */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < stride; x++)
            rgb[(size_t)y * stride + x] = x < 3 * w ? (uint8_t)(kt_u64() >> 56) : 0x5a;
    return rgb;
}

static void reference(float *ref, const uint8_t *rgb, int w, int h, int stride, int out,
                      int fp32_coord)
{
    int rw = w, rh = h;
    if (!(w == out && h == out)) {
        double ratio = fmax((double)w / out, (double)h / out);
        rh = (int)(h / ratio);
        rw = (int)(w / ratio);
    }
    int top = (out - rh) / 2, left = (out - rw) / 2;
    for (int oy = 0; oy < out; oy++)
        for (int ox = 0; ox < out; ox++)
            for (int c = 0; c < 3; c++) {
                float *o = ref + ((size_t)oy * out + ox) * 3 + c;
                int x = ox - left, y = oy - top;
                if (x < 0 || x >= rw || y < 0 || y >= rh) {
                    *o = -1.0f;
                    continue;
                }
                double sx = fmax((x + 0.5) * w / rw - 0.5, 0.0);
                double sy = fmax((y + 0.5) * h / rh - 0.5, 0.0);
                if (fp32_coord) {
                    float fx = (float)w / (float)rw * ((float)x + 0.5f) - 0.5f;
                    float fy = (float)h / (float)rh * ((float)y + 0.5f) - 0.5f;
                    sx = fx < 0.0f ? 0.0 : fx;
                    sy = fy < 0.0f ? 0.0 : fy;
                }
                int x0 = (int)floor(sx), y0 = (int)floor(sy);
                int x1 = x0 + 1 < w ? x0 + 1 : w - 1, y1 = y0 + 1 < h ? y0 + 1 : h - 1;
                double lx = sx - x0, ly = sy - y0;
#define PX(yy, xx) ((double)rgb[(size_t)(yy) * stride + (xx) * 3 + c])
                double v = (1 - ly) * ((1 - lx) * PX(y0, x0) + lx * PX(y0, x1)) +
                           ly * ((1 - lx) * PX(y1, x0) + lx * PX(y1, x1));
#undef PX
                *o = (float)v / 255.0f * 2.0f - 1.0f;
            }
}

static void run(int w, int h, int stride, int out)
{
    uint8_t *rgb = make_image(w, h, stride);
    size_t n = (size_t)out * out * 3;
    kt_buf y = kt_buf_new(n);
    float *ref = malloc(n * sizeof(float)), *ref64 = malloc(n * sizeof(float));
    reference(ref, rgb, w, h, stride, out, 1);
    reference(ref64, rgb, w, h, stride, out, 0);
    int st = kt_b->preprocess(kt_s, y.p, rgb, w, h, stride, out);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    if (!CHECK_CLOSE(y.p, ref, (long)n, 1e-5f))
        fprintf(stderr, "  preprocess %dx%d stride %d -> %d\n", w, h, stride, out);
    if (!CHECK_CLOSE(y.p, ref64, (long)n, 3e-4f))
        fprintf(stderr, "  preprocess %dx%d stride %d -> %d (double reference)\n", w, h, stride,
                out);
    CHECK(kt_guards_ok(&y, 0, 0, 0));
    /* the identity case is exact */
    if (w == out && h == out) CHECK(!memcmp(y.p, ref, n * sizeof(float)));
    free(ref);
    free(ref64);
    free(rgb);
    kt_buf_free(&y);
}

/* Halving: every output value is the mean of a 2x2 block (weights exactly 1/2). */
static void test_halving(void)
{
    int w = 448, out = 224;
    uint8_t *rgb = make_image(w, w, 3 * w);
    size_t n = (size_t)out * out * 3;
    kt_buf y = kt_buf_new(n);
    CHECK(kt_b->preprocess(kt_s, y.p, rgb, w, w, 3 * w, out) == RTV_OK);
    double err = 0;
    for (int oy = 0; oy < out; oy++)
        for (int ox = 0; ox < out; ox++)
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = rgb + (size_t)(2 * oy) * 3 * w + (2 * ox) * 3 + c;
                double m = (p[0] + p[3] + p[3 * w] + p[3 * w + 3]) / 4.0 / 255.0 * 2.0 - 1.0;
                err = fmax(err, fabs(y.p[((size_t)oy * out + ox) * 3 + c] - m));
            }
    CHECK_MSG(err < 1e-6, "halving: max err %g", err);
    free(rgb);
    kt_buf_free(&y);
}

/* 640x480 -> 224x168 centred: rows 0..27 and 196..223 are padding (-1), 28..195 are not. */
static void test_padding_layout(void)
{
    int w = 640, h = 480, out = 224;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    memset(rgb, 255, (size_t)w * h * 3);
    kt_buf y = kt_buf_new((size_t)out * out * 3);
    CHECK(kt_b->preprocess(kt_s, y.p, rgb, w, h, 3 * w, out) == RTV_OK);
    int ok = 1;
    for (int oy = 0; oy < out; oy++) {
        float want = oy < 28 || oy >= 196 ? -1.0f : 1.0f;
        for (int i = 0; i < out * 3; i++) ok &= y.p[(size_t)oy * out * 3 + i] == want;
    }
    CHECK_MSG(ok, "640x480: expected 28 padding rows top and bottom around 168 image rows");
    free(rgb);
    kt_buf_free(&y);
}

int main(int argc, char **argv)
{
    kt_init();
    kt_seed(5);
    run(224, 224, 224 * 3, 224);      /* identity */
    run(224, 224, 224 * 3 + 5, 224);  /* identity, padded stride */
    run(640, 480, 640 * 3, 224);      /* 4:3 landscape, downscale */
    run(480, 640, 480 * 3 + 1, 224);  /* portrait, odd stride */
    run(320, 240, 320 * 3, 224);
    run(1280, 720, 1280 * 3, 224);    /* 16:9 */
    run(120, 200, 120 * 3, 224);      /* upscale */
    run(224, 100, 224 * 3, 224);      /* one side already fits */
    run(1, 1, 3, 224);                /* one pixel */
    run(300, 7, 300 * 3, 224);        /* thin strips */
    run(7, 300, 7 * 3 + 2, 224);
    run(33, 17, 33 * 3, 15);          /* odd output size */
    test_halving();
    test_padding_layout();
    kt_fini();
    return check_report(argv[0]);
}
