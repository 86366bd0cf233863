/* tests/kernels/test_gm_plan.c — the layout planner of the CUDA many-row GEMM
 * (kernels/cuda/gm_plan.h, used by gemm_mc.cu): every plan it returns must be one the kernel
 * can run as launched, because a wrong one fails at launch or, worse, hangs a ring or reads
 * a peer's shared memory that is not there. Checked over pi0's shapes and 20k seeded random
 * shapes, on an H100-like occupancy table and on a partition of the GPU, and for fixed
 * configurations that must be refused or accepted; and the epilogue's shared-memory layout
 * for every tile width and split count. Plain C: runs without a GPU. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "kernels/cuda/gm_plan.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static int rnd(int lo, int hi) /* lo..hi */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return lo + (int)(rng % (uint64_t)(hi - lo + 1));
}

/* what the kernel assumes of a plan for M x N x K (gemm_mc.cu); returns the failed rule or
 * NULL */
static const char *bad_plan(const rtv_gm_plan *p, int M, int N, int K,
                            const int fit[RTV_GM_NBN][RTV_GM_MAXCL + 1], int sms)
{
    const int KT = (K + RTV_GM_BK - 1) / RTV_GM_BK, ncl = p->cm * p->cn * p->sk;
    if (p->bni < 0 || p->bni >= RTV_GM_NBN || rtv_gm_widths[p->bni] != p->bn) return "width";
    if (p->cm < 1 || p->cn < 1 || p->sk < 1 || ncl > RTV_GM_MAXCL) return "cluster size";
    if (p->bn % (8 * p->cm)) return "weight slice not whole 8-row atoms";
    if (RTV_GM_BM % (8 * p->cn)) return "x slice not whole 8-row atoms";
    if (p->mt % p->cm || p->nt % p->cn) return "grid not a multiple of the cluster";
    if ((long)p->mt * RTV_GM_BM < M || (long)p->nt * p->bn < N) return "tiles do not cover y";
    if ((p->mt / p->cm - 1) * p->cm * RTV_GM_BM >= M) return "a whole row group past M";
    if ((long)(p->nt / p->cn - 1) * p->cn * p->bn >= N) return "a whole column group past N";
    if ((long)p->sk * p->kper < KT) return "splits do not cover K";
    if ((long)(p->sk - 1) * p->kper >= KT) return "a split without K steps";
    if (p->nt > 65535) return "grid y";
    const long ctas = (long)p->mt * p->nt * p->sk;
    if (ctas > (long)fit[p->bni][ncl] * ncl) return "more CTAs than fit at once";
    if (sms > 0 && ctas > sms) return "more CTAs than the partition's SMs";
    return NULL;
}

/* The epilogue's shared-memory layout for tile width bn and sk splits (gemm_mc.cu): each
 * split owns a contiguous, disjoint share of the column groups and together they own all;
 * the first pass (the wgmma accumulator layout: consumer c, warp w, lane (g, q4) holds rows
 * 64 c + 16 w + g and + 8, columns 8 j + 2 q4 and + 1) writes each owned tile cell exactly
 * once, inside the tile, past the partials, inside the shared memory, without two lanes of a
 * half warp on one bank; the second pass (item i: row i / nown, group i % nown) reads each
 * exactly once. Returns the failed rule or NULL. */
