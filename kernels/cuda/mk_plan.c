/* kernels/cuda/mk_plan.c — builds the expert step's task plan (mk_plan.h): the cut of each op
 * into tasks, the counters, and the tasks of each persistent CTA.
 *
 * The cut aims at one weight budget per task (task_bytes, 64 KiB by default: a CTA can hold
 * the next task's weights while it computes the current one). Among the tile widths and
 * split counts that fit it, O and DOWN take the one that moves the fewest bytes through L2:
 * every task reads its rows of the activation (n rows x its K range), and every split writes
 * and the reduction reads an fp32 partial; a tile's reduction is done by one CTA on the
 * critical path, so its bytes are capped (128 KiB).
 * CTAs: tasks in program order, each to the CTA with the least estimated work so far: weight
 * bytes from HBM count 1, bytes re-read from L2 (activations, K/V) 1/4. */
#include "kernels/cuda/mk_plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MK_RED_CAP (128 * 1024)

static int fail(char *err, size_t len, const char *fmt, ...)
{
    if (err && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void rtv_mk_ctr_layout(const rtv_mk_dims *d, const rtv_mk_shape *sh, rtv_mk_ctrs *c)
{
    uint32_t at = 0;
    c->qh = at; at += (uint32_t)(d->nh + 2 * d->nkv);
    c->ag = at; at += (uint32_t)sh->o_splits;
    c->aa = at; at += (uint32_t)d->nh;
    c->od = at; at += 1;
    c->oa = at; at += (uint32_t)(d->W / sh->o_cols);
    c->gg = at; at += (uint32_t)sh->d_splits;
    c->dd = at; at += 1;
    c->da = at; at += (uint32_t)(d->W / sh->d_cols);
    c->per_layer = at;
}

/* x columns per tile and K splits for an output of width W over K (O: splits divide nh, so
 * that each covers whole head groups; DOWN: splits divide K): the fewest L2 bytes within the
 * weight budget (or the smallest weight tile where none fits) */
static void pick_split(int W, int K, int n, int T, int nh, int *cols, int *splits)
{
    double best = -1;
    int best_w = 0;
    for (int s = 1; s <= RTV_MK_MAXSPLIT; s++) {
        if ((nh ? nh % s : K % s) || K % s)
            continue;
        for (int c = 8; c <= 128 && c <= W; c += 8) {
            if (W % c)
                continue;
            const long wb = (long)c * (K / s) * 2;
            const double act = (double)(W / c) * n * K * 2;
            const double red = s > 1 ? 2.0 * s * n * W * 4 : 0.0;
            const long tile_red = s > 1 ? (long)s * n * c * 4 : 0;
            int fits = wb <= T && tile_red <= MK_RED_CAP;
            double score = fits ? act + red : 1e30 + (double)wb;
            if (best < 0 || score < best || (score == best && wb > best_w)) {
                best = score;
                best_w = (int)wb;
                *cols = c;
                *splits = s;
            }
        }
    }
    if (best < 0) { /* W not a multiple of 8: one tile of all columns */
        *cols = W;
        *splits = 1;
    }
}

static int largest_divisor_within(int m, long unit, long T)
{
    int best = 1;
    for (int p = 1; p <= m; p++)
        if (m % p == 0 && (long)p * unit <= T)
            best = p;
    return best;
}

static int choose_shape(const rtv_mk_dims *d, rtv_mk_shape *sh, char *err, size_t len)
{
    const long T = sh->task_bytes > 0 ? sh->task_bytes : 64 * 1024;
    const int keys = d->kv_row + d->n, half = d->hd / 2, Q = d->nh * d->hd;
    sh->task_bytes = (int)T;
    if (sh->a_keys < 0)
        return fail(err, len, "mk plan: shape.a_keys=%d, expected >= 0", sh->a_keys);
    if (sh->a_keys > 0) {
        const int s = (keys + sh->a_keys - 1) / sh->a_keys;
        if (sh->a_splits && sh->a_splits != s)
            return fail(err, len, "mk plan: shape.a_splits=%d disagrees with a_keys=%d over %d "
                        "keys (%d splits)", sh->a_splits, sh->a_keys, keys, s);
        sh->a_splits = s;
    }
    if (!sh->q_pairs)
        sh->q_pairs = largest_divisor_within(half, 2L * d->W * 2, T);
    if (!sh->a_splits) {
        int s = (keys + 127) / 128;
        sh->a_splits = s < 1 ? 1 : s > 8 ? 8 : s;
    }
    if (!sh->o_cols || !sh->o_splits) {
        int c = 0, s = 0;
        pick_split(d->W, Q, d->n, (int)T, d->nh, &c, &s);
        if (!sh->o_cols) sh->o_cols = c;
        if (!sh->o_splits) sh->o_splits = s;
    }
    if (!sh->d_cols || !sh->d_splits) {
        int c = 0, s = 0;
        pick_split(d->W, d->F, d->n, (int)T, 0, &c, &s);
        if (!sh->d_cols) sh->d_cols = c;
        if (!sh->d_splits) sh->d_splits = s;
    }
    if (!sh->g_cols && sh->d_splits > 0 && d->F % sh->d_splits == 0)
        sh->g_cols = largest_divisor_within(d->F / sh->d_splits, 2L * d->W * 2, T);
    /* the cut's rules, whoever chose it */
    if (sh->q_pairs < 1 || half % sh->q_pairs)
        return fail(err, len, "mk plan: shape.q_pairs=%d must divide head_dim/2=%d",
                    sh->q_pairs, half);
    if (sh->a_splits < 1 || sh->a_splits > RTV_MK_MAXSPLIT || sh->a_splits > keys)
        return fail(err, len, "mk plan: shape.a_splits=%d, expected 1..%d and <= keys=%d",
                    sh->a_splits, RTV_MK_MAXSPLIT, keys);
    if (sh->o_cols < 1 || d->W % sh->o_cols || sh->o_splits < 1 ||
        sh->o_splits > RTV_MK_MAXSPLIT || d->nh % sh->o_splits)
        return fail(err, len, "mk plan: shape.o_cols=%d / o_splits=%d must divide width=%d / "
                    "heads=%d (splits <= %d)", sh->o_cols, sh->o_splits, d->W, d->nh,
                    RTV_MK_MAXSPLIT);
    if (sh->d_cols < 1 || d->W % sh->d_cols || sh->d_splits < 1 ||
        sh->d_splits > RTV_MK_MAXSPLIT || d->F % sh->d_splits)
        return fail(err, len, "mk plan: shape.d_cols=%d / d_splits=%d must divide width=%d / "
                    "mlp=%d (splits <= %d)", sh->d_cols, sh->d_splits, d->W, d->F,
                    RTV_MK_MAXSPLIT);
    if (sh->g_cols < 1 || (d->F / sh->d_splits) % sh->g_cols)
        return fail(err, len, "mk plan: shape.g_cols=%d must divide mlp/d_splits=%d",
                    sh->g_cols, d->F / sh->d_splits);
    return 0;
}

static int check_dims(const rtv_mk_dims *d, char *err, size_t len)
{
    if (d->n < 1 || d->n > 64)
        return fail(err, len, "mk plan: rows n=%d, expected 1..64", d->n);
    if (d->W < 1 || d->F < 1 || d->nh < 1 || d->nkv < 1 || d->layers < 1)
        return fail(err, len, "mk plan: width=%d mlp=%d heads=%d kv_heads=%d layers=%d, "
                    "expected positive", d->W, d->F, d->nh, d->nkv, d->layers);
    if (d->nh % d->nkv || d->hd < 2 || d->hd % 2)
        return fail(err, len, "mk plan: heads=%d kv_heads=%d head_dim=%d (kv_heads must "
                    "divide heads, head_dim even)", d->nh, d->nkv, d->hd);
    if (d->kv_row < 0 || d->limit_rows < 0 || d->limit_keys < 0)
        return fail(err, len, "mk plan: kv_row=%d limit_rows=%d limit_keys=%d, expected >= 0",
                    d->kv_row, d->limit_rows, d->limit_keys);
    if (d->ctas < 1)
        return fail(err, len, "mk plan: ctas=%d, expected >= 1", d->ctas);
    if (d->last_ops < 0 || d->last_ops > RTV_MK_NOPS)
        return fail(err, len, "mk plan: last_ops=%d, expected 0..%d", d->last_ops, RTV_MK_NOPS);
    return 0;
}

rtv_mk_shape rtv_mk_shape_cuda(int keys, int akeys)
{
    const int chunks = (keys + RTV_MK_KEY_CHUNK - 1) / RTV_MK_KEY_CHUNK;
    int per = (chunks + RTV_MK_MAXSPLIT - 1) / RTV_MK_MAXSPLIT;
    if (per < akeys)
        per = akeys;
    rtv_mk_shape sh = {32, 0, 64, 0, 32, 64, 0, 0, per * RTV_MK_KEY_CHUNK};
    return sh;
}

typedef struct builder {
    rtv_mk_plan *p;
    int cap;
} builder;

static rtv_mk_task *add(builder *b, int op, int layer, int tile, int split, int nsplit)
{
    if (b->p->ntask == b->cap)
        return NULL; /* sized exactly in rtv_mk_plan_build */
    rtv_mk_task *t = &b->p->task[b->p->ntask++];
    memset(t, 0, sizeof(*t));
    t->op = (uint8_t)op;
    t->layer = (uint16_t)layer;
    t->tile = (uint16_t)tile;
    t->split = (uint16_t)split;
    t->nsplit = (uint16_t)nsplit;
    t->arrive = RTV_MK_NONE;
    t->signal = RTV_MK_NONE;
    for (int i = 0; i < RTV_MK_MAXWAIT; i++)
        t->wait[i].ctr = RTV_MK_NONE;
    return t;
}

static void wait_on(rtv_mk_task *t, const rtv_mk_plan *p, uint32_t ctr)
{
    t->wait[t->nwait].ctr = ctr;
    t->wait[t->nwait].target = p->need[ctr];
    t->nwait++;
}

/* estimated work of a task for balancing (see the head comment) */
static double task_cost(const rtv_mk_dims *d, const rtv_mk_task *t)
{
    double l2 = 0;
    switch (t->op) {
    case RTV_MK_QKV:
    case RTV_MK_GU: l2 = (double)d->n * d->W * 2; break;
    case RTV_MK_ATT: l2 = (double)t->nk * d->hd * 4 + (double)d->n * d->hd * 2; break;
    default: l2 = (double)d->n * t->nk * 2; break;
    }
    return t->wbytes + l2 / 4;
}

int rtv_mk_plan_build(rtv_mk_plan *p, const rtv_mk_dims *d, const rtv_mk_shape *shape,
                      char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    if (check_dims(d, err, errlen))
        return -1;
    rtv_mk_shape sh = {0};
    if (shape)
        sh = *shape;
    if (choose_shape(d, &sh, err, errlen))
        return -1;
    p->d = *d;
    p->sh = sh;
    rtv_mk_ctrs c;
    rtv_mk_ctr_layout(d, &sh, &c);
    const int half = d->hd / 2, ncolh = d->nh + 2 * d->nkv, gph = half / sh.q_pairs;
    const int keys = d->kv_row + d->n, hg = d->nh / sh.o_splits, grp = d->nh / d->nkv;
    const int otiles = d->W / sh.o_cols, dtiles = d->W / sh.d_cols, dk = d->F / sh.d_splits;
    const int gtiles = d->F / sh.g_cols;
    const long per_layer_tasks = (long)ncolh * gph + (long)d->nh * sh.a_splits +
                                 (long)otiles * sh.o_splits + gtiles + (long)dtiles * sh.d_splits;
    const long ntask = per_layer_tasks * d->layers, nctr = (long)c.per_layer * d->layers;
    if (ntask > (1L << 24) || otiles > 65535 || gtiles > 65535 || dtiles > 65535)
        return fail(err, errlen, "mk plan: %ld tasks, too many (dimensions too large for the "
                    "cut)", ntask);
    p->task = calloc((size_t)ntask, sizeof(*p->task));
    p->need = calloc((size_t)nctr, sizeof(*p->need));
    p->cta_first = calloc((size_t)d->ctas + 1, sizeof(int));
    p->cta_task = calloc((size_t)ntask, sizeof(int));
    p->cta_cost = calloc((size_t)d->ctas, sizeof(double));
    int *owner = calloc((size_t)ntask, sizeof(int));
    if (!p->task || !p->need || !p->cta_first || !p->cta_task || !p->cta_cost || !owner) {
        free(owner);
        rtv_mk_plan_free(p);
        return fail(err, errlen, "mk plan: out of memory for %ld tasks", ntask);
    }
    p->nctr = (int)nctr;
    for (int l = 0; l < d->layers; l++) {
        uint32_t *nd = p->need + (size_t)l * c.per_layer;
        for (int h = 0; h < ncolh; h++) nd[c.qh + h] = (uint32_t)gph;
        for (int g = 0; g < sh.o_splits; g++) nd[c.ag + g] = (uint32_t)hg;
        for (int h = 0; h < d->nh; h++) nd[c.aa + h] = (uint32_t)sh.a_splits;
        nd[c.od] = (uint32_t)otiles;
        for (int t = 0; t < otiles; t++) nd[c.oa + t] = (uint32_t)sh.o_splits;
        for (int s = 0; s < sh.d_splits; s++) nd[c.gg + s] = (uint32_t)(dk / sh.g_cols);
        nd[c.dd] = (uint32_t)dtiles;
        for (int t = 0; t < dtiles; t++) nd[c.da + t] = (uint32_t)sh.d_splits;
    }
    builder b = {p, (int)ntask};
    for (int l = 0; l < d->layers; l++) {
        const uint32_t base = (uint32_t)l * c.per_layer, prev = base - c.per_layer;
        const int nops = l == d->layers - 1 && d->last_ops ? d->last_ops : RTV_MK_NOPS;
        rtv_mk_task *t;
        for (int h = 0; h < ncolh; h++)
            for (int g = 0; g < gph; g++) {
                t = add(&b, RTV_MK_QKV, l, h, 0, 1);
                t->col0 = (uint32_t)(g * sh.q_pairs);
                t->ncol = (uint32_t)sh.q_pairs;
                t->k0 = 0;
                t->nk = (uint32_t)d->W;
                if (l > 0)
                    wait_on(t, p, prev + c.dd);
                t->signal = base + c.qh + (uint32_t)h;
                t->wbytes = (uint32_t)(2L * sh.q_pairs * d->W * 2);
            }
        for (int h = 0; h < d->nh && nops > RTV_MK_ATT; h++)
            for (int s = 0; s < sh.a_splits; s++) {
                t = add(&b, RTV_MK_ATT, l, h, s, sh.a_splits);
                const int k0 = sh.a_keys ? s * sh.a_keys : (int)((long)s * keys / sh.a_splits);
                const int k1 = sh.a_keys ? (k0 + sh.a_keys < keys ? k0 + sh.a_keys : keys)
                                         : (int)((long)(s + 1) * keys / sh.a_splits);
                t->k0 = (uint32_t)k0;
                t->nk = (uint32_t)(k1 - k0);
                t->ncol = (uint32_t)d->hd;
                wait_on(t, p, base + c.qh + (uint32_t)h);
                if (k1 > d->kv_row) { /* this step's keys: its K and V heads too */
                    wait_on(t, p, base + c.qh + (uint32_t)(d->nh + h / grp));
                    wait_on(t, p, base + c.qh + (uint32_t)(d->nh + d->nkv + h / grp));
                }
                if (sh.a_splits > 1)
                    t->arrive = base + c.aa + (uint32_t)h;
                t->signal = base + c.ag + (uint32_t)(h / hg);
            }
        for (int o = 0; o < otiles && nops > RTV_MK_O; o++)
            for (int s = 0; s < sh.o_splits; s++) {
                t = add(&b, RTV_MK_O, l, o, s, sh.o_splits);
                t->col0 = (uint32_t)(o * sh.o_cols);
                t->ncol = (uint32_t)sh.o_cols;
                t->k0 = (uint32_t)(s * hg * d->hd);
                t->nk = (uint32_t)(hg * d->hd);
                wait_on(t, p, base + c.ag + (uint32_t)s);
                if (sh.o_splits > 1)
                    t->arrive = base + c.oa + (uint32_t)o;
                t->signal = base + c.od;
                t->wbytes = (uint32_t)((long)sh.o_cols * t->nk * 2);
            }
        for (int g = 0; g < gtiles && nops > RTV_MK_GU; g++) {
            t = add(&b, RTV_MK_GU, l, g, 0, 1);
            t->col0 = (uint32_t)(g * sh.g_cols);
            t->ncol = (uint32_t)sh.g_cols;
            t->k0 = 0;
            t->nk = (uint32_t)d->W;
            wait_on(t, p, base + c.od);
            t->signal = base + c.gg + t->col0 / (uint32_t)dk;
            t->wbytes = (uint32_t)(2L * sh.g_cols * d->W * 2);
        }
        for (int o = 0; o < dtiles && nops > RTV_MK_DOWN; o++)
            for (int s = 0; s < sh.d_splits; s++) {
                t = add(&b, RTV_MK_DOWN, l, o, s, sh.d_splits);
                t->col0 = (uint32_t)(o * sh.d_cols);
                t->ncol = (uint32_t)sh.d_cols;
                t->k0 = (uint32_t)(s * dk);
                t->nk = (uint32_t)dk;
                wait_on(t, p, base + c.gg + (uint32_t)s);
                if (sh.d_splits > 1)
                    t->arrive = base + c.da + (uint32_t)o;
                t->signal = base + c.dd;
                t->wbytes = (uint32_t)((long)sh.d_cols * dk * 2);
            }
    }
    /* CTAs: least estimated work so far, in program order (so each list is in order) */
    for (int i = 0; i < p->ntask; i++) {
        int best = 0;
        for (int k = 1; k < d->ctas; k++)
            if (p->cta_cost[k] < p->cta_cost[best])
                best = k;
        owner[i] = best;
        p->cta_cost[best] += task_cost(d, &p->task[i]);
        p->cta_first[best + 1]++;
    }
    for (int k = 0; k < d->ctas; k++)
        p->cta_first[k + 1] += p->cta_first[k];
    int *fill = calloc((size_t)d->ctas, sizeof(int));
    if (!fill) {
        free(owner);
        rtv_mk_plan_free(p);
        return fail(err, errlen, "mk plan: out of memory");
    }
    for (int i = 0; i < p->ntask; i++)
        p->cta_task[p->cta_first[owner[i]] + fill[owner[i]]++] = i;
    free(fill);
    free(owner);
    return 0;
}

void rtv_mk_plan_free(rtv_mk_plan *p)
{
    free(p->task);
    free(p->need);
    free(p->cta_first);
    free(p->cta_task);
    free(p->cta_cost);
    memset(p, 0, sizeof(*p));
}
