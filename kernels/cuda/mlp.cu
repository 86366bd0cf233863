/* kernels/cuda/mlp.cu — the action expert's MLP block in one persistent kernel (the rms_mlp op):
 *
 *   x[m, :] += down(geglu(s_m * (gate_up . x[m, :])))     s_m = rsqrt(mean(x[m, :]^2) + eps)
 *
 * with the RMSNorm's (1 + w) folded into gate_up's columns at load (backend.h rms_geglu). The
 * unfused path is three launches per layer and Euler step (cuBLASLt gate_up, rms_geglu,
 * cuBLASLt down + residual, ~22 us against 8.4 us for streaming the block's 25 MB of weights at
 * 3 TB/s): each GEMM ramps up after its predecessor drained, and the down projection's split-K
 * adds a reduce kernel. Here one CTA per SM (cooperative launch: all resident at once) runs
 *
 *   phase A  gate_up + GeGLU: item = 32 output features = 64 weight rows (per m16 tile 8 gate
 *            rows and their 8 up rows, so gate and up of one (feature, row) meet in one
 *            thread), over the whole K; every CTA also sums x[m]^2 from the chunks it streams
 *            (its own s_m), and writes h[m, f] = gelu(s_m g) * (s_m u) in bf16;
 *   barrier  but first each CTA issues the weight copies of its first phase-B item: they
 *            stream in while the slowest CTA of phase A finishes;
 *   phase B  down + residual: item = 32 output columns x a K split (KS splits chosen so that
 *            items ~ CTAs); each split leaves its fp32 partial in scratch, the last to arrive
 *            (arrival counter, reset by that CTA) adds all KS partials in split order and x:
 *            deterministic.
 *
 * Every item streams 64-element K chunks of its weight rows and of the activation rows through
 * an S-stage cp.async ring (16-byte copies, 128-byte swizzle, conflict-free ldmatrix) and 8
 * warps run mma.sync m16n8k16 (weights as A, activation rows as B, n-tiles of 8 rows): each
 * m16 tile is shared by 8 / tiles warps over the chunk's four k16 steps, their partial tiles
 * added in shared memory in a fixed order. sm_80+ (nothing Hopper-only). OPT-IN
 * (RTV_FUSED_MLP=1 registers the op, backend.cu); shapes it cannot take run the unfused
 * launches. */
#include <math.h>
#include <stdio.h>

#include "cuda_impl.h"
#include "mma.cuh"

#define MLP_THREADS 256
#define MLP_STAGE 16384    /* bytes per stage: 64 weight rows + 64 activation rows of 64 bf16 */
#define MLP_FEAT 32        /* phase A: output features per item */
#define MLP_COLS 32        /* phase B: output columns per item */
#define MLP_MAX_RB 1024    /* phase B arrival counters (dim <= 32768) */

struct mlp_args {
    bf16 *x;               /* [M, dim], the residual stream, updated in place */
    const bf16 *wgu, *wd;  /* [2 ff, dim] (gate rows, then up rows), [dim, ff] */
    const bf16 *att, *wo;  /* NULL, or phase O: att [M, qd], wo [dim, qd] */
    const bf16 *wq;        /* NULL, or phase Q: the next layer's qkv [qcols, dim], norm folded */
    bf16 *qy;              /* its output rows (stride ldqy) */
    int ldqy, qcols, rheads, hd, pos0;
    float log2_theta;
    bf16 *h;               /* [M, ff] */
    float *part;           /* split-K partials (ks > 1): [column block][split][nt * 8][MLP_COLS] */
    unsigned *sync;        /* [0] barrier arrivals, [1] exits, [2 + rb] phase B arrivals */
    int M, nt, dim, ff, ks, qd, kso; /* ks, kso: K splits of phases B and O */
    unsigned long long *trace; /* NULL, or per CTA 16 %globaltimer marks (RTV_MLP_TRACE=1) */
    int rot; /* 1: each CTA starts its items at chunk blockIdx.x (mlp_rot) */
    float eps;
};