static const char *bad_layout(int bn, int sk)
{
    static unsigned char wrote[RTV_GM_BM * 1024], read[RTV_GM_BM * 1024];
    const int nj = bn / 8;
    if (RTV_GM_SMEM(bn) > 227 * 1024) return "shared memory over 227 KB";
    int next = 0;
    for (int z = 0; z < sk; z++) {
        int jlo, nown;
        rtv_gm_own(nj, sk, z, &jlo, &nown);
        if (jlo != next || nown < 0) return "ownership not contiguous and disjoint";
        next = jlo + nown;
        if (sk > 1 && nown > (nj + 1) / 2) return "a split owns more than the tile holds";
        const int os = RTV_GM_OSTRIDE(nown);
        if (os < 8 * nown || (os % 32 != 8 && os % 32 != 24)) return "output tile stride";
        const long base = sk > 1 ? RTV_GM_PART(bn) / 4 : 0; /* in floats */
        if ((base + (long)RTV_GM_BM * os) * 4 > RTV_GM_USE(bn)) return "tile past the buffer";
        if ((long)RTV_GM_BM * os > (long)sizeof(wrote)) return "test buffer";
        memset(wrote, 0, sizeof(wrote));
        memset(read, 0, sizeof(read));
        for (int c = 0; c < 2; c++)
            for (int w = 0; w < 4; w++)
                for (int j = jlo; j < jlo + nown; j++)
                    for (int h = 0; h < 2; h++) {
                        int bank_used[32] = { 0 };
                        for (int lane = 0; lane < 32; lane++) {
                            if (lane == 16) memset(bank_used, 0, sizeof(bank_used));
                            const int g = lane >> 2, q4 = lane & 3;
                            const int row = 64 * c + 16 * w + g + 8 * h;
                            const long f = (long)row * os + 8 * (j - jlo) + 2 * q4;
                            for (int e = 0; e < 2; e++) {
                                if (wrote[f + e]++) return "a tile cell written twice";
                                if (bank_used[(base + f + e) % 32]++)
                                    return "two lanes of a half warp on one bank";
                            }
                        }
                    }
        for (int i = 0; i < RTV_GM_BM * nown; i++) {
            const int lrow = i / nown, gj = i % nown;
            for (int e = 0; e < 8; e++) {
                const long f = (long)lrow * os + 8 * gj + e;
                if (!wrote[f]) return "the second pass reads a cell never written";
                if (read[f]++) return "a tile cell read twice";
            }
        }
        for (int r = 0; r < RTV_GM_BM; r++)
            for (int col = 0; col < 8 * nown; col++)
                if (!read[(long)r * os + col]) return "an owned cell never stored";
    }
    if (next != nj) return "ownership does not cover the tile";
    return NULL;
}

