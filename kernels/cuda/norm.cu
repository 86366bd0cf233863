/* kernels/cuda/norm.cu — LayerNorm and RMSNorm over rows, bf16 in/out, fp32 statistics.
 * One block of 256 threads per row; two passes over the row (statistics, then output), each
 * thread touching the same elements in both, so y may alias x.
 *   layernorm: y = (x - mean) / sqrt(var + eps) * w + b
 *   rmsnorm:   y = x * rsqrt(mean(x^2) + eps) * (1 + w)        (Gemma's zero-centred scale) */
#include "cuda_impl.h"
#include "mma.cuh"

#define NORM_THREADS 256

static __device__ float block_sum(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    float t = 0.0f;
    if (threadIdx.x < 32) {
        t = threadIdx.x < (blockDim.x >> 5) ? sh[threadIdx.x] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        if (threadIdx.x == 0) sh[0] = t;
    }
    __syncthreads();
    t = sh[0];
    __syncthreads();
    return t;
}

static __global__ void layernorm_k(bf16 *y, const bf16 *x, const bf16 *w, const bf16 *b, int dim,
                                   float eps)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    __shared__ float sh[32];
    const bf16 *xr = x + (size_t)blockIdx.x * dim;
    bf16 *yr = y + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += __bfloat162float(xr[i]);
    float mean = block_sum(s, sh) / dim;
    float v = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float d = __bfloat162float(xr[i]) - mean;
        v += d * d;
    }
    float rstd = rsqrtf(block_sum(v, sh) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float d = (__bfloat162float(xr[i]) - mean) * rstd;
        yr[i] = __float2bfloat16(d * __bfloat162float(w[i]) + __bfloat162float(b[i]));
    }
}

static __global__ void rmsnorm_k(bf16 *y, const bf16 *x, const bf16 *w, int dim, float eps)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    __shared__ float sh[32];
    const bf16 *xr = x + (size_t)blockIdx.x * dim;
    bf16 *yr = y + (size_t)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float a = __bfloat162float(xr[i]);
        s += a * a;
    }
    float r = rsqrtf(block_sum(s, sh) / dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = __float2bfloat16(__bfloat162float(xr[i]) * r * (1.0f + __bfloat162float(w[i])));
}

/* One warp per row held in registers (dim % 8 == 0, dim <= 256 CH, 16-byte aligned rows): x and
 * w are loaded once with all loads in flight together, so a row costs one memory round trip.
 * ncu put the expert's 51 x 1024 norm at 6 us as a 256-thread block per row and 4.2 us as a
 * warp per row looping over the row twice; this takes 2.8 us. y may equal x. */
template <int CH>
static __global__ void rmsnorm_reg_k(bf16 *y, const bf16 *x, const bf16 *w, int rows, int dim,
                                     float eps)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nv = dim / 8;
    const uint4 *xr = (const uint4 *)(x + (size_t)row * dim);
    uint4 *yr = (uint4 *)(y + (size_t)row * dim);
    const uint4 *wr = (const uint4 *)w;
    uint4 v[CH], ww[CH];
#pragma unroll
    for (int c = 0; c < CH; c++) {
        int i = lane + 32 * c;
        v[c] = i < nv ? xr[i] : make_uint4(0, 0, 0, 0);
        ww[c] = i < nv ? __ldg(wr + i) : make_uint4(0, 0, 0, 0);
    }
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const bf16 *e = (const bf16 *)&v[c];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float f = __bfloat162float(e[k]);
            s += f * f;
        }
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float r = rsqrtf(s / dim + eps);
#pragma unroll
    for (int c = 0; c < CH; c++) {
        int i = lane + 32 * c;
        if (i >= nv) continue;
        uint4 o;
        const bf16 *e = (const bf16 *)&v[c], *we = (const bf16 *)&ww[c];
        bf16 *oe = (bf16 *)&o;
#pragma unroll
        for (int k = 0; k < 8; k++)
            oe[k] = __float2bfloat16(__bfloat162float(e[k]) * r * (1.0f + __bfloat162float(we[k])));
        yr[i] = o;
    }
}