static __device__ __forceinline__ void mlp_cp16(void *smem, const void *g, bool ok)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(g),
                 "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void mlp_commit(void)
{
    asm volatile("cp.async.commit_group;" ::: "memory");
}
template <int N> static __device__ __forceinline__ void mlp_wait(void)
{
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* The weight rows [RB][64] of chunk c into stage st; row r's k = 0 is at wrow(r). */
template <int RB, typename WRow>
static __device__ __forceinline__ void mlp_issue_w(unsigned char *sm, int st, int c, WRow wrow)
{
    bf16 *d = (bf16 *)(sm + (size_t)st * MLP_STAGE);
    for (int i = threadIdx.x; i < RB * 8; i += MLP_THREADS) {
        const int r = i >> 3, u = i & 7;
        mlp_cp16(d + rtv_swz(r, u), wrow(r) + c * 64 + u * 8, true);
    }
}
/* The chunk a CTA streams c-th: with rot = CTA index (RTV_MLP_STAGGER, default on) the CTAs
 * start at different chunks, so that 132 of them do not read the same activation lines of L2
 * at once; the sums' order changes with it, deterministically. */
static __device__ __forceinline__ int mlp_rot(int c, int nch, int rot)
{
    const int p = c + rot % nch;
    return p < nch ? p : p - nch;
}

static __device__ __forceinline__ void mlp_cp16s(unsigned s, const void *g, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(g),
                 "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void mlp_ldsm4(uint32_t (&r)[4], unsigned a)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* One item: acc (this warp's m16 tile x nt n-tiles, its k16 steps only) over nch chunks of K.
 * X and wrow start at the item's first K column. The first wpre chunks' weights are already
 * in flight (issued before the grid barrier, one older commit group). SS: also sum the
 * squares of activation row tid / 4 (a quarter of each chunk per thread) into *ss.
 * Every address a chunk needs is the same from chunk to chunk but for the stage and the K
 * offset: the copies' sources and destinations and the ldmatrix offsets are computed once per
 * item, and each chunk's fragments are all loaded before its MMAs (the kernel has 2 warps per
 * scheduler: a load-use chain per MMA would stall each of them). */
template <int RB, int S, bool SS, typename WRow>
static __device__ __forceinline__ void mlp_item(unsigned char *sm, WRow wrow, const bf16 *X,
                                                int ldx, int M, int nt, int nch, int wpre, int rot,
                                                float (&acc)[8][4], float &ss)
{
    constexpr int TILES = RB / 16, KG = 8 / TILES, SPK = 4 / KG;
    constexpr int WP = (RB * 8 + MLP_THREADS - 1) / MLP_THREADS; /* weight copies per thread */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int tl = warp % TILES, kg = warp / TILES;
    const unsigned sbase = (unsigned)__cvta_generic_to_shared(sm);
    const bf16 *wsrc[WP];
    unsigned wdst[WP];
#pragma unroll
    for (int k = 0; k < WP; k++) {
        const int i = threadIdx.x + k * MLP_THREADS, r = i >> 3, u = i & 7;
        wsrc[k] = wrow(r < RB ? r : 0) + u * 8;
        wdst[k] = i < RB * 8 ? (unsigned)rtv_swz(r, u) * 2 : ~0u;
    }
    const bf16 *xsrc[2];
    unsigned xdst[2];
    bool xok[2];
#pragma unroll
    for (int k = 0; k < 2; k++) { /* nt * 64 <= 512 copies of activation rows */
        const int i = threadIdx.x + k * MLP_THREADS, r = i >> 3, u = i & 7;
        xok[k] = r < M;
        xsrc[k] = X + (size_t)(xok[k] ? r : 0) * ldx + u * 8;
        xdst[k] = i < nt * 64 ? (unsigned)(MLP_STAGE / 2 + rtv_swz(r, u) * 2) : ~0u;
    }
    unsigned aoff[SPK], boff[SPK][4];
#pragma unroll
    for (int s = 0; s < SPK; s++) {
        const int kk = kg * SPK + s;
        aoff[s] = (unsigned)rtv_swz(tl * 16 + (lane & 15), 2 * kk + (lane >> 4)) * 2;
#pragma unroll
        for (int jp = 0; jp < 4; jp++)
            boff[s][jp] = MLP_STAGE / 2 +
                          (unsigned)rtv_swz(16 * jp + (lane & 7) + 8 * (lane >> 4),
                                            2 * kk + ((lane >> 3) & 1)) * 2;
    }
    const unsigned ssoff = SS ? MLP_STAGE / 2 + (unsigned)rtv_swz(threadIdx.x >> 2, 2 * (threadIdx.x & 3)) * 2 : 0;
    const unsigned ssoff2 = SS ? MLP_STAGE / 2 + (unsigned)rtv_swz(threadIdx.x >> 2, 2 * (threadIdx.x & 3) + 1) * 2 : 0;
    auto issue = [&](int st, int c, bool w) {
        const unsigned b = sbase + (unsigned)st * MLP_STAGE;
        const int ko = mlp_rot(c, nch, rot) * 64;
        if (w) {
#pragma unroll
            for (int k = 0; k < WP; k++)
                if (wdst[k] != ~0u) mlp_cp16s(b + wdst[k], wsrc[k] + ko, true);
        }
#pragma unroll
        for (int k = 0; k < 2; k++)
            if (xdst[k] != ~0u) mlp_cp16s(b + xdst[k], xsrc[k] + ko, xok[k]);
    };
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
#pragma unroll
    for (int c = 0; c < S - 1; c++) {
        if (c < nch) issue(c, c, c >= wpre);
        mlp_commit();
    }
    for (int c = 0; c < nch; c++) {
        /* chunk c is in; after the barrier every warp is past chunk c - 1, whose stage takes
         * chunk c + S - 1: one barrier per chunk */
        mlp_wait<S - 2>();
        __syncthreads();
        const int cn = c + S - 1;
        if (cn < nch) issue(cn % S, cn, true);
        mlp_commit();
        const unsigned b = sbase + (unsigned)(c % S) * MLP_STAGE;
        uint32_t af[SPK][4], bfr[SPK][4][4];
#pragma unroll
        for (int s = 0; s < SPK; s++) {
            mlp_ldsm4(af[s], b + aoff[s]);
#pragma unroll
            for (int jp = 0; jp < 4; jp++)
                if (2 * jp < nt) mlp_ldsm4(bfr[s][jp], b + boff[s][jp]);
        }
        if (SS && (int)(threadIdx.x >> 2) < M) {
            const bf16 *xs = (const bf16 *)(sm + (size_t)(c % S) * MLP_STAGE);
            const uint4 v0 = *(const uint4 *)((const unsigned char *)xs + ssoff);
            const uint4 v1 = *(const uint4 *)((const unsigned char *)xs + ssoff2);
            const __nv_bfloat162 *p0 = (const __nv_bfloat162 *)&v0, *p1 = (const __nv_bfloat162 *)&v1;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float2 f = __bfloat1622float2(p0[e]), h = __bfloat1622float2(p1[e]);
                ss += f.x * f.x + f.y * f.y + h.x * h.x + h.y * h.y;
            }
        }
#pragma unroll
        for (int s = 0; s < SPK; s++)
#pragma unroll
            for (int jp = 0; jp < 4; jp++) {
                if (2 * jp < nt)
                    rtv_mma16816(acc[2 * jp], af[s][0], af[s][1], af[s][2], af[s][3],
                                 bfr[s][jp][0], bfr[s][jp][1]);
                if (2 * jp + 1 < nt)
                    rtv_mma16816(acc[2 * jp + 1], af[s][0], af[s][1], af[s][2], af[s][3],
                                 bfr[s][jp][2], bfr[s][jp][3]);
            }
    }
    mlp_wait<0>();
    __syncthreads(); /* every warp is done with the ring's stages */
    /* the k groups' partial tiles meet: groups 1.. leave theirs in the (free) ring, group 0
     * adds them in group order */
    float *red = (float *)sm;
    if (kg > 0) {
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) red[(warp * 32 + j * 4 + e) * 32 + lane] = acc[j][e];
    }
    __syncthreads();
    if (kg == 0) {
#pragma unroll
        for (int g2 = 1; g2 < KG; g2++)
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    acc[j][e] += red[((tl + g2 * TILES) * 32 + j * 4 + e) * 32 + lane];
    }
    __syncthreads(); /* red is read: the ring may be refilled */
}

