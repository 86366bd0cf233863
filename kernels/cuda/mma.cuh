/* kernels/cuda/mma.cuh — the warp-level matrix pieces shared by the hand-written tensor-core
 * kernels (skinny.cu, attn_small.cu): sm_80+ PTX, nothing Hopper-only.
 *
 * mma.sync m16n8k16, bf16 inputs, fp32 accumulators (PTX ISA fragment layouts; g = lane / 4,
 * t = lane % 4): A {a0..a3} = (row g, k 2t..2t+1), (row g+8, k 2t..), (row g, k 2t+8..),
 * (row g+8, k 2t+8..); B {b0, b1} = (k 2t..2t+1, col g), (k 2t+8.., col g); C {c0..c3} =
 * (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1). */
#ifndef RTV_CUDA_MMA_CUH
#define RTV_CUDA_MMA_CUH

#include "cuda_impl.h"

/* c += a . b */
static __device__ __forceinline__ void rtv_mma16816(float *c, uint32_t a0, uint32_t a1,
                                                    uint32_t a2, uint32_t a3, uint32_t b0,
                                                    uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* Two floats as one bf16x2 register (round to nearest even), lo in the low half. */
static __device__ __forceinline__ uint32_t rtv_pack_bf16x2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* 16 bytes global -> shared, asynchronous (cp.async.cg: bypasses L1). */
static __device__ __forceinline__ void rtv_cp_async16(void *smem, const void *gmem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem));
}

/* Element offset of 16-byte unit u (0..7) of row r in a block of 64-element rows with the
 * 128-byte XOR swizzle (unit u of row r stored at u ^ (r & 7)): ldmatrix reading 8 rows at one
 * unit hits 8 different bank groups. */
static __device__ __forceinline__ int rtv_swz(int r, int u) { return r * 64 + ((u ^ (r & 7)) << 3); }

/* ldmatrix x4 (four 8x8 b16 matrices, row addresses from lanes 0-7, 8-15, 16-23, 24-31). */
static __device__ __forceinline__ void rtv_ldsm_x4(uint32_t *r, const void *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* 4 floats -> 4 bf16 at p (8 bytes, 8-byte aligned) */
static __device__ __forceinline__ void rtv_put_bf16x4(bf16 *p, float a, float b, float c, float d)
{
    uint2 o;
    o.x = rtv_pack_bf16x2(a, b);
    o.y = rtv_pack_bf16x2(c, d);
    *(uint2 *)p = o;
}

/* A row's max and sum over the quad of lanes that holds it in an MMA accumulator (lanes 4g..4g+3). */
static __device__ __forceinline__ float rtv_quad_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
static __device__ __forceinline__ float rtv_quad_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* Programmatic dependent launch (sm_90+; no-ops elsewhere). wait: block until the grids this
 * one depends on have completed and their writes are visible (a kernel launched with the
 * programmatic-serialization attribute must call it before touching their outputs).
 * launch: let the next kernel, if launched programmatically, start its CTAs now (it cannot
 * read our outputs before its own wait, so calling this early is always safe; without a
 * programmatic dependent it does nothing). */
static __device__ __forceinline__ void rtv_griddep_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void rtv_griddep_launch(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}
/* The start of a one-pass kernel (norms, RoPE, elementwise, softmax): let the next kernel
 * place its CTAs, then wait for the previous one. On sm_90 these kernels are launched
 * programmatically (rtv_cuda_go; RTV_PDL_SMALL=0: not), so they may start before their
 * predecessor ends; launched plainly, the wait returns at once. */
static __device__ __forceinline__ void rtv_grid_begin(void)
{
    rtv_griddep_launch();
    rtv_griddep_wait();
}

#endif