/* LayerNorm with one warp per row held in registers (dim % 8 == 0, dim <= 256 CH, aligned):
 * one memory round trip; mean, then the variance around it, both from registers (the
 * block-per-row version reads the row three times: 6.1 us per SigLIP norm under ncu). */
template <int CH>
static __global__ void layernorm_reg_k(bf16 *y, const bf16 *x, const bf16 *w, const bf16 *b,
                                       int rows, int dim, float eps)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nv = dim / 8;
    const uint4 *xr = (const uint4 *)(x + (size_t)row * dim);
    uint4 *yr = (uint4 *)(y + (size_t)row * dim);
    uint4 v[CH], w4[CH], b4[CH]; /* all loads in flight before the reductions */
#pragma unroll
    for (int c = 0; c < CH; c++) {
        int i = lane + 32 * c;
        v[c] = i < nv ? xr[i] : make_uint4(0, 0, 0, 0);
        if (i < nv) {
            w4[c] = __ldg((const uint4 *)w + i);
            b4[c] = __ldg((const uint4 *)b + i);
        }
    }
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        const bf16 *e = (const bf16 *)&v[c];
#pragma unroll
        for (int k = 0; k < 8; k++) s += __bfloat162float(e[k]);
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float mean = s / dim;
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; c++) {
        if (lane + 32 * c >= nv) continue;
        const bf16 *e = (const bf16 *)&v[c];
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float d = __bfloat162float(e[k]) - mean;
            q += d * d;
        }
    }
    for (int o = 16; o > 0; o >>= 1) q += __shfl_xor_sync(0xffffffffu, q, o);
    const float rstd = rsqrtf(q / dim + eps);
#pragma unroll
    for (int c = 0; c < CH; c++) {
        int i = lane + 32 * c;
        if (i >= nv) continue;
        uint4 o4;
        const bf16 *e = (const bf16 *)&v[c], *we = (const bf16 *)&w4[c], *be = (const bf16 *)&b4[c];
        bf16 *oe = (bf16 *)&o4;
#pragma unroll
        for (int k = 0; k < 8; k++)
            oe[k] = __float2bfloat16((__bfloat162float(e[k]) - mean) * rstd * __bfloat162float(we[k]) +
                                     __bfloat162float(be[k]));
        yr[i] = o4;
    }
}

int rtv_cuda_layernorm(rtv_stream *s, void *y, const void *x, const void *w, const void *b,
                       int rows, int dim, float eps)
{
    if (rows <= 0 || dim <= 0) return rtv_fail(RTV_E_ARG, "layernorm: rows=%d dim=%d", rows, dim);
    if (dim % 8 == 0 && dim <= 2048 &&
        !(((uintptr_t)y | (uintptr_t)x | (uintptr_t)w | (uintptr_t)b) & 15)) {
        void (*k)(bf16 *, const bf16 *, const bf16 *, const bf16 *, int, int, float);
        switch ((dim + 255) / 256) {
        case 1: k = layernorm_reg_k<1>; break;
        case 2: k = layernorm_reg_k<2>; break;
        case 3: k = layernorm_reg_k<3>; break;
        case 4: k = layernorm_reg_k<4>; break;
        case 5: k = layernorm_reg_k<5>; break;
        case 6: k = layernorm_reg_k<6>; break;
        case 7: k = layernorm_reg_k<7>; break;
        default: k = layernorm_reg_k<8>; break;
        }
        rtv_cuda_go(s, k, rtv_cdiv(rows, 4), 128, 0, (bf16 *)y, (const bf16 *)x, (const bf16 *)w,
                    (const bf16 *)b, rows, dim, eps);
        LAUNCH_CHECK("layernorm");
        return RTV_OK;
    }
    rtv_cuda_go(s, layernorm_k, rows, NORM_THREADS, 0, (bf16 *)y, (const bf16 *)x, (const bf16 *)w,
                (const bf16 *)b, dim, eps);
    LAUNCH_CHECK("layernorm");
    return RTV_OK;
}

