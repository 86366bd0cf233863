/* kernels/cuda/wgmma.cuh — Hopper (sm_90a) device helpers shared by the wgmma kernels
 * (wgemm.cu, attn_wg.cu): mbarriers, TMA tile copies, wgmma descriptors and fences, cluster
 * barriers and DSMEM access. WG_KERNEL is defined where they exist (a device pass for an
 * architecture with sm_90a's features); elsewhere the kernels compile to empty bodies. */
#ifndef RTV_CUDA_WGMMA_CUH
#define RTV_CUDA_WGMMA_CUH

#include <stdint.h>

static __device__ __forceinline__ unsigned wg_saddr(const void *p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WG_KERNEL 1
static __device__ __forceinline__ void wg_bar_init(uint64_t *b, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(wg_saddr(b)), "r"(count) : "memory");
}
static __device__ __forceinline__ void wg_expect(uint64_t *b, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(wg_saddr(b)),
                 "r"(bytes)
                 : "memory");
}
static __device__ __forceinline__ void wg_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(wg_saddr(b)) : "memory");
}
static __device__ __forceinline__ unsigned wg_try(uint64_t *b, unsigned parity)
{
    unsigned done;
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 " selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(done)
                 : "r"(wg_saddr(b)), "r"(parity)
                 : "memory");
    return done;
}
static __device__ __forceinline__ void wg_wait(uint64_t *b, unsigned parity)
{
    while (!wg_try(b, parity)) {
    }
}
/* wg_wait for a barrier completed by other CTAs: if their bytes never come (a byte count that
 * does not match what the peers send), the launch fails after ~2^34 cycles (~9 s) instead of
 * hanging the stream */
static __device__ __forceinline__ void wg_wait_peers(uint64_t *b, unsigned parity)
{
    const long long t0 = clock64();
    while (!wg_try(b, parity))
        if (clock64() - t0 > (1ll << 34)) __trap();
}
/* box at (column c0, row c1) of map m -> dst, completing on barrier b */
static __device__ __forceinline__ void wg_tma(void *dst, const CUtensorMap *m, int c0, int c1,
                                              uint64_t *b)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];" ::"r"(wg_saddr(dst)),
                 "l"((uint64_t)m), "r"(c0), "r"(c1), "r"(wg_saddr(b))
                 : "memory");
}
/* bytes (a multiple of 16, both ends 16-byte aligned) from global src to shared dst by the
 * copy engine, completing on barrier b */
static __device__ __forceinline__ void wg_bulk(void *dst, const void *src, unsigned bytes,
                                               uint64_t *b)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1], %2, [%3];" ::"r"(wg_saddr(dst)), "l"((uint64_t)src), "r"(bytes),
                 "r"(wg_saddr(b))
                 : "memory");
}
/* wgmma shared-memory descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart */
static __device__ __forceinline__ uint64_t wg_desc(const void *p)
{
    return (uint64_t)((wg_saddr(p) & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
/* d[64 x 64] (+)= A[64 x 16] . B[64 x 16]^T, both from shared memory; acc = 0: d = A . B^T
 * (the first MMA of a tile: no zeroing instructions on the accumulators, which would make
 * ptxas serialize the wgmma pipeline) */
static __device__ __forceinline__ void wg_mma(float *d, uint64_t da, uint64_t db, int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "%32, %33, p, 1, 1, 0, 0;\n}"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),
          "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),
          "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),
          "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
          "+f"(d[31])
        : "l"(da), "l"(db), "r"(acc));
}
static __device__ __forceinline__ void wg_fence(void)
{
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
static __device__ __forceinline__ void wg_commit(void)
{
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void wg_wait_group(void)
{
    asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void wg_cluster_sync(void)
{
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}
/* our shared memory address of p as seen in cluster CTA `rank` */
static __device__ __forceinline__ unsigned wg_peer(const void *p, unsigned rank)
{
    unsigned a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(wg_saddr(p)), "r"(rank));
    return a;
}
/* 8 / 4 bytes into a peer's shared memory, completing bytes on its barrier (both cluster
 * addresses from wg_peer) */
static __device__ __forceinline__ void wg_push2(unsigned dst, unsigned bar, float x, float y)
{
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f32 [%0], {%1, %2}, [%3];"
                 ::"r"(dst), "f"(x), "f"(y), "r"(bar) : "memory");
}
static __device__ __forceinline__ void wg_push1(unsigned dst, unsigned bar, float x)
{
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.f32 [%0], %1, [%2];"
                 ::"r"(dst), "f"(x), "r"(bar) : "memory");
}
/* 16 bytes at p (our shared memory address) in cluster CTA `rank`'s shared memory */
static __device__ __forceinline__ float4 wg_ld_peer4(const float *p, unsigned rank)
{
    unsigned a;
    float4 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(wg_saddr(p)), "r"(rank));
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(a)
                 : "memory");
    return v;
}
static __device__ __forceinline__ float wg_ld_peer(const float *p, unsigned rank)
{
    unsigned a;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(a) : "r"(wg_saddr(p)), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(a) : "memory");
    return v;
}
/* box at (column c0, row c1) of map m -> dst in every cluster CTA of mask (the same shared
 * memory offset in each), completing its bytes on each one's barrier at b's offset */
static __device__ __forceinline__ void wg_tma_mc(void *dst, const CUtensorMap *m, int c0, int c1,
                                                 uint64_t *b, unsigned short mask)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 ".multicast::cluster [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(wg_saddr(dst)),
                 "l"((uint64_t)m), "r"(c0), "r"(c1), "r"(wg_saddr(b)), "h"(mask)
                 : "memory");
}
/* arrive on the barrier at b's offset in cluster CTA `rank` (the default release, at CTA
 * scope: with .release.cluster, gemm_mc's multicast rings ran 3-6x slower than without a
 * cluster; with this form 1.2-1.4x, H100 2026-12-07) */
