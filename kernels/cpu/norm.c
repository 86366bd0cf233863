/* kernels/cpu/norm.c — LayerNorm and RMSNorm over rows of x[rows, dim] (contiguous), fp32
 * in/out, statistics accumulated in double and applied in fp32. Each row's statistics are
 * taken before any of it is written, so y may equal x.
 *   layernorm: y = (x - mean) / sqrt(var + eps) * w + b      (biased variance, as PyTorch)
 *   rmsnorm:   y = x * rsqrt(mean(x^2) + eps) * (1 + w)      (Gemma's zero-centred scale)
 * and the RMSNorm moved behind the GEMM that reads it (backend.h rms_rope, rms_geglu): the
 * row scale rsqrt(mean(x^2) + eps) applied to the GEMM's output, (1 + w) folded into its
 * weights at load. */
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

float rtv_cpu_rms_scale(const float *x, int dim, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(ss / dim + (double)eps));
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
        float rr = rtv_cpu_rms_scale(xr, dim, eps);
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * rr * (1.0f + wf[i]);
    }
    return RTV_OK;
}

int rtv_cpu_rms_rope(rtv_stream *s, void *y, int ld, int cols, const void *x, int dim, float eps,
                     int rows, int n_heads, int head_dim, int pos0, float theta)
{
    if (rows <= 0 || dim <= 0 || cols < n_heads * head_dim || ld < cols)
        return rtv_fail(RTV_E_ARG, "rms_rope: rows=%d dim=%d cols=%d ld=%d heads=%d head_dim=%d",
                        rows, dim, cols, ld, n_heads, head_dim);
    if (!y || !x) return rtv_fail(RTV_E_ARG, "rms_rope: NULL tensor");
    for (int r = 0; r < rows; r++) {
        float rr = rtv_cpu_rms_scale((const float *)x + (size_t)r * dim, dim, eps);
        float *yr = (float *)y + (size_t)r * ld;
        for (int i = 0; i < cols; i++) yr[i] *= rr;
    }
    return rtv_cpu_rope(s, y, ld, rows, n_heads, head_dim, pos0, theta);
}

int rtv_cpu_rms_geglu(rtv_stream *s, void *y, const void *gu, const void *x, int dim, float eps,
                      int rows, int ff)
{
    if (rows <= 0 || dim <= 0 || ff <= 0)
        return rtv_fail(RTV_E_ARG, "rms_geglu: rows=%d dim=%d ff=%d, expected positive", rows,
                        dim, ff);
    if (!y || !gu || !x) return rtv_fail(RTV_E_ARG, "rms_geglu: NULL tensor");
    /* y row r lies at or before gu row r, as in geglu */
    for (int r = 0; r < rows; r++) {
        float rr = rtv_cpu_rms_scale((const float *)x + (size_t)r * dim, dim, eps);
        const float *g = (const float *)gu + (size_t)r * 2 * ff, *u = g + ff;
        float *yr = (float *)y + (size_t)r * ff;
        for (int j = 0; j < ff; j++) yr[j] = rtv_cpu_gelu_tanh(rr * g[j]) * (rr * u[j]);
    }
    return RTV_OK;
}