int rtv_cuda_rmsnorm(rtv_stream *s, void *y, const void *x, const void *w, int rows, int dim,
                     float eps)
{
    if (rows <= 0 || dim <= 0) return rtv_fail(RTV_E_ARG, "rmsnorm: rows=%d dim=%d", rows, dim);
    if (dim % 8 == 0 && dim <= 2048 && !(((uintptr_t)y | (uintptr_t)x | (uintptr_t)w) & 15)) {
        void (*k)(bf16 *, const bf16 *, const bf16 *, int, int, float);
        switch ((dim + 255) / 256) {
        case 1: k = rmsnorm_reg_k<1>; break;
        case 2: k = rmsnorm_reg_k<2>; break;
        case 3: k = rmsnorm_reg_k<3>; break;
        case 4: k = rmsnorm_reg_k<4>; break;
        case 5: k = rmsnorm_reg_k<5>; break;
        case 6: k = rmsnorm_reg_k<6>; break;
        case 7: k = rmsnorm_reg_k<7>; break;
        default: k = rmsnorm_reg_k<8>; break;
        }
        rtv_cuda_go(s, k, rtv_cdiv(rows, 4), 128, 0, (bf16 *)y, (const bf16 *)x, (const bf16 *)w,
                    rows, dim, eps);
        LAUNCH_CHECK("rmsnorm");
        return RTV_OK;
    }
    rtv_cuda_go(s, rmsnorm_k, rows, NORM_THREADS, 0, (bf16 *)y, (const bf16 *)x, (const bf16 *)w,
                dim, eps);
    LAUNCH_CHECK("rmsnorm");
    return RTV_OK;
}

/* ---- the RMSNorm moved behind its GEMM (backend.h rms_rope, rms_geglu) ----
 * Each CTA works on one row (blockIdx.y) and first issues the loads of its own outputs' inputs,
 * then computes the row's s_r = rsqrt(mean(x^2) + eps) itself (the row is 2 KB at the expert's
 * width, read from L2 by every CTA of the row), so a row costs one pass instead of a norm
 * kernel before the GEMM. */
static __device__ float rms_row_scale(const bf16 *x, int dim, float eps, float *sh)
{
    float s = 0.0f;
    if (!(dim & 7) && !((uintptr_t)x & 15)) {
        for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) {
            uint4 v = __ldg((const uint4 *)x + i);
            const bf16 *e = (const bf16 *)&v;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float f = __bfloat162float(e[k]);
                s += f * f;
            }
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float f = __bfloat162float(x[i]);
            s += f * f;
        }
    }
    return rsqrtf(block_sum(s, sh) / dim + eps);
}

/* Items of a row: n_heads * hd/2 rotation pairs (as rope_k), then the cols - n_heads * hd
 * values after the heads (v), only scaled. gridDim.x CTAs share a row and stride over its
 * items; each computes the row scale once (rms_cpr keeps their number low for many rows). A
 * thread's first RMS_PRE items are loaded before the row scale and before any store (y and x
 * may alias for the compiler: a load after a store would wait for it), later ones one by one. */
#define RMS_PRE 4
static __device__ __forceinline__ void rms_rope_item(bf16 *row, int t, int nrot, int half,
                                                     int hd, int n_heads, int r, int pos0,
                                                     float log2_theta, float sr, float a, float b)
{
    if (t < nrot) {
        const int i = t % half;
        bf16 *p = row + (t / half) * hd + i;
        const float inv_freq = exp2f(-(2.0f * i / hd) * log2_theta);
        float sn, cs;
        sincosf((float)(pos0 + r) * inv_freq, &sn, &cs);
        a *= sr;
        b *= sr;
        p[0] = __float2bfloat16(a * cs - b * sn);
        p[half] = __float2bfloat16(b * cs + a * sn);
    } else {
        row[n_heads * hd + (t - nrot)] = __float2bfloat16(a * sr);
    }
}

static __global__ void rms_rope_k(bf16 *y, int ld, int cols, const bf16 *x, int dim, float eps,
                                  int n_heads, int hd, int pos0, float log2_theta)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    __shared__ float sh[32];
    const int r = blockIdx.y, half = hd / 2, nrot = n_heads * half, items = nrot + cols - n_heads * hd;
    const int step = gridDim.x * blockDim.x, t0 = blockIdx.x * blockDim.x + threadIdx.x;
    bf16 *row = y + (size_t)r * ld;
    float a[RMS_PRE], b[RMS_PRE];