static __device__ __forceinline__ void wg_arrive_peer(uint64_t *b, unsigned rank)
{
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(wg_peer(b, rank))
                 : "memory");
}
/* wgmma shared-memory descriptor of an N-major operand with the 128-byte swizzle: 64-wide
 * column blocks `block` bytes apart, 8-row groups 1024 bytes apart */
static __device__ __forceinline__ uint64_t wg_desc_n(const void *p, unsigned block)
{
    return (uint64_t)((wg_saddr(p) & 0x3FFFF) >> 4) | ((uint64_t)(block >> 4) << 16) |
           ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* s[64 x 80] (+)= A[64 x 16] . B[80 x 16]^T, both from shared memory (K-major); acc = 0:
 * s = A . B^T (attention's S = Q K^T over an 80-key chunk) */
static __device__ __forceinline__ void wg_mma_s80(float *s, uint64_t da, uint64_t db, int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %42, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n80k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39}, "
        "%40, %41, p, 1, 1, 0, 0;\n}"
        : "+f"(s[0]), "+f"(s[1]), "+f"(s[2]), "+f"(s[3]), "+f"(s[4]), "+f"(s[5]), "+f"(s[6]),
          "+f"(s[7]), "+f"(s[8]), "+f"(s[9]), "+f"(s[10]), "+f"(s[11]), "+f"(s[12]), "+f"(s[13]),
          "+f"(s[14]), "+f"(s[15]), "+f"(s[16]), "+f"(s[17]), "+f"(s[18]), "+f"(s[19]),
          "+f"(s[20]), "+f"(s[21]), "+f"(s[22]), "+f"(s[23]), "+f"(s[24]), "+f"(s[25]),
          "+f"(s[26]), "+f"(s[27]), "+f"(s[28]), "+f"(s[29]), "+f"(s[30]), "+f"(s[31]),
          "+f"(s[32]), "+f"(s[33]), "+f"(s[34]), "+f"(s[35]), "+f"(s[36]), "+f"(s[37]),
          "+f"(s[38]), "+f"(s[39])
        : "l"(da), "l"(db), "r"(acc));
}
/* o[64 x 128] (+)= P[64 x 16] . V[16 x 128]: P from registers (an accumulator layout rounded
 * to bf16 pairs: wgmma's register A fragment), V from shared memory N-major (rows of K) */
static __device__ __forceinline__ void wg_mma_pv128(float *o, const uint32_t *pa, uint64_t db,
                                                 int acc)
{
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}"
        : "+f"(o[0]), "+f"(o[1]), "+f"(o[2]), "+f"(o[3]), "+f"(o[4]), "+f"(o[5]), "+f"(o[6]),
          "+f"(o[7]), "+f"(o[8]), "+f"(o[9]), "+f"(o[10]), "+f"(o[11]), "+f"(o[12]), "+f"(o[13]),
          "+f"(o[14]), "+f"(o[15]), "+f"(o[16]), "+f"(o[17]), "+f"(o[18]), "+f"(o[19]),
          "+f"(o[20]), "+f"(o[21]), "+f"(o[22]), "+f"(o[23]), "+f"(o[24]), "+f"(o[25]),
          "+f"(o[26]), "+f"(o[27]), "+f"(o[28]), "+f"(o[29]), "+f"(o[30]), "+f"(o[31]),
          "+f"(o[32]), "+f"(o[33]), "+f"(o[34]), "+f"(o[35]), "+f"(o[36]), "+f"(o[37]),
          "+f"(o[38]), "+f"(o[39]), "+f"(o[40]), "+f"(o[41]), "+f"(o[42]), "+f"(o[43]),
          "+f"(o[44]), "+f"(o[45]), "+f"(o[46]), "+f"(o[47]), "+f"(o[48]), "+f"(o[49]),
          "+f"(o[50]), "+f"(o[51]), "+f"(o[52]), "+f"(o[53]), "+f"(o[54]), "+f"(o[55]),
          "+f"(o[56]), "+f"(o[57]), "+f"(o[58]), "+f"(o[59]), "+f"(o[60]), "+f"(o[61]),
          "+f"(o[62]), "+f"(o[63])
        : "r"(pa[0]), "r"(pa[1]), "r"(pa[2]), "r"(pa[3]), "l"(db), "r"(acc));
}
/* *ss += the squares of 32 bf16 values (64 bytes) at p, one by one: half a 128-byte row of a
 * swizzled chunk (the swizzle permutes 16-byte pieces within a row: a row's sum is kept) */
static __device__ __forceinline__ void wg_add_sumsq64(float *ss, const void *p)
{
    const uint4 *q = (const uint4 *)p;
#pragma unroll
    for (int u = 0; u < 4; u++) {
        const uint4 v = q[u];
        const __nv_bfloat162 *e = (const __nv_bfloat162 *)&v;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 f = __bfloat1622float2(e[k]);
            *ss += f.x * f.x + f.y * f.y;
        }
    }
}
/* non-blocking: has the phase of this parity completed? (wg_try may wait a while) */
static __device__ __forceinline__ unsigned wg_test(uint64_t *b, unsigned parity)
{
    unsigned done;
    asm volatile("{\n .reg .pred p;\n mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 " selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(done)
                 : "r"(wg_saddr(b)), "r"(parity)
                 : "memory");
    return done;
}
static __device__ __forceinline__ unsigned wg_cluster_rank(void)
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
#endif

#endif