static __device__ __forceinline__ void mlp_mark(const mlp_args &a, int k)
{
    if (a.trace && threadIdx.x == 0) {
        unsigned long long t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
        a.trace[blockIdx.x * 16 + k] = t;
    }
}

/* All CTAs of the (cooperative) grid meet; writes before it are visible after it. The n-th
 * barrier of a launch waits for n * gridDim.x arrivals (the count is reset at the exit). */
static __device__ __forceinline__ void mlp_grid_barrier(unsigned *bar, unsigned n)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(bar, 1u);
        const unsigned target = n * gridDim.x;
        unsigned v;
        const long long t0 = clock64();
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
            /* a CTA that never arrives (not co-resident) is a launch error, not a hang */
            if (clock64() - t0 > (1ll << 34)) __trap();
        } while (v < target);
        __threadfence();
    }
    __syncthreads();
}

/* Weight rows of a split-K item: MLP_COLS output columns (rows of W [dim, K]) from column
 * block rb, K columns from split ks. */
struct mlp_wrows {
    const bf16 *base;
    int K;
    __device__ const bf16 *operator()(int R) const { return base + (size_t)R * K; }
};
static __device__ __forceinline__ mlp_wrows mlp_splitk_rows(const bf16 *W, int K, int kr, int rb,
                                                            int ks)
{
    return mlp_wrows{ W + (size_t)rb * MLP_COLS * K + (size_t)ks * kr, K };
}