int main(int argc, char **argv)
{
    /* the epilogue's layout for every width and split count the kernel takes */
    for (int i = 0; i < RTV_GM_NBN; i++)
        for (int sk = 1; sk <= RTV_GM_MAXCL; sk++) {
            const char *why = bad_layout(rtv_gm_widths[i], sk);
            CHECK_MSG(!why, "tile width %d, %d splits: %s", rtv_gm_widths[i], sk, why ? why : "");
        }

    (void)argc;
    /* H100-like: 132 SMs in GPCs of 16-18, one CTA per SM; clusters of n fit per GPC */
    int h100[RTV_GM_NBN][RTV_GM_MAXCL + 1];
    static const int per_size[RTV_GM_MAXCL + 1] = { 0, 132, 66, 42, 32, 24, 20, 16, 16 };
    for (int i = 0; i < RTV_GM_NBN; i++)
        for (int n = 0; n <= RTV_GM_MAXCL; n++) h100[i][n] = per_size[n];
    const int(*fit)[RTV_GM_MAXCL + 1] = (const int(*)[RTV_GM_MAXCL + 1])h100;
    rtv_gm_plan p;

    /* pi0's many-row GEMMs (2 views: 512 rows) take a plan on the whole GPU */
    static const int pi0[][3] = { { 512, 3456, 1152 }, { 512, 1152, 1152 }, { 512, 4304, 1152 },
                                  { 512, 1152, 4304 }, { 512, 2560, 2048 }, { 512, 2048, 2048 },
                                  { 512, 2048, 16384 } };
    for (size_t i = 0; i < sizeof(pi0) / sizeof(pi0[0]); i++) {
        const int M = pi0[i][0], N = pi0[i][1], K = pi0[i][2];
        CHECK_MSG(rtv_gm_pick(M, N, K, fit, 0, &p), "no plan for %d x %d x %d", M, N, K);
        const char *why = bad_plan(&p, M, N, K, fit, 0);
        CHECK_MSG(!why, "%d x %d x %d: %s", M, N, K, why ? why : "");
        printf("plan %5d x %5d x %5d: 128 x %d tiles, cluster %d x %d x %d, %d CTAs\n", M, N, K,
               p.bn, p.cm, p.cn, p.sk, p.mt * p.nt * p.sk);
    }

    /* too many tiles for one wave: no plan (the kernel is not persistent; cuBLASLt runs it) */
    CHECK(!rtv_gm_pick(512, 32768, 2048, fit, 0, &p));

    /* random shapes, whole GPU and a 66-SM partition: whatever is returned is runnable, and
     * a shape that the plainest layout (128 wide, no cluster, no split) fits always gets one */
    long planned = 0, bad = 0, missed = 0;
    for (int it = 0; it < 20000; it++) {
        const int M = rnd(65, 1200), N = 8 * rnd(1, 1200), K = 8 * rnd(1, 2500);
        const int sms = it % 2 ? 66 : 0;
        rtv_gm_plan plain;
        const int fits = rtv_gm_try(M, N, K, 1, 1, 1, 1, fit, sms, &plain) >= 0;
        if (!rtv_gm_pick(M, N, K, fit, sms, &p)) {
            if (fits && missed++ < 5) fprintf(stderr, "no plan for %d x %d x %d\n", M, N, K);
            continue;
        }
        planned++;
        const char *why = bad_plan(&p, M, N, K, fit, sms);
        if (why && bad++ < 5) fprintf(stderr, "%d x %d x %d on %d SMs: %s\n", M, N, K, sms, why);
    }
    CHECK_MSG(bad == 0, "%ld of %ld plans not runnable", bad, planned);
    CHECK_MSG(missed == 0, "%ld shapes without a plan that the plain layout fits", missed);
    CHECK_MSG(planned > 1000, "only %ld random shapes got a plan", planned);

    /* fixed configurations the kernel cannot run are refused */
    CHECK(rtv_gm_try(512, 1152, 1152, 0, 8, 1, 1, fit, 0, &p) < 0); /* 96 / 8: 12-row slices */
    CHECK(rtv_gm_try(512, 1152, 1152, 1, 1, 32, 1, fit, 0, &p) < 0); /* cluster of 32 */
    CHECK(rtv_gm_try(512, 1152, 128, 1, 1, 1, 3, fit, 0, &p) < 0);   /* 3 splits of 2 steps */
    CHECK(rtv_gm_try(512, 1152, 320, 1, 1, 1, 4, fit, 0, &p) < 0);   /* 5 steps: 2, 2, 1, 0 */
    CHECK(rtv_gm_try(512, 520, 448, 1, 1, 1, 4, fit, 0, &p) >= 0);   /* 7 steps: 2, 2, 2, 1 */
    CHECK(rtv_gm_try(4096, 32768, 2048, 1, 1, 1, 1, fit, 0, &p) < 0); /* 8192 CTAs: not resident */
    CHECK(rtv_gm_try(512, 1152, 1152, 1, 1, 1, 2, fit, 8, &p) < 0);   /* > the partition's SMs */
    CHECK(rtv_gm_try(0, 1152, 1152, 1, 1, 1, 1, fit, 0, &p) < 0);
    CHECK(rtv_gm_try(512, 1152, 1152, 5, 1, 1, 1, fit, 0, &p) < 0);   /* no such width */
    /* and ones it can are accepted, with the grid rounded to the cluster */
    CHECK(rtv_gm_try(300, 520, 456, 0, 4, 2, 1, fit, 0, &p) >= 0 && p.mt == 4 && p.nt == 6);
    CHECK(rtv_gm_try(300, 520, 456, 2, 1, 1, 8, fit, 0, &p) >= 0 && p.kper == 1);
    return check_report(argv[0]);
}
