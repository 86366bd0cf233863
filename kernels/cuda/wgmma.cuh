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
static __device__ __forceinline__ unsigned wg_cluster_rank(void)
{
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
#endif

#endif