#pragma unroll
    for (int k = 0; k < RMS_PRE; k++) {
        const int t = t0 + k * step;
        a[k] = b[k] = 0.0f;
        if (t < nrot) {
            const bf16 *p = row + (t / half) * hd + t % half;
            a[k] = __bfloat162float(p[0]);
            b[k] = __bfloat162float(p[half]);
        } else if (t < items) {
            a[k] = __bfloat162float(row[n_heads * hd + (t - nrot)]);
        }
    }
    const float sr = rms_row_scale(x + (size_t)r * dim, dim, eps, sh);
#pragma unroll
    for (int k = 0; k < RMS_PRE; k++) {
        const int t = t0 + k * step;
        if (t < items)
            rms_rope_item(row, t, nrot, half, hd, n_heads, r, pos0, log2_theta, sr, a[k], b[k]);
    }
    for (int t = t0 + RMS_PRE * step; t < items; t += step) {
        float a1 = 0.0f, b1 = 0.0f;
        if (t < nrot) {
            const bf16 *p = row + (t / half) * hd + t % half;
            a1 = __bfloat162float(p[0]);
            b1 = __bfloat162float(p[half]);
        } else {
            a1 = __bfloat162float(row[n_heads * hd + (t - nrot)]);
        }
        rms_rope_item(row, t, nrot, half, hd, n_heads, r, pos0, log2_theta, sr, a1, b1);
    }
}

/* The same op for many rows (the prefix: 512), with the rotation angles shared by the heads:
 * the row's T = hd / 4 threads each own two adjacent pairs (i, i + hd/2) of EVERY head, moved
 * as bf16x2, so a (position, i) angle is computed once per row instead of once per head (pi0:
 * 9 heads). 256 / T rows per CTA; a row's threads (whole warps) sum its x for the row scale.
 * All of a thread's values (up to RH_MAXH heads and RH_TAIL values after the heads) are loaded
 * before the row scale and before any store. Same per-pair arithmetic as rms_rope_item.
 * Measured (H100): for the expert's 51 rows it made the action cycle slower (9.18 against
 * 8.80 ms; few CTAs, each thread's heads in a row), so few rows keep rms_rope_k. */
#define RH_MAXH 16
#define RH_TAIL 8
static __global__ void __launch_bounds__(NORM_THREADS)
    rms_rope_h_k(bf16 *y, int ld, int cols, const bf16 *x, int dim, float eps, int n_heads,
                 int hd, int pos0, float log2_theta, int rows)
{
    constexpr int P = 2; /* pairs per thread */
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    __shared__ float sh[NORM_THREADS / 32];
    const int half = hd / 2, T = half / P, rpb = NORM_THREADS / T;
    const int lr = threadIdx.x / T, j = threadIdx.x % T, r = blockIdx.x * rpb + lr;
    const bool live = r < rows;
    bf16 *row = y + (size_t)(live ? r : 0) * ld;
    const int i0 = j * P, tail = cols - n_heads * hd;
    float a[RH_MAXH][P], b[RH_MAXH][P], tv[RH_TAIL];
#pragma unroll
    for (int h = 0; h < RH_MAXH; h++) {
        if (!live || h >= n_heads) break;
        const bf16 *p = row + h * hd + i0;
        const __nv_bfloat162 va = *(const __nv_bfloat162 *)p;
        const __nv_bfloat162 vb = *(const __nv_bfloat162 *)(p + half);
        a[h][0] = __low2float(va);
        a[h][1] = __high2float(va);
        b[h][0] = __low2float(vb);
        b[h][1] = __high2float(vb);
    }
#pragma unroll
    for (int k = 0; k < RH_TAIL; k++) {
        const int c = j + k * T;
        tv[k] = live && c < tail ? __bfloat162float(row[n_heads * hd + c]) : 0.0f;
    }
    /* the row scale: this row's T threads over x[r, :] */
    float ss = 0.0f;
    if (live) {
        const bf16 *xr = x + (size_t)r * dim;
        if (!(dim & 7) && !((uintptr_t)xr & 15)) {
            for (int c = j; c < dim / 8; c += T) {
                uint4 v = __ldg((const uint4 *)xr + c);
                const bf16 *e = (const bf16 *)&v;
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    const float f = __bfloat162float(e[k]);
                    ss += f * f;
                }
            }
        } else {
            for (int c = j; c < dim; c += T) {
                const float f = __bfloat162float(xr[c]);
                ss += f * f;
            }
        }
    }
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (!live) return;
    float tot = 0.0f;
    for (int w = lr * (T / 32); w < (lr + 1) * (T / 32); w++) tot += sh[w];
    const float sr = rsqrtf(tot / dim + eps);
    float sn[P], cs[P];
