/* kernels/cuda/rope.cu — rotary position embedding in place, half-split layout:
 * for head vector x at position p, pairs (i, i + hd/2), theta_i = p * base^(-2i/hd) in fp32:
 *   x[i] = x1 cos - x2 sin;  x[i + hd/2] = x2 cos + x1 sin.
 * One thread per (row, head, i). */
#include "cuda_impl.h"
#include "mma.cuh"

static __global__ void rope_k(bf16 *x, int ld, int rows, int n_heads, int hd, int pos0,
                              float log2_theta)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    int half = hd / 2;
    size_t n = (size_t)rows * n_heads * half;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int i = (int)(t % half);
    int h = (int)((t / half) % n_heads);
    int r = (int)(t / ((size_t)half * n_heads));
    float inv_freq = exp2f(-(2.0f * i / hd) * log2_theta);
    float ang = (float)(pos0 + r) * inv_freq;
    float sn, cs;
    sincosf(ang, &sn, &cs);
    bf16 *v = x + (size_t)r * ld + (size_t)h * hd;
    float x1 = __bfloat162float(v[i]), x2 = __bfloat162float(v[i + half]);
    v[i] = __float2bfloat16(x1 * cs - x2 * sn);
    v[i + half] = __float2bfloat16(x2 * cs + x1 * sn);
}

/* The same with 8 consecutive pairs per thread (16-byte loads and stores of both halves):
 * the same arithmetic per element, an eighth of the threads. ncu (H100): the prefix's
 * 512 rows x 9 heads x 256 takes 5.1 us, 7.2 us with one pair per thread. */
static __global__ void rope8_k(bf16 *x, int ld, int rows, int n_heads, int hd, int pos0,
                               float log2_theta)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    const int half = hd / 2, nc = half / 8;
    size_t n = (size_t)rows * n_heads * nc;
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int c = (int)(t % nc);
    int h = (int)((t / nc) % n_heads);
    int r = (int)(t / ((size_t)nc * n_heads));
    bf16 *v = x + (size_t)r * ld + (size_t)h * hd + 8 * c;
    uint4 a = *(const uint4 *)v, b = *(const uint4 *)(v + half);
    bf16 *pa = (bf16 *)&a, *pb = (bf16 *)&b;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        int i = 8 * c + e;
        float inv_freq = exp2f(-(2.0f * i / hd) * log2_theta);
        float ang = (float)(pos0 + r) * inv_freq;
        float sn, cs;
        sincosf(ang, &sn, &cs);
        float x1 = __bfloat162float(pa[e]), x2 = __bfloat162float(pb[e]);
        pa[e] = __float2bfloat16(x1 * cs - x2 * sn);
        pb[e] = __float2bfloat16(x2 * cs + x1 * sn);
    }
    *(uint4 *)v = a;
    *(uint4 *)(v + half) = b;
}

int rtv_cuda_rope(rtv_stream *s, void *x, int ld, int rows, int n_heads, int head_dim, int pos0,
                  float theta)
{
    if (rows <= 0 || n_heads <= 0 || head_dim <= 0 || (head_dim & 1) || ld < n_heads * head_dim)
        return rtv_fail(RTV_E_ARG, "rope: rows=%d heads=%d head_dim=%d ld=%d", rows, n_heads,
                        head_dim, ld);
    /* 8 pairs per thread only with enough threads left to fill the GPU: at the expert's
     * 51 rows the longer per-thread chain made the action cycle slower (9.33 -> 9.40 ms) */
    size_t n8 = (size_t)rows * n_heads * (head_dim / 16);
    if ((head_dim / 2) % 8 == 0 && ld % 8 == 0 && (uintptr_t)x % 16 == 0 && n8 >= 32768) {
        rtv_cuda_go(s, rope8_k, rtv_cdiv(n8, 128), 128, 0, (bf16 *)x, ld, rows, n_heads, head_dim,
                    pos0, log2f(theta));
        LAUNCH_CHECK("rope");
        return RTV_OK;
    }
    size_t n = (size_t)rows * n_heads * (head_dim / 2);
    rtv_cuda_go(s, rope_k, rtv_cdiv(n, 256), 256, 0, (bf16 *)x, ld, rows, n_heads, head_dim, pos0,
                log2f(theta));
    LAUNCH_CHECK("rope");
    return RTV_OK;
}
