/* kernels/cuda/wg_softmax.cuh — one 80-key chunk of attention's online softmax on the
 * accumulators of S = Q K^T (wgmma m64n80k16), shared by attn_wg.cu and mk.cu. Include after
 * mma.cuh and wgmma.cuh; exists where WG_KERNEL does. */
#ifndef RTV_CUDA_WG_SOFTMAX_CUH
#define RTV_CUDA_WG_SOFTMAX_CUH

#ifdef WG_KERNEL
/* A thread's rows r and r + 8 of the chunk: s[4 j + e] and s[4 j + 2 + e] hold the logits of
 * key kb + 8 j + 2 q4 + e (q4 = lane % 4), visible below e0 and e1 (the split's end or the
 * limit rule's). Masks and scales them by scale2 (base-2 logits), updates the rows' running
 * maxima m and sums l (the sums are per lane until the caller adds its quad), rescales the
 * NO accumulators of O when rescale (not the first chunk), and leaves P rounded to bf16 in
 * wgmma's register A layout: k step t of P.V takes pa[4 t .. 4 t + 3] (keys 16 t ..). */
template <int NO>
static __device__ __forceinline__ void wg_softmax80(float *s, int kb, int q4, int e0, int e1,
                                                    float scale2, float *m0, float *m1,
                                                    float *l0, float *l1, float *o, int rescale,
                                                    uint32_t *pa)
{
    float x0 = -INFINITY, x1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < 10; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int key = kb + 8 * j + 2 * q4 + e;
            s[4 * j + e] = key < e0 ? s[4 * j + e] * scale2 : -INFINITY;
            s[4 * j + 2 + e] = key < e1 ? s[4 * j + 2 + e] * scale2 : -INFINITY;
            x0 = fmaxf(x0, s[4 * j + e]);
            x1 = fmaxf(x1, s[4 * j + 2 + e]);
        }
    x0 = fmaxf(*m0, rtv_quad_max(x0));
    x1 = fmaxf(*m1, rtv_quad_max(x1));
    const float b0 = x0 == -INFINITY ? 0.f : x0, b1 = x1 == -INFINITY ? 0.f : x1;
    const float c0 = exp2f(*m0 - b0), c1 = exp2f(*m1 - b1); /* 0 while a row had no key */
    *m0 = x0;
    *m1 = x1;
    float p0 = 0.f, p1 = 0.f;
#pragma unroll
    for (int j = 0; j < 10; j++) {
        const float u0 = exp2f(s[4 * j] - b0), u1 = exp2f(s[4 * j + 1] - b0);
        const float u2 = exp2f(s[4 * j + 2] - b1), u3 = exp2f(s[4 * j + 3] - b1);
        p0 += u0 + u1;
        p1 += u2 + u3;
        pa[2 * j] = rtv_pack_bf16x2(u0, u1);
        pa[2 * j + 1] = rtv_pack_bf16x2(u2, u3);
    }
    *l0 = *l0 * c0 + p0;
    *l1 = *l1 * c1 + p1;
    if (rescale)
#pragma unroll
        for (int i = 0; i < NO / 4; i++) {
            o[4 * i] *= c0;
            o[4 * i + 1] *= c0;
            o[4 * i + 2] *= c1;
            o[4 * i + 3] *= c1;
        }
}
#endif

#endif
