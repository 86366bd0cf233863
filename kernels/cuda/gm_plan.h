/* kernels/cuda/gm_plan.h — how gemm_mc.cu lays out one GEMM: tile width, multicast groups and
 * K splits, chosen by a cost model fitted to its H100 measurements. Plain C (no CUDA
 * types), so that the CPU tests check every plan against the kernel's preconditions
 * (tests/kernels/test_gm_plan.c). */
#ifndef RTV_CUDA_GM_PLAN_H
#define RTV_CUDA_GM_PLAN_H

#define RTV_GM_BM 128   /* rows per CTA */
#define RTV_GM_BK 64    /* K per ring stage */
#define RTV_GM_MAXCL 8  /* CTAs per cluster (portable) */
#define RTV_GM_NBN 5    /* tile widths */

static const int rtv_gm_widths[RTV_GM_NBN] = { 96, 128, 160, 192, 256 };

#ifdef __CUDACC__
#define RTV_GM_HD __host__ __device__
#else
#define RTV_GM_HD
#endif

/* Shared memory of a CTA of tile width bn (bytes). The ring: stages of a 64-wide K step of
 * the x tile (128 rows) and the w tile (bn rows), as many as fit 192 KB (at most 8). After the
 * main loop the ring holds the split partials (sk > 1: 128 x bn fp32, read by the peers over
 * DSMEM) and after them the epilogue's fp32 output tile of the columns this CTA owns (all of
 * them, or at most half with splits), rows RTV_GM_OSTRIDE floats apart: 8 (mod 32) or 24, so
 * that a half warp's float2 stores of four rows fall in four different bank octets. USE is
 * the larger of the ring and those two; the barriers and the bias follow. */
#define RTV_GM_RING (192 * 1024)
#define RTV_GM_STAGE(bn) (RTV_GM_BM * 128 + (bn) * 128)
#define RTV_GM_NST(bn) (RTV_GM_RING / RTV_GM_STAGE(bn) > 8 ? 8 : RTV_GM_RING / RTV_GM_STAGE(bn))
#define RTV_GM_OSTRIDE(nown) ((8 * (nown) + 8) % 16 ? 8 * (nown) + 8 : 8 * (nown) + 16)
#define RTV_GM_PART(bn) (RTV_GM_BM * (bn) * 4)
#define RTV_GM_T1(bn) (RTV_GM_BM * RTV_GM_OSTRIDE((bn) / 8) * 4)
#define RTV_GM_T2(bn) (RTV_GM_PART(bn) + RTV_GM_BM * RTV_GM_OSTRIDE(((bn) / 8 + 1) / 2) * 4)
#define RTV_GM_MAX(a, b) ((a) > (b) ? (a) : (b))
#define RTV_GM_USE(bn)                                                                      \
    RTV_GM_MAX(RTV_GM_NST(bn) * RTV_GM_STAGE(bn), RTV_GM_MAX(RTV_GM_T1(bn), RTV_GM_T2(bn)))
#define RTV_GM_SMEM(bn) (1024 + RTV_GM_USE(bn) + 2 * RTV_GM_NST(bn) * 8 + (bn) * 4)

/* The column groups (of 8) of a tile's nj that split z of sk owns in the epilogue: a
 * contiguous [*jlo, *jlo + *nown), so that the stores of a row are contiguous */
static inline RTV_GM_HD void rtv_gm_own(int nj, int sk, int z, int *jlo, int *nown)
{
    *jlo = (z * nj + sk - 1) / sk;
    *nown = ((z + 1) * nj + sk - 1) / sk - *jlo;
}

typedef struct {
    int bni, bn;  /* tile width (index into rtv_gm_widths, value) */
    int cm, cn;   /* weight tile multicast over cm row tiles, x tile over cn column tiles */
    int sk;       /* K splits */
    int mt, nt;   /* grid: row tiles (a multiple of cm), column tiles (a multiple of cn) */
    int kper;     /* K steps per split (the last split may have fewer, never none) */
} rtv_gm_plan;

