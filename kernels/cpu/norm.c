/* kernels/cpu/norm.c — LayerNorm and RMSNorm over rows of x[rows, dim] (contiguous), fp32
 * in/out, statistics accumulated in double and applied in fp32. Each row's statistics are
 * taken before any of it is written, so y may equal x.
 *   layernorm: y = (x - mean) / sqrt(var + eps) * w + b      (biased variance, as PyTorch)
 *   rmsnorm:   y = x * rsqrt(mean(x^2) + eps) * (1 + w)      (Gemma's zero-centred scale) */
#include "cpu_impl.h"

int rtv_cpu_layernorm(rtv_stream *s, void *y, const void *x, const void *w, const void *b,
                      int rows, int dim, float eps)
{
    if (rows <= 0 || dim <= 0)
        return rtv_fail(RTV_E_ARG, "layernorm: rows=%d dim=%d, expected positive", rows, dim);
    if (!y || !x || !w || !b) return rtv_fail(RTV_E_ARG, "layernorm: NULL tensor");
    const float *wf = w, *bf = b;
    for (int r = 0; r < rows; r++) {
        const float *xr = (const float *)x + (size_t)r * dim;
        float *yr = (float *)y + (size_t)r * dim;
        double sum = 0.0;
        for (int i = 0; i < dim; i++) sum += xr[i];
        double mean = sum / dim, var = 0.0;
        for (int i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        float m = (float)mean;
        float rstd = (float)(1.0 / sqrt(var / dim + (double)eps));
        for (int i = 0; i < dim; i++) yr[i] = (xr[i] - m) * rstd * wf[i] + bf[i];
    }
    return RTV_OK;
}

int rtv_cpu_rmsnorm(rtv_stream *s, void *y, const void *x, const void *w, int rows, int dim,
                    float eps)
{
    if (rows <= 0 || dim <= 0)
        return rtv_fail(RTV_E_ARG, "rmsnorm: rows=%d dim=%d, expected positive", rows, dim);
    if (!y || !x || !w) return rtv_fail(RTV_E_ARG, "rmsnorm: NULL tensor");
    const float *wf = w;
    for (int r = 0; r < rows; r++) {
        const float *xr = (const float *)x + (size_t)r * dim;
        float *yr = (float *)y + (size_t)r * dim;
        double ss = 0.0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float rr = (float)(1.0 / sqrt(ss / dim + (double)eps));
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * rr * (1.0f + wf[i]);
    }
    return RTV_OK;
}
