/* kernels/cpu/matmul.c — y[M,N] = epilogue(x[M,K] . w[N,K]^T + bias[N]), fp32, OpenBLAS.
 *
 * One cblas_sgemm(RowMajor, NoTrans, Trans): x rows at stride ldx, w (PyTorch (out, in)
 * layout, rows contiguous at stride K), y rows at stride ldy. Epilogue order: bias,
 * activation (GELU-tanh or SiLU), accumulate (y += result).
 *   no activation: the GEMM writes y directly (beta = 1 accumulates), then one pass adds the
 *                  bias: y_old + x.w^T + b, the same sum in another order.
 *   activation without accumulate: GEMM into y, then y = act(y + b) in one pass.
 *   activation with accumulate: GEMM into stream scratch in blocks of rows, then
 *                  y += act(t + b) (the CUDA backend does not offer this combination).
 * y must not overlap x or w. */
#include <cblas.h>

#include "cpu_impl.h"

static void bias_act_rows(float *y, int ldy, const float *bias, int M, int N, int act)
{
    for (int r = 0; r < M; r++) {
        float *yr = y + (size_t)r * ldy;
        if (bias)
            for (int j = 0; j < N; j++) yr[j] += bias[j];
        if (act == RTV_MM_GELU)
            for (int j = 0; j < N; j++) yr[j] = rtv_cpu_gelu_tanh(yr[j]);
        else if (act == RTV_MM_SILU)
            for (int j = 0; j < N; j++) yr[j] = rtv_cpu_silu(yr[j]);
    }
}

int rtv_cpu_matmul(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                   const void *bias, int M, int N, int K, int flags)
{
    if (M <= 0 || N <= 0 || K <= 0 || ldx < K || ldy < N)
        return rtv_fail(RTV_E_ARG, "matmul: bad shape M=%d N=%d K=%d ldx=%d ldy=%d (expected "
                        "positive sizes, ldx >= K, ldy >= N)", M, N, K, ldx, ldy);
    if (!s || !y || !x || !w) return rtv_fail(RTV_E_ARG, "matmul: NULL stream or tensor");
    if (flags & ~(RTV_MM_GELU | RTV_MM_SILU | RTV_MM_ACCUM))
        return rtv_fail(RTV_E_ARG, "matmul: unknown epilogue flags 0x%x", (unsigned)flags);
    int act = flags & (RTV_MM_GELU | RTV_MM_SILU);
    int accum = (flags & RTV_MM_ACCUM) != 0;
    if (act == (RTV_MM_GELU | RTV_MM_SILU))
        return rtv_fail(RTV_E_ARG, "matmul: RTV_MM_GELU and RTV_MM_SILU both set");
    float *yf = y;
    const float *xf = x, *wf = w, *bf = bias;

    if (!act || !accum) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, xf, ldx, wf, K,
                    accum ? 1.0f : 0.0f, yf, ldy);
        if (bf || act) bias_act_rows(yf, ldy, bf, M, N, act);
        return RTV_OK;
    }
    if ((size_t)N > s->scratch_floats)
        return rtv_fail(RTV_E_UNSUPPORTED, "matmul: N=%d exceeds the stream scratch (%zu "
                        "floats) needed by activation + RTV_MM_ACCUM", N, s->scratch_floats);
    int block = (int)(s->scratch_floats / (size_t)N);
    if (block > M) block = M;
    for (int r0 = 0; r0 < M; r0 += block) {
        int m = M - r0 < block ? M - r0 : block;
        float *t = s->scratch;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, N, K, 1.0f,
                    xf + (size_t)r0 * ldx, ldx, wf, K, 0.0f, t, N);
        bias_act_rows(t, N, bf, m, N, act);
        for (int r = 0; r < m; r++) {
            float *yr = yf + (size_t)(r0 + r) * ldy;
            const float *tr = t + (size_t)r * N;
            for (int j = 0; j < N; j++) yr[j] += tr[j];
        }
    }
    return RTV_OK;
}
