/* kernels/cpu/elementwise.c — the memory-bound glue ops, fp32:
 * geglu, add_weight_rows (position embeddings, broadcast biases), axpy (Euler update),
 * scale, copy2d, mean_rows (column means accumulated in double). */
#include <string.h>

#include "cpu_impl.h"

int rtv_cpu_geglu(rtv_stream *s, void *y, const void *gu, int rows, int ff)
{
    if (rows <= 0 || ff <= 0)
        return rtv_fail(RTV_E_ARG, "geglu: rows=%d ff=%d, expected positive", rows, ff);
    if (!y || !gu) return rtv_fail(RTV_E_ARG, "geglu: NULL tensor");
    /* y row r (ff values) lies at or before gu row r (2 ff values), so y == gu works too */
    for (int r = 0; r < rows; r++) {
        const float *g = (const float *)gu + (size_t)r * 2 * ff, *u = g + ff;
        float *yr = (float *)y + (size_t)r * ff;
        for (int j = 0; j < ff; j++) yr[j] = rtv_cpu_gelu_tanh(g[j]) * u[j];
    }
    return RTV_OK;
}

int rtv_cpu_add_weight_rows(rtv_stream *s, void *y, const void *w, int rows, int dim,
                            int period)
{
    if (rows <= 0 || dim <= 0 || period <= 0)
        return rtv_fail(RTV_E_ARG, "add_weight_rows: rows=%d dim=%d period=%d, expected "
                        "positive", rows, dim, period);
    if (!y || !w) return rtv_fail(RTV_E_ARG, "add_weight_rows: NULL tensor");
    for (int r = 0; r < rows; r++) {
        float *yr = (float *)y + (size_t)r * dim;
        const float *wr = (const float *)w + (size_t)(r % period) * dim;
        for (int j = 0; j < dim; j++) yr[j] += wr[j];
    }
    return RTV_OK;
}

int rtv_cpu_axpy(rtv_stream *s, void *y, const void *x, float alpha, size_t n)
{
    if (!n) return rtv_fail(RTV_E_ARG, "axpy: n=0, expected positive");
    if (!y || !x) return rtv_fail(RTV_E_ARG, "axpy: NULL tensor");
    float *yf = y;
    const float *xf = x;
    for (size_t i = 0; i < n; i++) yf[i] += alpha * xf[i];
    return RTV_OK;
}

int rtv_cpu_scale(rtv_stream *s, void *y, const void *x, float alpha, size_t n)
{
    if (!n) return rtv_fail(RTV_E_ARG, "scale: n=0, expected positive");
    if (!y || !x) return rtv_fail(RTV_E_ARG, "scale: NULL tensor");
    float *yf = y;
    const float *xf = x;
    for (size_t i = 0; i < n; i++) yf[i] = alpha * xf[i];
    return RTV_OK;
}

int rtv_cpu_copy2d(rtv_stream *s, void *dst, int ldd, const void *src, int lds, int rows,
                   int cols)
{
    if (rows <= 0 || cols <= 0 || ldd < cols || lds < cols)
        return rtv_fail(RTV_E_ARG, "copy2d: rows=%d cols=%d ldd=%d lds=%d (expected positive "
                        "sizes, strides >= cols)", rows, cols, ldd, lds);
    if (!dst || !src) return rtv_fail(RTV_E_ARG, "copy2d: NULL tensor");
    if (dst == src && ldd == lds) return RTV_OK;
    for (int r = 0; r < rows; r++)
        memmove((float *)dst + (size_t)r * ldd, (const float *)src + (size_t)r * lds,
                (size_t)cols * sizeof(float));
    return RTV_OK;
}

int rtv_cpu_mean_rows(rtv_stream *s, void *y, const void *x, int ldx, int rows, int dim)
{
    if (rows <= 0 || dim <= 0 || ldx < dim)
        return rtv_fail(RTV_E_ARG, "mean_rows: rows=%d dim=%d ldx=%d (expected positive sizes, "
                        "ldx >= dim)", rows, dim, ldx);
    if (!s || !y || !x) return rtv_fail(RTV_E_ARG, "mean_rows: NULL stream or tensor");
    if ((size_t)dim > s->scratch_floats / 2)
        return rtv_fail(RTV_E_UNSUPPORTED, "mean_rows: dim=%d too large for the scratch", dim);
    double *acc = (double *)(void *)s->scratch; /* dim doubles; scratch is 256-byte aligned */
    for (int j = 0; j < dim; j++) acc[j] = 0.0;
    for (int r = 0; r < rows; r++) {
        const float *xr = (const float *)x + (size_t)r * ldx;
        for (int j = 0; j < dim; j++) acc[j] += xr[j];
    }
    float *yf = y;
    for (int j = 0; j < dim; j++) yf[j] = (float)(acc[j] / rows);
    return RTV_OK;
}