#pragma unroll
    for (int k = 0; k < P; k++) {
        const float inv_freq = exp2f(-(2.0f * (i0 + k) / hd) * log2_theta);
        sincosf((float)(pos0 + r) * inv_freq, &sn[k], &cs[k]);
    }
#pragma unroll
    for (int h = 0; h < RH_MAXH; h++) {
        if (h >= n_heads) break;
        bf16 *p = row + h * hd + i0;
        float oa[P], ob[P];
#pragma unroll
        for (int k = 0; k < P; k++) {
            const float va = a[h][k] * sr, vb = b[h][k] * sr;
            oa[k] = va * cs[k] - vb * sn[k];
            ob[k] = vb * cs[k] + va * sn[k];
        }
        *(__nv_bfloat162 *)p = __floats2bfloat162_rn(oa[0], oa[1]);
        *(__nv_bfloat162 *)(p + half) = __floats2bfloat162_rn(ob[0], ob[1]);
    }
#pragma unroll
    for (int k = 0; k < RH_TAIL; k++) {
        const int c = j + k * T;
        if (c < tail) row[n_heads * hd + c] = __float2bfloat16(tv[k] * sr);
    }
    for (int c = j + RH_TAIL * T; c < tail; c += T)
        row[n_heads * hd + c] = __float2bfloat16(__bfloat162float(row[n_heads * hd + c]) * sr);
}

/* gelu(s g) * (s u) of V gate and V up values into y. */
template <int V>
static __device__ __forceinline__ void rms_geglu_put(bf16 *y, const bf16 *gv, const bf16 *uv,
                                                     float sr)
{
    alignas(16) bf16 o[V];
#pragma unroll
    for (int k = 0; k < V; k++)
        o[k] = __float2bfloat16(rtv_gelu_tanh(sr * __bfloat162float(gv[k])) *
                                (sr * __bfloat162float(uv[k])));
    if constexpr (V == 8)
        *(uint4 *)y = *(const uint4 *)o;
    else
        y[0] = o[0];
}

template <int V>
static __device__ __forceinline__ void rms_geglu_get(bf16 *gv, bf16 *uv, const bf16 *g, int ff)
{
    if constexpr (V == 8) {
        *(uint4 *)gv = *(const uint4 *)g;
        *(uint4 *)uv = *(const uint4 *)(g + ff);
    } else {
        gv[0] = g[0];
        uv[0] = g[ff];
    }
}

/* 8 outputs per thread with 16-byte accesses (ff % 8 == 0, aligned), else one; gridDim.x CTAs
 * share a row, loads as in rms_rope_k. */
template <int V>
static __global__ void rms_geglu_k(bf16 *y, const bf16 *gu, const bf16 *x, int dim, float eps,
                                   int ff)
{
    rtv_grid_begin(); /* next kernel may start; previous one done (mma.cuh) */
    __shared__ float sh[32];
    const int r = blockIdx.y, step = gridDim.x * blockDim.x * V;
    const int j0 = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    const bf16 *grow = gu + (size_t)r * 2 * ff;
    bf16 *yrow = y + (size_t)r * ff;
    alignas(16) bf16 gv[RMS_PRE][V], uv[RMS_PRE][V];
#pragma unroll
    for (int k = 0; k < RMS_PRE; k++)
        if (j0 + k * step < ff) rms_geglu_get<V>(gv[k], uv[k], grow + j0 + k * step, ff);
    const float sr = rms_row_scale(x + (size_t)r * dim, dim, eps, sh);
#pragma unroll
    for (int k = 0; k < RMS_PRE; k++)
        if (j0 + k * step < ff) rms_geglu_put<V>(yrow + j0 + k * step, gv[k], uv[k], sr);
    for (int j = j0 + RMS_PRE * step; j < ff; j += step) {
        alignas(16) bf16 g1[V], u1[V];
        rms_geglu_get<V>(g1, u1, grow + j, ff);
        rms_geglu_put<V>(yrow + j, g1, u1, sr);
    }
}