/* Checks one configuration for an M x N x K GEMM: fills p and returns its estimated time in
 * us, or -1 where the kernel cannot run it or its CTAs would not all be resident at once.
 * fit[i][n]: how many clusters of n CTAs of width i fit on the GPU at once (the occupancy
 * query); sms: the SMs of the caller's partition (0: the whole GPU). */
static inline double rtv_gm_try(int M, int N, int K, int bni, int cm, int cn, int sk,
                                const int fit[RTV_GM_NBN][RTV_GM_MAXCL + 1], int sms,
                                rtv_gm_plan *p)
{
    if (M < 1 || N < 1 || K < 1 || bni < 0 || bni >= RTV_GM_NBN) return -1;
    const int bn = rtv_gm_widths[bni], KT = (K + RTV_GM_BK - 1) / RTV_GM_BK;
    if (cm < 1 || cn < 1 || sk < 1 || cm * cn * sk > RTV_GM_MAXCL) return -1;
    const int ncl = cm * cn * sk;
    /* multicast slices must be whole 8-row swizzle atoms (1024-byte aligned in shared memory) */
    if (bn % (8 * cm) || RTV_GM_BM % (8 * cn) || sk > KT) return -1;
    const int kper = (KT + sk - 1) / sk;
    if ((sk - 1) * kper >= KT) return -1; /* a split without K steps */
    const long mt = ((long)(M + RTV_GM_BM - 1) / RTV_GM_BM + cm - 1) / cm * cm;
    const long nt = ((long)(N + bn - 1) / bn + cn - 1) / cn * cn;
    if (nt > 65535 || mt > 2147483647L) return -1;
    const long ctas = mt * nt * sk, room = (long)fit[bni][ncl] * ncl;
    if (ctas > room || (sms > 0 && ctas > sms)) return -1;
    /* The model, fitted (least squares on log time, rms 5.6%; scripts/gm_fit.py) to 76
     * configurations on pi0's 512-row shapes (H100, bench_matmul, 2026-12-08 00:47 UTC,
     * c8efaa8; kernels/README):
     * - a 64-wide K step takes 0.298 + 0.00102 bn us (the MMAs: shared-memory bound at narrow
     *   tiles), or longer where all CTAs together pull more from L2 per step than ~8.4 TB/s;
     *   2.4% more with multicast, whose L2 traffic is 1/cm of the weight tile and 1/cn of x;
     * - fixed: 2.1 us, 1.1 more with a multicast cluster, 1.3 more for a K split;
     * - the fit's fixed cost also grew 0.048 us per tile column: the epilogue's stores of 16
     *   bytes into 8 rows per warp store, replaced since (2995e24) by whole-row stores from a
     *   staged tile. Taken here as 0.005 us per column: an estimate until measured. */
    const int mc = cm * cn > 1;
    const double l2 = (double)ctas * (RTV_GM_BM * 128.0 / cn + bn * 128.0 / cm) / 8.4e6;
    const double mma = 0.298 + 0.00102 * bn;
    double t = 2.1 + 0.005 * bn + (mc ? 1.1 : 0.0) + (sk > 1 ? 1.3 : 0.0) +
               kper * (mma > l2 ? mma : l2) * (mc ? 1.024 : 1.0);
    p->bni = bni; p->bn = bn; p->cm = cm; p->cn = cn; p->sk = sk;
    p->mt = (int)mt; p->nt = (int)nt; p->kper = kper;
    return t;
}

/* The cheapest configuration by the model (cm, cn in 1, 2, 4; sk in 1..4); 0: none fits. */
static inline int rtv_gm_pick(int M, int N, int K, const int fit[RTV_GM_NBN][RTV_GM_MAXCL + 1],
                              int sms, rtv_gm_plan *p)
{
    double best = -1;
    for (int i = 0; i < RTV_GM_NBN; i++)
        for (int cm = 1; cm <= 4; cm *= 2)
            for (int cn = 1; cn <= 4; cn *= 2)
                for (int sk = 1; sk <= 4; sk++) {
                    rtv_gm_plan q;
                    const double t = rtv_gm_try(M, N, K, i, cm, cn, sk, fit, sms, &q);
                    if (t >= 0 && (best < 0 || t < best)) {
                        best = t;
                        *p = q;
                    }
                }
    return best >= 0;
}

#endif
