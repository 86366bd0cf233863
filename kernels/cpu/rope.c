/* kernels/cpu/rope.c — rotary position embedding in place, half-split ("rotate_half") layout.
 *
 * For head vector v (hd values) at position p, pairs (i, i + hd/2), i < hd/2:
 *   inv_freq[i] = 1 / theta^((2i)/hd)        fp32, as PyTorch builds it
 *   angle       = (float)p * inv_freq[i]     fp32 product, as PyTorch (not JAX's p / timescale)
 *   v[i]        = v1 cos - v2 sin;   v[i + hd/2] = v2 cos + v1 sin     (fp32)
 * cos/sin of one row's angles are computed once (stream scratch) and applied to every head. */
#include "cpu_impl.h"

int rtv_cpu_rope(rtv_stream *s, void *x, int ld, int rows, int n_heads, int head_dim, int pos0,
                 float theta)
{
    if (rows <= 0 || n_heads <= 0 || head_dim <= 0 || (head_dim & 1) ||
        ld < n_heads * head_dim)
        return rtv_fail(RTV_E_ARG, "rope: rows=%d heads=%d head_dim=%d ld=%d (expected positive "
                        "sizes, even head_dim, ld >= heads*head_dim)", rows, n_heads, head_dim,
                        ld);
    if (!s || !x) return rtv_fail(RTV_E_ARG, "rope: NULL stream or tensor");
    if (!(theta > 0.0f)) return rtv_fail(RTV_E_ARG, "rope: theta=%g, expected > 0", theta);
    int half = head_dim / 2;
    if ((size_t)3 * half > s->scratch_floats)
        return rtv_fail(RTV_E_UNSUPPORTED, "rope: head_dim=%d too large for the scratch",
                        head_dim);
    float *inv = s->scratch, *cs = inv + half, *sn = cs + half;
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
    for (int r = 0; r < rows; r++) {
        float pos = (float)(pos0 + r);
        for (int i = 0; i < half; i++) {
            float a = pos * inv[i];
            cs[i] = cosf(a);
            sn[i] = sinf(a);
        }
        float *xr = (float *)x + (size_t)r * ld;
        for (int h = 0; h < n_heads; h++) {
            float *v = xr + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float v1 = v[i], v2 = v[i + half];
                v[i] = v1 * cs[i] - v2 * sn[i];
                v[i + half] = v2 * cs[i] + v1 * sn[i];
            }
        }
    }
    return RTV_OK;
}