/* x[M, dim] += X[M, K] . W[dim, K]^T over items (column block, K split); the first item's
 * first wpre chunks of weights are in flight. The item's tile [nt * 8 rows][MLP_COLS] goes to
 * shared memory; with K splits every CTA stores it as one contiguous fp32 block of part
 * (16-byte stores by all threads), and the last of a column block's splits to arrive adds the
 * splits in split order (its own from shared memory; all loads in flight at once, 16 bytes
 * each) and x, and resets the arrival counter: deterministic, the same sums as one thread per
 * element would make. */
template <int S>
static __device__ __forceinline__ void mlp_splitk(const mlp_args &a, unsigned char *sm,
                                                  const bf16 *X, int K, const bf16 *W, int ks_n,
                                                  int wpre, int *flag, int mk)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int nrb = a.dim / MLP_COLS, nb = nrb * ks_n, kr = K / ks_n, nch = kr / 64;
    const int rows8 = a.nt * 8, nq = rows8 * (MLP_COLS / 4); /* float4s of a tile */
    float *tile = (float *)sm; /* [rows8][MLP_COLS], in the ring (free after mlp_item) */
    float acc[8][4], dummy = 0.f;
    for (int it = blockIdx.x; it < nb; it += gridDim.x) {
        const int rb = it % nrb, ks = it / nrb;
        mlp_item<MLP_COLS, S, false>(sm, mlp_splitk_rows(W, K, kr, rb, ks), X + (size_t)ks * kr,
                                     K, a.M, a.nt, nch, it == (int)blockIdx.x ? wpre : 0,
                                     a.rot * (int)blockIdx.x, acc, dummy);
        if (it == (int)blockIdx.x) mlp_mark(a, mk);
        /* warps 0, 1 hold columns 16 w + g (e 0, 1) and 16 w + g + 8 (e 2, 3) of rows
         * 8 j + 2 t + (e & 1) */
        if (warp < 2)
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (j < a.nt)
                        tile[(8 * j + 2 * t + (e & 1)) * MLP_COLS + warp * 16 + g + 8 * (e >> 1)] =
                            acc[j][e];
        __syncthreads();
        float4 *blk = NULL; /* this column block's partials: [ks_n][rows8][MLP_COLS] */
        if (ks_n > 1) {
            blk = (float4 *)(a.part + (size_t)rb * ks_n * rows8 * MLP_COLS);
            for (int i = threadIdx.x; i < nq; i += MLP_THREADS)
                __stcg(blk + (size_t)ks * nq + i, ((const float4 *)tile)[i]);
            __threadfence();
            __syncthreads();
            if (threadIdx.x == 0) {
                const unsigned old = atomicAdd(&a.sync[2 + rb], 1u);
                *flag = old == (unsigned)ks_n - 1;
                if (*flag) a.sync[2 + rb] = 0; /* all splits are in: ready for the next use */
            }
            __syncthreads();
            const int last = *flag;
            if (!last) {
                __syncthreads(); /* flag and tile are read: the ring may be refilled */
                continue;
            }
            __threadfence();
        }
        /* up to two float4s of the tile per thread: every load issued before any store */
        for (int i0 = threadIdx.x; i0 < nq; i0 += 2 * MLP_THREADS) {
            float4 v[2];
            uint2 xv[2];
            long xo[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int i = i0 + h * MLP_THREADS, m = i / (MLP_COLS / 4);
                xo[h] = i < nq && m < a.M
                            ? (long)m * a.dim + rb * MLP_COLS + (i % (MLP_COLS / 4)) * 4
                            : -1;
                v[h] = make_float4(0.f, 0.f, 0.f, 0.f);
                xv[h] = make_uint2(0u, 0u);
                if (xo[h] >= 0) xv[h] = __ldcg((const uint2 *)(a.x + xo[h]));
            }
#pragma unroll 4
            for (int z = 0; z < ks_n; z++) {
                float4 p[2];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int i = i0 + h * MLP_THREADS;
                    p[h] = xo[h] < 0 ? make_float4(0.f, 0.f, 0.f, 0.f)
                           : ks_n == 1 || z == ks ? ((const float4 *)tile)[i]
                                                  : __ldcg(blk + (size_t)z * nq + i);
                }
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    v[h].x += p[h].x;
                    v[h].y += p[h].y;
                    v[h].z += p[h].z;
                    v[h].w += p[h].w;
                }
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                if (xo[h] < 0) continue;
                const __nv_bfloat162 *xb = (const __nv_bfloat162 *)&xv[h];
                const float2 x0 = __bfloat1622float2(xb[0]), x1 = __bfloat1622float2(xb[1]);
                __nv_bfloat162 o[2];
                o[0] = __floats2bfloat162_rn(x0.x + v[h].x, x0.y + v[h].y);
                o[1] = __floats2bfloat162_rn(x1.x + v[h].z, x1.y + v[h].w);
                *(uint2 *)(a.x + xo[h]) = *(const uint2 *)o;
            }
        }
        __syncthreads(); /* tile is read: the ring may be refilled */
    }
}

