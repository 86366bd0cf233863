/* kernels/cuda/image.cu — image preprocessing and patch extraction on the GPU.
 *
 * preprocess: the uint8 RGB frame goes to device scratch, by one DMA when it lies in page-locked
 * memory (host_pin: the runtime's camera buffers), else through a copy into the stream's pinned
 * staging (H100 machine, two 640x480 views: 0.19 ms of memcpy on the calling thread + 0.04 ms
 * DMA, against 0.04 ms for the DMA alone); then one
 * thread per output value does resize-with-pad exactly as shared/specs/pi0.md 4.1 with
 * PyTorch's F.interpolate(bilinear, align_corners=False, antialias=False) rule
 * (src = (dst + 0.5) * in/out - 0.5, clamped at 0), pads with -1 and maps v -> v/255*2-1.
 * patchify: [n, S, S, 3] -> [n * (S/p)^2, 3*p*p] in (c, kh, kw) order. */
#include <string.h>

#include "cuda_impl.h"

/* Whether host address p lies in page-locked memory (cudaHostAlloc or cudaHostRegister). */
static int rtv_cuda_host_pinned(const void *p)
{
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); /* not an error worth keeping: plain host memory */
        return 0;
    }
    return a.type == cudaMemoryTypeHost;
}

static __global__ void resize_pad_k(bf16 *y, const uint8_t *src, int w, int h, int stride,
                                    int out, int rw, int rh, int top, int left)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= out * out * 3) return;
    int c = t % 3, ox = (t / 3) % out, oy = t / (3 * out);
    int yy = oy - top, xx = ox - left;
    if (yy < 0 || yy >= rh || xx < 0 || xx >= rw) {
        y[t] = __float2bfloat16(-1.0f);
        return;
    }
    float v;
    if (rw == w && rh == h) {
        v = src[(size_t)yy * stride + xx * 3 + c];
    } else {
        float sy = fmaxf(((float)yy + 0.5f) * ((float)h / rh) - 0.5f, 0.0f);
        float sx = fmaxf(((float)xx + 0.5f) * ((float)w / rw) - 0.5f, 0.0f);
        int y0 = (int)sy, x0 = (int)sx;
        int y1 = y0 < h - 1 ? y0 + 1 : y0, x1 = x0 < w - 1 ? x0 + 1 : x0;
        float ly = sy - y0, lx = sx - x0;
        float p00 = src[(size_t)y0 * stride + x0 * 3 + c], p01 = src[(size_t)y0 * stride + x1 * 3 + c];
        float p10 = src[(size_t)y1 * stride + x0 * 3 + c], p11 = src[(size_t)y1 * stride + x1 * 3 + c];
        v = (1.0f - ly) * ((1.0f - lx) * p00 + lx * p01) + ly * ((1.0f - lx) * p10 + lx * p11);
    }
    y[t] = __float2bfloat16(v / 255.0f * 2.0f - 1.0f);
}

static __global__ void patchify_k(bf16 *y, const bf16 *img, int n_img, int size, int p)
{
    int g = size / p, pv = 3 * p * p;
    size_t n = (size_t)n_img * g * g * pv;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int e = (int)(t % pv);
    size_t patch = t / pv;
    int im = (int)(patch / (g * g)), pr = (int)((patch % (g * g)) / g), pc = (int)(patch % g);
    int c = e / (p * p), kh = (e / p) % p, kw = e % p;
    int yy = pr * p + kh, xx = pc * p + kw;
    y[t] = img[(((size_t)im * size + yy) * size + xx) * 3 + c];
}

int rtv_cuda_preprocess(rtv_stream *s, void *y, const uint8_t *rgb, int w, int h, int stride,
                        int out)
{
    if (w <= 0 || h <= 0 || out <= 0 || stride < 3 * w || !rgb)
        return rtv_fail(RTV_E_ARG, "preprocess: bad image %dx%d stride %d", w, h, stride);
    if (s->capturing)
        return rtv_fail(RTV_E_ARG, "preprocess: called inside a graph capture (the frame is "
                        "copied on the host); preprocess before capture_begin");
    size_t bytes = (size_t)stride * (h - 1) + (size_t)w * 3;
    rtv_cuda_scratch_begin(s);
    uint8_t *dv = (uint8_t *)rtv_cuda_scratch(s, bytes);
    if (!dv) return RTV_E_NOMEM;
    if (rtv_cuda_host_pinned(rgb) && rtv_cuda_host_pinned(rgb + bytes - 1)) {
        CU_TRY(cudaMemcpyAsync(dv, rgb, bytes, cudaMemcpyHostToDevice, s->s));
    } else {
        uint8_t *st = (uint8_t *)rtv_cuda_staging(s, bytes);
        if (!st) return RTV_E_NOMEM;
        memcpy(st, rgb, bytes);
        CU_TRY(cudaMemcpyAsync(dv, st, bytes, cudaMemcpyHostToDevice, s->s));
    }
    int rw = w, rh = h;
    if (!(w == out && h == out)) {
        /* double, as Python computes it: float32 can truncate 168.0 to 167 */
        double ratio = (double)w / out > (double)h / out ? (double)w / out : (double)h / out;
        rh = (int)(h / ratio);
        rw = (int)(w / ratio);
    }
    int top = (out - rh) / 2, left = (out - rw) / 2;
    resize_pad_k<<<rtv_cdiv((size_t)out * out * 3, 256), 256, 0, s->s>>>(
        (bf16 *)y, dv, w, h, stride, out, rw, rh, top, left);
    LAUNCH_CHECK("preprocess");
    return RTV_OK;
}

int rtv_cuda_patchify(rtv_stream *s, void *y, const void *img, int n_img, int size, int p)
{
    if (n_img <= 0 || p <= 0 || size % p)
        return rtv_fail(RTV_E_ARG, "patchify: n=%d size=%d patch=%d", n_img, size, p);
    size_t n = (size_t)n_img * size * size * 3;
    patchify_k<<<rtv_cdiv(n, 256), 256, 0, s->s>>>((bf16 *)y, (const bf16 *)img, n_img, size, p);
    LAUNCH_CHECK("patchify");
    return RTV_OK;
}
