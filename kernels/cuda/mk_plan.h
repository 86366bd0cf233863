/* kernels/cuda/mk_plan.h — the work plan of the action expert's Euler step as one persistent
 * kernel (the "megakernel"): every expert layer's five ops cut into tasks, each task's
 * dependencies as counters in global memory, and each persistent CTA's list of tasks.
 *
 * Why: the action cycle reads the expert's ~0.6 GB of weights ten times; at 3.35 TB/s that is
 * ~1.9 ms, and the cycle takes ~7.8 ms as ~1,900 launches, each with a fixed cost and none
 * streaming weights while its predecessor runs (kernels/README, "The CUDA backend"). Here a
 * CTA never waits for a whole op: a task waits only for the tasks whose output it reads, and
 * it can load its weights (which depend on nothing) before that wait.
 *
 * The step, per layer l, on n suffix rows (folded norms: the RMSNorm's (1 + w) is in the qkv
 * and gate/up weights, backend.h rms_rope / rms_geglu):
 *   QKV  lq[l][kv_row + r] = rope(rs(x_r) * (x_r . Wqkv^T))   rs = rsqrt(mean(x^2) + eps)
 *   ATT  att = attention(q of lq[l], K/V rows [0, kv_row + n) of lq[l], limit rule)
 *   O    x += att . Wo^T
 *   GU   ff = gelu_tanh(rs(x) * x . Wg^T) * (rs(x) * x . Wu^T)
 *   DOWN x += ff . Wd^T
 * Tasks (program order: layer, op, tile, split):
 *   QKV  (head h of nh + 2 nkv column heads, pair group g): RoPE pairs j in [col0, col0 + ncol)
 *        of head h, i.e. columns h hd + j and h hd + hd/2 + j (v heads: the same columns, not
 *        rotated). Full K. Raises ctr QH(l, h).
 *   ATT  (head h, key split s): keys [k0, k0 + nk) (even splits, or a_keys each). One split:
 *        writes att's head h. Several:
 *        writes a record per row (max, sum, unnormalized O) to slot (h, s) and arrives on
 *        AA(l, h); the last to arrive combines the records in split order into att (the
 *        "reduction"), then raises AG(l, group of h). Waits QH(l, h), and where the split
 *        holds this step's keys (>= kv_row) also QH of h's K and V heads.
 *   O    (column tile, split s over whole head groups): K = heads [s hg, (s + 1) hg). Waits
 *        AG(l, s). Split partials (fp32) to slot s; the last to arrive at OA(l, tile) sums the
 *        slots in split order, adds x's tile and stores it into x; raises OD(l).
 *   GU   (tile: GeGLU columns [col0, col0 + ncol), weight rows gate col0.. and up F + col0..).
 *        Waits OD(l) (all of x: the row scale). Raises GG(l, the DOWN split reading them).
 *   DOWN (column tile, split s: K = ff columns [k0, k0 + nk)). Waits GG(l, s); slots and
 *        reduction as O, into x; raises DD(l).
 *   The next layer's QKV waits DD(l - 1). Layer 0's QKV waits for nothing (its x comes from
 *   the launch before).
 * Counters: a wait is "ctr >= target" where target is the number of raises the counter gets in
 * one launch (every wait is a full wait), so a plan's counters are zeroed before each launch.
 * A split task whose arrival completes its tile does the reduction itself, then raises the
 * task's signal: the reduction is a virtual task that depends on all splits of the tile.
 *
 * Deadlock: each CTA runs its list in program order, and every dependency points to an earlier
 * op, so the unfinished task earliest in program order is always at the head of its CTA's list
 * with its inputs done. That holds only with every CTA resident at once (grid <= SMs of the
 * stream's share, one CTA per SM).
 *
 * Plain C (no CUDA types): built into the CUDA backend, and into tests/kernels/test_mk_plan.c,
 * which runs plans on the CPU under random schedules against the op-by-op layer and checks
 * every pair of tasks that touch the same memory for an ordering counter. */
#ifndef RTV_CUDA_MK_PLAN_H
#define RTV_CUDA_MK_PLAN_H

#include <stddef.h>
#include <stdint.h>

enum { RTV_MK_QKV, RTV_MK_ATT, RTV_MK_O, RTV_MK_GU, RTV_MK_DOWN, RTV_MK_NOPS };

#define RTV_MK_NONE 0xffffffffu /* no counter */
#define RTV_MK_MAXWAIT 3
#define RTV_MK_MAXSPLIT 16