/* Phase A's weight rows: smem row R is tile R / 16; tile rows 0-7 gate features, 8-15 the
 * same features' up rows. */
struct mlp_gurows {
    const bf16 *w;
    int f0, ff, dim;
    __device__ const bf16 *operator()(int R) const
    {
        const int tile = R >> 4, r = R & 15, f = f0 + tile * 8 + (r & 7);
        return w + (size_t)(r < 8 ? f : ff + f) * dim;
    }
};

/* Phase Q's weight rows: MLP_COLS rows = 2 m16 tiles from tile T0; a rotated tile holds 8
 * consecutive pair columns i of one head (rows 0-7) and their partners i + hd/2 (rows 8-15), so
 * both halves of a RoPE pair meet in one thread; past the rotated heads a tile is 16
 * consecutive columns, only scaled. */
static __device__ __forceinline__ int mlp_qcol(int T, int r, int hd, int rheads)
{
    const int per_head = hd / 16, nrot = rheads * per_head;
    if (T < nrot) {
        const int h = T / per_head, i0 = (T % per_head) * 8;
        return h * hd + i0 + (r & 7) + (r < 8 ? 0 : hd / 2);
    }
    return rheads * hd + (T - nrot) * 16 + r;
}
struct mlp_qrows {
    const bf16 *w;
    int T0, hd, rheads, dim;
    __device__ const bf16 *operator()(int R) const
    {
        return w + (size_t)mlp_qcol(T0 + (R >> 4), R & 15, hd, rheads) * dim;
    }
};

/* The first item's weights of the next phase, issued before a grid barrier: they stream in
 * while the slowest CTA finishes the current phase. Returns the chunks issued. */
template <int S, int RB, typename WRow>
static __device__ __forceinline__ int mlp_prefetch(unsigned char *sm, WRow wrow, int nch, int rot)
{
    const int n = nch < S - 1 ? nch : S - 1;
    for (int c = 0; c < n; c++) mlp_issue_w<RB>(sm, c, mlp_rot(c, nch, rot), wrow);
    mlp_commit();
    return n;
}

