/* kernels/cpu/image.c — image preprocessing and patch extraction, fp32.
 *
 * preprocess: resize-with-pad as shared/specs/pi0.md 4.1, with the resampler of openpi
 * PyTorch / LeRobot: F.interpolate(mode='bilinear', align_corners=False, antialias=False) on
 * the uint8 values as float:
 *   ratio = max(w/out, h/out) (double, as Python divides), rh = int(h/ratio), rw = int(w/ratio)
 *   per axis: scale = in/resized (fp32, as torch computes it when given a size),
 *             src = max(scale * (dst + 0.5) - 0.5, 0), i0 = (int)src, i1 = min(i0 + 1, in - 1),
 *             l = src - i0; value = (1-ly)((1-lx) p00 + lx p01) + ly((1-lx) p10 + lx p11)
 *   centred: top = (out - rh) / 2, left = (out - rw) / 2; padding is -1 (black);
 *   normalised: v / 255 * 2 - 1. An image that is already out x out is not resampled.
 * patchify: [n, S, S, 3] -> [n * (S/p)^2, 3*p*p], patch vector in (c, kh, kw) order. */
#include "cpu_impl.h"

#define IMG_MAX_SIDE 16384

static float sample(const uint8_t *rgb, int stride, int w, int h, float scale_x, float scale_y,
                    int xx, int yy, int c)
{
    float sy = scale_y * ((float)yy + 0.5f) - 0.5f, sx = scale_x * ((float)xx + 0.5f) - 0.5f;
    if (sy < 0.0f) sy = 0.0f;
    if (sx < 0.0f) sx = 0.0f;
    int y0 = (int)sy, x0 = (int)sx;
    int y1 = y0 < h - 1 ? y0 + 1 : y0, x1 = x0 < w - 1 ? x0 + 1 : x0;
    float ly = sy - (float)y0, lx = sx - (float)x0;
    const uint8_t *r0 = rgb + (size_t)y0 * stride, *r1 = rgb + (size_t)y1 * stride;
    float p00 = r0[x0 * 3 + c], p01 = r0[x1 * 3 + c];
    float p10 = r1[x0 * 3 + c], p11 = r1[x1 * 3 + c];
    return (1.0f - ly) * ((1.0f - lx) * p00 + lx * p01) + ly * ((1.0f - lx) * p10 + lx * p11);
}

int rtv_cpu_preprocess(rtv_stream *s, void *y, const uint8_t *rgb, int w, int h, int stride,
                       int out)
{
    if (w <= 0 || h <= 0 || w > IMG_MAX_SIDE || h > IMG_MAX_SIDE || out <= 0 ||
        out > IMG_MAX_SIDE || stride < 3 * w)
        return rtv_fail(RTV_E_ARG, "preprocess: image %dx%d stride %d bytes to %dx%d (expected "
                        "sides 1..%d, stride >= 3*width)", w, h, stride, out, out, IMG_MAX_SIDE);
    if (!y || !rgb) return rtv_fail(RTV_E_ARG, "preprocess: NULL image or output");
    int rw = w, rh = h;
    if (!(w == out && h == out)) {
        /* double, as Python computes it (int() truncates, so the last bit can matter) */
        double ratio = (double)w / out > (double)h / out ? (double)w / out : (double)h / out;
        rh = (int)(h / ratio);
        rw = (int)(w / ratio);
    }
    if (rw <= 0 || rh <= 0)
        return rtv_fail(RTV_E_ARG, "preprocess: a %dx%d image resizes to %dx%d inside %dx%d; "
                        "expected both sides >= 1", w, h, rw, rh, out, out);
    const int top = (out - rh) / 2, left = (out - rw) / 2;
    const int same = rw == w && rh == h;
    const float scale_x = (float)w / (float)rw, scale_y = (float)h / (float)rh;
    float *yf = y;
    for (int oy = 0; oy < out; oy++) {
        int yy = oy - top;
        for (int ox = 0; ox < out; ox++) {
            int xx = ox - left;
            float *px = yf + ((size_t)oy * out + ox) * 3;
            if (yy < 0 || yy >= rh || xx < 0 || xx >= rw) {
                px[0] = px[1] = px[2] = -1.0f;
                continue;
            }
            for (int c = 0; c < 3; c++) {
                float v = same ? (float)rgb[(size_t)yy * stride + xx * 3 + c]
                               : sample(rgb, stride, w, h, scale_x, scale_y, xx, yy, c);
                px[c] = v / 255.0f * 2.0f - 1.0f;
            }
        }
    }
    return RTV_OK;
}

int rtv_cpu_patchify(rtv_stream *s, void *y, const void *img, int n_img, int size, int p)
{
    if (n_img <= 0 || p <= 0 || size <= 0 || size % p)
        return rtv_fail(RTV_E_ARG, "patchify: n=%d size=%d patch=%d (expected positive, size a "
                        "multiple of patch)", n_img, size, p);
    if (!y || !img) return rtv_fail(RTV_E_ARG, "patchify: NULL tensor");
    const int g = size / p, pv = 3 * p * p;
    const float *src = img;
    float *dst = y;
    for (int im = 0; im < n_img; im++)
        for (int pr = 0; pr < g; pr++)
            for (int pc = 0; pc < g; pc++) {
                float *row = dst + (((size_t)im * g + pr) * g + pc) * pv;
                for (int c = 0; c < 3; c++)
                    for (int kh = 0; kh < p; kh++) {
                        const float *line =
                            src + (((size_t)im * size + pr * p + kh) * size + pc * p) * 3 + c;
                        for (int kw = 0; kw < p; kw++) row[(c * p + kh) * p + kw] = line[kw * 3];
                    }
            }
    return RTV_OK;
}