/* CTAs per row for rms_rope / rms_geglu: enough for all of a row's items, but with many rows
 * (the prefix: 512) no more than keep ~4 CTAs per SM busy, since every CTA of a row reads the
 * whole row of x for its row scale. */
static int rms_cpr(const rtv_stream *s, int per_row_threads, int rows)
{
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    const int need = rtv_cdiv(per_row_threads, NORM_THREADS);
    const int want = rtv_cdiv(4 * (sms > 0 ? sms : 1), rows);
    return need < want ? need : want;
}

int rtv_cuda_rms_rope(rtv_stream *s, void *y, int ld, int cols, const void *x, int dim,
                      float eps, int rows, int n_heads, int head_dim, int pos0, float theta)
{
    if (rows <= 0 || dim <= 0 || n_heads <= 0 || head_dim <= 0 || (head_dim & 1) ||
        cols < n_heads * head_dim || ld < cols)
        return rtv_fail(RTV_E_ARG, "rms_rope: rows=%d dim=%d cols=%d ld=%d heads=%d head_dim=%d",
                        rows, dim, cols, ld, n_heads, head_dim);
    /* heads sharing the angles (rms_rope_h_k): enough rows to fill the GPU, a row's pairs in
     * whole warps that divide the CTA, aligned for bf16x2 */
    const int half = head_dim / 2, T = half / 2;
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    if (s->rope_heads && !(half & 1) && !(ld & 1) && !((uintptr_t)y & 3) &&
        (long)rows * T >= 128L * (sms > 0 ? sms : 1) && n_heads <= RH_MAXH && T >= 32 &&
        T % 32 == 0 && NORM_THREADS % T == 0) {
        rtv_cuda_go(s, rms_rope_h_k, rtv_cdiv(rows, NORM_THREADS / T), NORM_THREADS, 0, (bf16 *)y,
                    ld, cols, (const bf16 *)x, dim, eps, n_heads, head_dim, pos0, log2f(theta),
                    rows);
        LAUNCH_CHECK("rms_rope");
        return RTV_OK;
    }
    const int items = n_heads * (head_dim / 2) + cols - n_heads * head_dim;
    rtv_cuda_go(s, rms_rope_k, dim3(rms_cpr(s, items, rows), rows), NORM_THREADS, 0, (bf16 *)y, ld,
                cols, (const bf16 *)x, dim, eps, n_heads, head_dim, pos0, log2f(theta));
    LAUNCH_CHECK("rms_rope");
    return RTV_OK;
}

int rtv_cuda_rms_geglu(rtv_stream *s, void *y, const void *gu, const void *x, int dim, float eps,
                       int rows, int ff)
{
    if (rows <= 0 || dim <= 0 || ff <= 0)
        return rtv_fail(RTV_E_ARG, "rms_geglu: rows=%d dim=%d ff=%d", rows, dim, ff);
    if (ff % 8 == 0 && !(((uintptr_t)y | (uintptr_t)gu) & 15))
        rtv_cuda_go(s, rms_geglu_k<8>, dim3(rms_cpr(s, ff / 8, rows), rows), NORM_THREADS, 0,
                    (bf16 *)y, (const bf16 *)gu, (const bf16 *)x, dim, eps, ff);
    else
        rtv_cuda_go(s, rms_geglu_k<1>, dim3(rms_cpr(s, ff, rows), rows), NORM_THREADS, 0, (bf16 *)y,
                    (const bf16 *)gu, (const bf16 *)x, dim, eps, ff);
    LAUNCH_CHECK("rms_geglu");
    return RTV_OK;
}