template <int S>
static __global__ void __launch_bounds__(MLP_THREADS, 1) mlp_k(const __grid_constant__ mlp_args a)
{
    extern __shared__ __align__(1024) unsigned char mlp_sh[];
    unsigned char *sm = mlp_sh;
    float *rs = (float *)(sm + (size_t)S * MLP_STAGE); /* [64] row scales s_m */
    int *flag = (int *)(rs + 64);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int na = a.ff / MLP_FEAT, nrb = a.dim / MLP_COLS;
    unsigned nbar = 0;
    int wpre = 0;

    /* phase O (with att): the attention output projection and residual, x += att . wo^T */
    if (a.att) {
        mlp_mark(a, 0);
        mlp_splitk<S>(a, sm, a.att, a.qd, a.wo, a.kso, 0, flag, 8);
        mlp_mark(a, 1);
        if ((int)blockIdx.x < na)
            wpre = mlp_prefetch<S, 64>(sm, mlp_gurows{ a.wgu, (int)blockIdx.x * MLP_FEAT, a.ff, a.dim },
                                       a.dim / 64, a.rot * (int)blockIdx.x);
        mlp_grid_barrier(&a.sync[0], ++nbar);
    }
    mlp_mark(a, 2);

    /* phase A: gate_up + row scale + GeGLU into h */
    float acc[8][4];
    for (int it = blockIdx.x; it < na; it += gridDim.x) {
        const int f0 = it * MLP_FEAT;
        float ss = 0.f;
        mlp_item<64, S, true>(sm, mlp_gurows{ a.wgu, f0, a.ff, a.dim }, a.x, a.dim, a.M, a.nt,
                              a.dim / 64, it == (int)blockIdx.x ? wpre : 0, a.rot * (int)blockIdx.x,
                              acc, ss);
        ss += __shfl_xor_sync(0xffffffffu, ss, 1);
        ss += __shfl_xor_sync(0xffffffffu, ss, 2);
        if ((threadIdx.x & 3) == 0) rs[threadIdx.x >> 2] = rsqrtf(ss / a.dim + a.eps);
        __syncthreads();
        if (warp < 4) {
            const int f = f0 + warp * 8 + g;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (j >= a.nt) break;
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int m = 8 * j + 2 * t + e;
                    if (m < a.M) {
                        const float sr = rs[m];
                        a.h[(size_t)m * a.ff + f] =
                            __float2bfloat16(rtv_gelu_tanh(sr * acc[j][e]) * (sr * acc[j][2 + e]));
                    }
                }
            }
        }
        __syncthreads(); /* rs is read */
    }

    mlp_mark(a, 3);
    /* phase B: down + residual, split over K */
    const int kr = a.ff / a.ks;
    wpre = 0;
    if ((int)blockIdx.x < nrb * a.ks)
        wpre = mlp_prefetch<S, MLP_COLS>(
            sm, mlp_splitk_rows(a.wd, a.ff, kr, blockIdx.x % nrb, blockIdx.x / nrb), kr / 64,
            a.rot * (int)blockIdx.x);
    mlp_grid_barrier(&a.sync[0], ++nbar);
    mlp_mark(a, 4);
    mlp_splitk<S>(a, sm, a.h, a.ff, a.wd, a.ks, wpre, flag, 9);
    mlp_mark(a, 5);

    /* phase Q (with wq): the next layer's qkv from the new x, its row scale and RoPE */
    if (a.wq) {
        const int nq = a.qcols / MLP_COLS;
        wpre = 0;
        if ((int)blockIdx.x < nq)
            wpre = mlp_prefetch<S, MLP_COLS>(
                sm, mlp_qrows{ a.wq, (int)blockIdx.x * 2, a.hd, a.rheads, a.dim }, a.dim / 64,
                a.rot * (int)blockIdx.x);
        mlp_grid_barrier(&a.sync[0], ++nbar);
        mlp_mark(a, 6);
        for (int it = blockIdx.x; it < nq; it += gridDim.x) {
            float ss = 0.f;
            mlp_item<MLP_COLS, S, true>(sm, mlp_qrows{ a.wq, it * 2, a.hd, a.rheads, a.dim }, a.x,
                                        a.dim, a.M, a.nt, a.dim / 64,
                                        it == (int)blockIdx.x ? wpre : 0,
                                        a.rot * (int)blockIdx.x, acc, ss);
            ss += __shfl_xor_sync(0xffffffffu, ss, 1);
            ss += __shfl_xor_sync(0xffffffffu, ss, 2);
            if ((threadIdx.x & 3) == 0) rs[threadIdx.x >> 2] = rsqrtf(ss / a.dim + a.eps);
            __syncthreads();
            if (warp < 2) {
                const int T = it * 2 + warp, per_head = a.hd / 16;
                const bool rot = T < a.rheads * per_head;
                const int ca = mlp_qcol(T, g, a.hd, a.rheads), cb = mlp_qcol(T, g + 8, a.hd, a.rheads);
                float inv_freq = 0.f;
                if (rot) {
                    const int i = (T % per_head) * 8 + g;
                    inv_freq = exp2f(-(2.0f * i / a.hd) * a.log2_theta);
                }
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (j >= a.nt) break;
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int m = 8 * j + 2 * t + e;
                        if (m >= a.M) continue;
                        const float sr = rs[m], va = sr * acc[j][e], vb = sr * acc[j][2 + e];
                        bf16 *row = a.qy + (size_t)m * a.ldqy;
                        if (rot) {
                            float sn, cs;
                            sincosf((float)(a.pos0 + m) * inv_freq, &sn, &cs);
                            row[ca] = __float2bfloat16(va * cs - vb * sn);
                            row[cb] = __float2bfloat16(vb * cs + va * sn);
                        } else {
                            row[ca] = __float2bfloat16(va);
                            row[cb] = __float2bfloat16(vb);
                        }
                    }
                }
            }
            __syncthreads(); /* rs is read */
        }
    }

    mlp_mark(a, 7);
    /* the last CTA out resets the barrier for the next launch (all have left its spins) */
    if (threadIdx.x == 0) {
        const unsigned old = atomicAdd(&a.sync[1], 1u);
        if (old == gridDim.x - 1) {
            a.sync[0] = 0;
            a.sync[1] = 0;
        }
    }
}

static size_t mlp_smem(int stages) { return (size_t)stages * MLP_STAGE + 64 * 4 + 16; }