/* The step: model dimensions, this step's rows and keys, and the persistent grid. */
typedef struct rtv_mk_dims {
    int n;              /* suffix rows of this step (1 .. 64) */
    int W, F;           /* expert width, MLP width */
    int nh, nkv, hd;    /* heads, K/V heads (nh % nkv == 0), head_dim (even) */
    int layers;
    int kv_row;         /* keys before this step's rows: prefix + earlier suffix rows */
    int limit_rows, limit_keys; /* attention's limit rule (backend.h) */
    int ctas;           /* persistent CTAs (the SMs of the stream's share) */
    int last_ops;       /* ops of the last layer planned, 1 (QKV) .. 5 (DOWN); 0: all. For
                         * checking a kernel part by part: fewer stop the step after that op */
} rtv_mk_dims;

/* How the ops are cut. Zero fields are chosen by rtv_mk_plan_build. */
typedef struct rtv_mk_shape {
    int q_pairs;        /* RoPE pairs per QKV task (2 q_pairs columns); divides hd / 2 */
    int a_splits;       /* key splits per head (1 .. 16) */
    int o_cols, o_splits; /* O: columns per tile (divides W), splits (divides nh) */
    int g_cols;         /* GeGLU columns per GU task (divides F / d_splits) */
    int d_cols, d_splits; /* DOWN: columns per tile (divides W), splits (divide F) */
    int task_bytes;     /* the weight bytes per task the choice aims at (0: 64 KiB) */
    int a_keys;         /* > 0: keys per split (the last takes the rest), so that splits start
                         * at multiples of it; 0: the keys spread evenly over a_splits */
} rtv_mk_shape;

typedef struct rtv_mk_wait {
    uint32_t ctr, target;
} rtv_mk_wait;

typedef struct rtv_mk_task {
    uint8_t op;         /* RTV_MK_* */
    uint8_t nwait;
    uint16_t layer;
    uint16_t tile;      /* QKV: column head; ATT: head; O, GU, DOWN: column tile */
    uint16_t split;     /* ATT: key split; O, DOWN: K split; else 0 */
    uint16_t nsplit;    /* splits of this tile (1: no reduction) */
    uint16_t pad_;
    uint32_t col0, ncol; /* QKV: pairs of head `tile`; O, DOWN: x columns; GU: ff columns */
    uint32_t k0, nk;    /* ATT: keys; O, DOWN: K range; QKV, GU: 0, W */
    rtv_mk_wait wait[RTV_MK_MAXWAIT];
    uint32_t arrive;    /* the tile's arrival counter (nsplit > 1), else RTV_MK_NONE */
    uint32_t signal;    /* raised once the task's output (its tile's, if split) is complete */
    uint32_t wbytes;    /* weight bytes the task reads (balancing, prefetch sizing) */
} rtv_mk_task;

typedef struct rtv_mk_plan {
    rtv_mk_dims d;
    rtv_mk_shape sh;
    int ntask;
    rtv_mk_task *task;  /* program order */
    int nctr;           /* counters per launch (zeroed before it) */
    uint32_t *need;     /* per counter: the raises that complete it (the waits' target) */
    int *cta_first;     /* ctas + 1 offsets into cta_task */
    int *cta_task;      /* each CTA's task indices, in program order */
    double *cta_cost;   /* each CTA's estimated work (bytes moved, see mk_plan.c) */
} rtv_mk_plan;

/* Counter indices of layer l (per_layer = rtv_mk_ctrs_per_layer). */
typedef struct rtv_mk_ctrs {
    uint32_t qh, ag, aa, od, oa, gg, dd, da; /* first index of each family */
    uint32_t per_layer;
} rtv_mk_ctrs;

void rtv_mk_ctr_layout(const rtv_mk_dims *d, const rtv_mk_shape *sh, rtv_mk_ctrs *c);

#define RTV_MK_KEY_CHUNK 80 /* keys per attention chunk in mk.cu (its S wgmma's N) */

/* The cut kernels/cuda/mk.cu runs: 64-feature tiles (32 RoPE pairs, 32 GeGLU columns, 64
 * columns of O and DOWN; their K splits left to the planner) and attention splits of whole
 * key chunks, akeys of them, more where the keys would need over RTV_MK_MAXSPLIT splits. */
rtv_mk_shape rtv_mk_shape_cuda(int keys, int akeys);

/* Builds the plan for d, with the cut sh (NULL or zero fields: chosen). Returns 0, or -1
 * with a message naming the dimension or shape field that cannot be planned in err. */
int rtv_mk_plan_build(rtv_mk_plan *p, const rtv_mk_dims *d, const rtv_mk_shape *sh, char *err,
                      size_t errlen);
void rtv_mk_plan_free(rtv_mk_plan *p);

#endif
