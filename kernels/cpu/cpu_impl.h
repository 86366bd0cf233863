/* kernels/cpu/cpu_impl.h — private to the CPU backend: the stream object and the op entry
 * points (same arguments as the rtv_backend members; see kernels/backend.h for the math).
 *
 * The CPU backend is the reference: fp32 activations and weights in host memory, fp32 math
 * (statistics accumulated in double), GEMMs through OpenBLAS. Ops run synchronously on the
 * calling thread, so "stream order" is call order and sync() has nothing to wait for.
 * Each backend defines struct rtv_stream privately; a stream only ever reaches the backend
 * that made it.
 */
#ifndef RTV_CPU_IMPL_H
#define RTV_CPU_IMPL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "runtime/status.h"

/* Per-stream scratch, in floats (16 MiB): attention logits for a block of query rows
 * (rows * n_keys; at 8192 keys that is 512 query rows per GEMM), RoPE's cos/sin tables and
 * matmul's activation-then-accumulate epilogue (rows * N). Allocated by stream_new, never
 * in an op. */
#define RTV_CPU_SCRATCH_FLOATS ((size_t)4 << 20)

struct rtv_stream {
    float *scratch;        /* [RTV_CPU_SCRATCH_FLOATS], host; used by one op at a time */
    size_t scratch_floats;
};

/* exp(t) with t clamped to <= 80: exp(80) = 5.5e34 is still finite, and where the clamp
 * acts (x / (1 + exp(t)) below) the result is |x| * 2e-35 instead of a subnormal or -0, a
 * difference far below fp32 resolution of any other value in the row. glibc's expf takes a
 * slow path (errno) on overflow, which saturated activations would hit constantly. */
static inline float rtv_cpu_exp_sat(float t) { return expf(t < 80.0f ? t : 80.0f); }

/* gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), fp32, evaluated as
 * x / (1 + exp(-2u)) (the same function: 1 + tanh(u) = 2 / (1 + exp(-2u))), which is several
 * times faster than tanhf and has no cancellation. */
static inline float rtv_cpu_gelu_tanh(float x)
{
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    return x / (1.0f + rtv_cpu_exp_sat(-2.0f * k0 * (x + k1 * x * x * x)));
}

/* silu(x) = x * sigmoid(x) = x / (1 + exp(-x)). */
static inline float rtv_cpu_silu(float x) { return x / (1.0f + rtv_cpu_exp_sat(-x)); }

int rtv_cpu_matmul(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                   const void *bias, int M, int N, int K, int flags);
int rtv_cpu_layernorm(rtv_stream *s, void *y, const void *x, const void *w, const void *b,
                      int rows, int dim, float eps);
int rtv_cpu_rmsnorm(rtv_stream *s, void *y, const void *x, const void *w, int rows, int dim,
                    float eps);
int rtv_cpu_rope(rtv_stream *s, void *x, int ld, int rows, int n_heads, int head_dim, int pos0,
                 float theta);
int rtv_cpu_attention(rtv_stream *s, void *out, int ldo, const void *q, int ldq,
                      const void *k0, const void *v0, int ld0, int n0,
                      const void *k1, const void *v1, int ld1, int n1,
                      int n_q, int n_heads, int n_kv_heads, int head_dim, float scale,
                      int limit_rows, int limit_keys);
int rtv_cpu_geglu(rtv_stream *s, void *y, const void *gu, int rows, int ff);
/* The RMSNorm row scale behind the GEMM (backend.h rms_rope / rms_geglu); rtv_cpu_rms_scale is
 * the s_r of one row, the same double sum as rmsnorm. */
float rtv_cpu_rms_scale(const float *x, int dim, float eps);
int rtv_cpu_rms_rope(rtv_stream *s, void *y, int ld, int cols, const void *x, int dim, float eps,
                     int rows, int n_heads, int head_dim, int pos0, float theta);
int rtv_cpu_rms_geglu(rtv_stream *s, void *y, const void *gu, const void *x, int dim, float eps,
                      int rows, int ff);
int rtv_cpu_add_weight_rows(rtv_stream *s, void *y, const void *w, int rows, int dim,
                            int period);
int rtv_cpu_axpy(rtv_stream *s, void *y, const void *x, float alpha, size_t n);
int rtv_cpu_scale(rtv_stream *s, void *y, const void *x, float alpha, size_t n);
int rtv_cpu_copy2d(rtv_stream *s, void *dst, int ldd, const void *src, int lds, int rows,
                   int cols);
int rtv_cpu_mean_rows(rtv_stream *s, void *y, const void *x, int ldx, int rows, int dim);
int rtv_cpu_preprocess(rtv_stream *s, void *y, const uint8_t *rgb, int w, int h, int stride,
                       int out);
int rtv_cpu_patchify(rtv_stream *s, void *y, const void *img, int n_img, int size, int p);

#endif