int rtv_cuda_mlp_init(rtv_stream *s)
{
    /* opt-in (RTV_FUSED_MLP=1) until it beats the three launches it replaces */
    s->mlp_mode = rtv_cuda_env_switch("RTV_FUSED_MLP", 0);
    /* RTV_MLP_COOP=0: an ordinary launch (one CTA per SM still fits, but nothing guarantees
     * that all are resident at once when other work shares the GPU) */
    s->mlp_coop = rtv_cuda_env_switch("RTV_MLP_COOP", 1);
    s->mlp_oproj = rtv_cuda_env_switch("RTV_MLP_OPROJ", 1);
    s->mlp_qkv = rtv_cuda_env_switch("RTV_MLP_QKV", 1);
    s->mlp_trace = NULL;
    s->mlp_stagger = rtv_cuda_env_switch("RTV_MLP_STAGGER", 1);
    s->mlp_grid = 0;
    if (!s->mlp_mode) return RTV_OK;
    int dev = 0, optin = 0, coop = 0, occ = 0;
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    CU_TRY(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev));
    s->mlp_stages = (size_t)optin >= mlp_smem(8) ? 8 : (size_t)optin >= mlp_smem(5) ? 5 : 0;
    const char *st = getenv("RTV_MLP_STAGES"); /* 5: the smaller ring (for comparing) */
    if (st && st[0] == '5' && s->mlp_stages) s->mlp_stages = 5;
    if (!coop || !s->mlp_stages) return RTV_OK; /* rms_mlp runs the unfused launches */
    const size_t smem = mlp_smem(s->mlp_stages);
    if (s->mlp_stages == 8) {
        CU_TRY(cudaFuncSetAttribute(mlp_k<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        CU_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, mlp_k<8>, MLP_THREADS, smem));
    } else {
        CU_TRY(cudaFuncSetAttribute(mlp_k<5>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        CU_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, mlp_k<5>, MLP_THREADS, smem));
    }
    const int sms = s->sm_count > 0 ? s->sm_count : s->dev_sms;
    s->mlp_grid = occ > 0 ? sms : 0; /* one CTA per SM of this stream's partition */
    CU_TRY(cudaMalloc((void **)&s->mlp_sync, (2 + MLP_MAX_RB) * sizeof(unsigned)));
    CU_TRY(cudaMemset(s->mlp_sync, 0, (2 + MLP_MAX_RB) * sizeof(unsigned)));
    if (rtv_cuda_env_switch("RTV_MLP_TRACE", 0)) {
        CU_TRY(cudaMalloc((void **)&s->mlp_trace, (size_t)sms * 16 * sizeof(unsigned long long)));
        CU_TRY(cudaMemset(s->mlp_trace, 0, (size_t)sms * 16 * sizeof(unsigned long long)));
    }
    return RTV_OK;
}

/* K splits for a split-K phase: items (column blocks x splits) ~ CTAs, each split a whole
 * number of 64-wide chunks. */
static int mlp_splits(int dim, int K, int G)
{
    const int nrb = dim / MLP_COLS;
    int ks = 1;
    while (ks < 16 && (long)nrb * ks * 2 <= G && K % (ks * 2 * 64) == 0) ks *= 2;
    return ks;
}

