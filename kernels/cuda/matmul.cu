/* kernels/cuda/matmul.cu — y[M,N] = epi(x[M,K] . w[N,K]^T + bias) through cuBLASLt.
 *
 * Row-major y = x.w^T is column-major y^T = w . x^T: A = w (K x N col-major, transposed),
 * B = x (K x M col-major, ld = ldx), C = D = y (N x M col-major, ld = ldy). bf16 in and out,
 * fp32 accumulation (CUBLAS_COMPUTE_32F). Bias and GELU ride the BIAS / GELU(_BIAS) epilogues
 * (cuBLASLt's GELU is the tanh form: checked value by value, tests/cuda/test_cuda_ops.c
 * t_gelu_exact; RTV_LT_GELU=0 runs it as a pass instead); RTV_MM_ACCUM is beta = 1 (residual
 * add in the GEMM); SiLU runs as one elementwise pass after the GEMM (no cuBLASLt epilogue).
 * M <= 64 goes to the few-row kernel first when it is switched on (skinny.cu, opt-in).
 * Plans (descriptors + heuristic algo) are cached per stream by shape, so repeated calls and
 * graph capture cost no heuristic search. */
#include <string.h>

#include "cuda_impl.h"

static struct rtv_lt_plan *plan_get(rtv_stream *s, int M, int N, int K, int ldx, int ldy,
                                    int epi, int beta1, int *st)
{
    *st = RTV_OK;
    struct rtv_lt_plan *free_slot = NULL;
    for (int i = 0; i < RTV_CUDA_LT_CACHE; i++) {
        struct rtv_lt_plan *p = &s->plans[i];
        if (!p->valid) {
            if (!free_slot) free_slot = p;
            continue;
        }
        if (p->M == M && p->N == N && p->K == K && p->ldx == ldx && p->ldy == ldy &&
            p->epi == epi && p->beta1 == beta1)
            return p;
    }
    if (!free_slot) {
        *st = rtv_fail(RTV_E_NOMEM, "cuBLASLt plan cache full (%d shapes)", RTV_CUDA_LT_CACHE);
        return NULL;
    }
    struct rtv_lt_plan *p = free_slot;
    memset(p, 0, sizeof(*p));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    /* epi: bit 0 bias, bit 1 GELU-tanh in the epilogue */
    cublasLtEpilogue_t e = (epi & 2) ? ((epi & 1) ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU)
                                     : ((epi & 1) ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT);
    cudaDataType_t bias_t = CUDA_R_16BF;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[8];
    int n_res = 0;
#define LT(call)                                                                              \
    do {                                                                                      \
        cublasStatus_t bs_ = (call);                                                          \
        if (bs_ != CUBLAS_STATUS_SUCCESS) {                                                   \
            *st = rtv_cublas_fail(bs_, #call, __FILE__, __LINE__);                             \
            goto fail;                                                                        \
        }                                                                                     \
    } while (0)
    LT(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
    if (epi & 1)
        LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_t,
                                          sizeof(bias_t)));
    if (s->sm_count > 0) { /* plan for the partition, not the whole GPU */
        int32_t sms = s->sm_count;
        LT(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &sms,
                                          sizeof(sms)));
    }
    LT(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, K, N, K));
    LT(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, K, M, ldx));
    LT(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_16BF, N, M, ldy));
    LT(cublasLtMatmulPreferenceCreate(&pref));
    LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &s->lt_ws_bytes, sizeof(s->lt_ws_bytes)));
    LT(cublasLtMatmulAlgoGetHeuristic(s->lt, p->desc, p->a, p->b, p->c, p->c, pref,
                                      s->lt_algo > 0 ? 8 : 1, res, &n_res));
    cublasLtMatmulPreferenceDestroy(pref);
    pref = NULL;
    if (n_res < 1) {
        *st = rtv_fail(RTV_E_UNSUPPORTED, "cuBLASLt: no algorithm for M=%d N=%d K=%d", M, N, K);
        goto fail;
    }
    /* s->lt_algo (tune.h, benchmarks only): the heuristic's i-th choice instead of its first */
    p->algo = res[s->lt_algo < n_res ? s->lt_algo : n_res - 1].algo;
    p->M = M; p->N = N; p->K = K; p->ldx = ldx; p->ldy = ldy; p->epi = epi; p->beta1 = beta1;
    p->valid = 1;
    return p;
fail:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof(*p));
    return NULL;
#undef LT
}

void rtv_cuda_plans_free(rtv_stream *s)
{
    for (int i = 0; i < RTV_CUDA_LT_CACHE; i++) {
        struct rtv_lt_plan *p = &s->plans[i];
        if (!p->valid) continue;
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->c);
        cublasLtMatmulDescDestroy(p->desc);
        memset(p, 0, sizeof(*p));
    }
}

extern "C" int rtv_cuda_lt_algo(rtv_stream *s, int index)
{
    rtv_cuda_plans_free(s);
    s->lt_algo = index < 0 ? 0 : index > 7 ? 7 : index;
    return RTV_OK;
}

int rtv_cuda_matmul(rtv_stream *s, void *y, int ldy, const void *x, int ldx, const void *w,
                    const void *bias, int M, int N, int K, int flags)
{
    if (M <= 0 || N <= 0 || K <= 0 || ldx < K || ldy < N)
        return rtv_fail(RTV_E_ARG, "matmul: bad shape M=%d N=%d K=%d ldx=%d ldy=%d", M, N, K,
                        ldx, ldy);
    int act = flags & (RTV_MM_GELU | RTV_MM_SILU);
    int accum = (flags & RTV_MM_ACCUM) != 0;
    if (act && accum)
        return rtv_fail(RTV_E_UNSUPPORTED, "matmul: activation with RTV_MM_ACCUM is not "
                        "supported by the CUDA backend");
    int st;
    if (!rtv_cuda_wgemm(s, y, ldy, x, ldx, w, bias, M, N, K, flags, &st)) return st;
    if (!rtv_cuda_skinny(s, y, ldy, x, ldx, w, bias, M, N, K, flags, &st)) return st;
    if (!rtv_cuda_gm(s, y, ldy, x, ldx, w, bias, M, N, K, flags, &st)) return st;
    const int lt_gelu = (flags & RTV_MM_GELU) && s->lt_gelu;
    struct rtv_lt_plan *p = plan_get(s, M, N, K, ldx, ldy, (bias != NULL) | (lt_gelu << 1), accum,
                                     &st);
    if (!p) return st;
    if (bias)
        BLAS_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof(bias)));
    float alpha = 1.0f, beta = accum ? 1.0f : 0.0f;
    BLAS_TRY(cublasLtMatmul(s->lt, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c,
                            &p->algo, s->lt_ws, s->lt_ws_bytes, s->s));
    if (act && !lt_gelu) return rtv_cuda_activation(s, y, ldy, M, N, flags);
    return RTV_OK;
}