int rtv_cuda_rms_mlp(rtv_stream *s, void *x, const void *att, const void *w_o, int qd,
                     const void *w_gu, const void *w_down, void *gu, void *ff, int dim,
                     float eps, int rows, int F, const rtv_qkv_next *nq)
{
    if (rows <= 0 || dim <= 0 || F <= 0 || (att && (!w_o || qd <= 0)))
        return rtv_fail(RTV_E_ARG, "rms_mlp: rows=%d dim=%d ff=%d qd=%d", rows, dim, F, qd);
    int st;
    const int G = s->mlp_grid;
    const bool fused = G >= 8 && rows <= 64 && dim % 64 == 0 && dim / MLP_COLS <= MLP_MAX_RB &&
                       F % MLP_FEAT == 0 && F % 64 == 0 &&
                       !(((uintptr_t)x | (uintptr_t)w_gu | (uintptr_t)w_down | (uintptr_t)ff) & 15);
    /* the output projection joins the kernel where it can (RTV_MLP_OPROJ=0: its own GEMM) */
    const bool fuse_o = fused && att && s->mlp_oproj && qd % 64 == 0 &&
                        !(((uintptr_t)att | (uintptr_t)w_o) & 15);
    if (att && !fuse_o &&
        (st = rtv_cuda_matmul(s, x, dim, att, qd, w_o, NULL, rows, dim, qd, RTV_MM_ACCUM)))
        return st;
    /* the next layer's qkv joins it where it can (RTV_MLP_QKV=0: matmul + rms_rope after) */
    const bool fuse_q = fused && nq && s->mlp_qkv && nq->cols % MLP_COLS == 0 &&
                        nq->head_dim % 16 == 0 && nq->rope_heads * nq->head_dim <= nq->cols &&
                        (nq->cols - nq->rope_heads * nq->head_dim) % 16 == 0 &&
                        !((uintptr_t)nq->w & 15) && !((uintptr_t)nq->y & 1) && nq->ld >= nq->cols;
    if (!fused) {
        if ((st = rtv_cuda_matmul(s, gu, 2 * F, x, dim, w_gu, NULL, rows, 2 * F, dim, 0)) ||
            (st = rtv_cuda_rms_geglu(s, ff, gu, x, dim, eps, rows, F)) ||
            (st = rtv_cuda_matmul(s, x, dim, ff, F, w_down, NULL, rows, dim, F, RTV_MM_ACCUM)))
            return st;
    }
    if (nq && !fuse_q &&
        ((st = rtv_cuda_matmul(s, nq->y, nq->ld, x, dim, nq->w, NULL, rows, nq->cols, dim, 0)) ||
         (st = rtv_cuda_rms_rope(s, nq->y, nq->ld, nq->cols, x, dim, eps, rows, nq->rope_heads,
                                 nq->head_dim, nq->pos0, nq->theta))))
        return st;
    if (!fused) return RTV_OK;
    mlp_args a;
    a.x = (bf16 *)x;
    a.wgu = (const bf16 *)w_gu;
    a.wd = (const bf16 *)w_down;
    a.att = fuse_o ? (const bf16 *)att : NULL;
    a.wo = fuse_o ? (const bf16 *)w_o : NULL;
    a.h = (bf16 *)ff;
    a.wq = fuse_q ? (const bf16 *)nq->w : NULL;
    a.qy = fuse_q ? (bf16 *)nq->y : NULL;
    a.ldqy = fuse_q ? nq->ld : 0;
    a.qcols = fuse_q ? nq->cols : 0;
    a.rheads = fuse_q ? nq->rope_heads : 0;
    a.hd = fuse_q ? nq->head_dim : 16;
    a.pos0 = fuse_q ? nq->pos0 : 0;
    a.log2_theta = fuse_q ? log2f(nq->theta) : 0.f;
    a.part = NULL;
    a.sync = s->mlp_sync;
    a.M = rows;
    a.nt = (rows + 7) / 8;
    a.dim = dim;
    a.ff = F;
    a.qd = fuse_o ? qd : 0;
    a.ks = mlp_splits(dim, F, G);
    a.kso = fuse_o ? mlp_splits(dim, qd, G) : 1;
    a.eps = eps;
    a.trace = s->capturing ? NULL : s->mlp_trace;
    a.rot = s->mlp_stagger;
    const int kmax = a.ks > a.kso ? a.ks : a.kso;
    if (kmax > 1) {
        rtv_cuda_scratch_begin(s);
        a.part = (float *)rtv_cuda_scratch(s, (size_t)kmax * a.nt * 8 * dim * sizeof(float));
        if (!a.part) return RTV_E_NOMEM;
    }
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    cfg.gridDim = dim3(G);
    cfg.blockDim = dim3(MLP_THREADS);
    cfg.dynamicSmemBytes = mlp_smem(s->mlp_stages);
    cfg.stream = s->s;
    cfg.attrs = attr;
    cfg.numAttrs = s->mlp_coop ? 1 : 0;
    if (s->mlp_stages == 8) CU_TRY(cudaLaunchKernelEx(&cfg, mlp_k<8>, a));
    else CU_TRY(cudaLaunchKernelEx(&cfg, mlp_k<5>, a));
    if (a.trace) { /* eager calls with RTV_MLP_TRACE=1: where the launch's time went */
        unsigned long long h[132 * 16];
        const int n = G < 132 ? G : 132;
        CU_TRY(cudaStreamSynchronize(s->s));
        CU_TRY(cudaMemcpy(h, a.trace, (size_t)n * 16 * sizeof(h[0]), cudaMemcpyDeviceToHost));
        unsigned long long t0 = ~0ull;
        for (int b = 0; b < n; b++) t0 = h[b * 16 + (a.att ? 0 : 2)] < t0 ? h[b * 16 + (a.att ? 0 : 2)] : t0;
        fprintf(stderr, "mlp_trace rows=%d dim=%d ff=%d o=%d q=%d ks=%d/%d (us from the first start, mean/max over CTAs):",
                rows, dim, F, a.att != NULL, a.wq != NULL, a.ks, a.kso);
        const char *nm[10] = { "start", "O", "bar1", "A", "bar2", "B", "bar3", "Q", "Oloop", "Bloop" };
        for (int k = 0; k < 10; k++) {
            double sum = 0, mx = 0;
            int c = 0;
            for (int b = 0; b < n; b++) {
                const unsigned long long v = h[b * 16 + k];
                if (v < t0) continue; /* not reached by this CTA in this launch */
                double d = (v - t0) * 1e-3;
                sum += d;
                mx = d > mx ? d : mx;
                c++;
            }
            if (c) fprintf(stderr, " %s %.1f/%.1f", nm[k], sum / c, mx);
        }
        fprintf(stderr, "\n");
    }
    return RTV_OK;
}
