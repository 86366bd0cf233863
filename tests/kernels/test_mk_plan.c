/* tests/kernels/test_mk_plan.c — the expert step's task plan (kernels/cuda/mk_plan.h), which the
 * persistent CUDA kernel runs as given: a missing dependency there is a race that shows up as
 * a wrong action once in a while, a misordered list as a hung GPU. So every plan is checked
 * here, without a GPU:
 * - counters: every wait's target is the number of raises its counter gets in a launch;
 * - coverage: each output element of each op is written exactly once per layer;
 * - hazards: every two tasks (or tile reductions) that touch the same memory, one of them
 *   writing, are ordered by the counters alone (not by sharing a CTA), in program order;
 * - deadlock: random schedules of the CTAs' lists always finish;
 * - numbers (small dimensions): the plan run task by task on the CPU, under random schedules,
 *   matches the op-by-op layer of encoder/gemma.c on the CPU backend (matmul, rms_rope,
 *   attention, rms_geglu) and is bit-identical across schedules (reductions in split order).
 * Each checker is also shown a broken plan (a wait dropped, a task moved, a column shifted)
 * and must reject it. pi0's plans (n 51 / 50 rows, 512-key prefix, 132 / 66 / 32 CTAs) are
 * checked for all but the numbers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/mk_plan.h"
#include "kt.h"

/* ---- items: a task, or a tile's reduction, with the memory it touches ---- */

enum { B_X, B_ATT, B_FF, B_PART, B_AREC, B_LQ }; /* B_LQ + l: layer l's qkv/K/V rows */

typedef struct region {
    int buf, r0, r1, c0, c1, write;
} region;

typedef struct item {
    int task;      /* the task, or the last split of the reduced tile */
    int reduce;    /* 1: the tile's reduction */
    long key;      /* program order: (layer, op, phase) */
    int nreg;
    region reg[5];
} item;

static void reg(item *it, int buf, int r0, int r1, int c0, int c1, int write)
{
    region g = {buf, r0, r1, c0, c1, write};
    it->reg[it->nreg++] = g;
}

/* what task t (or its tile's reduction) reads and writes */
static void task_regions(const rtv_mk_plan *p, const rtv_mk_task *t, int reduce, item *it)
{
    const rtv_mk_dims *d = &p->d;
    const int n = d->n, hd = d->hd, half = hd / 2, kvr = d->kv_row;
    const int grp = d->nh / d->nkv, S = t->nsplit;
    const int c0 = (int)t->col0, nc = (int)t->ncol, k0 = (int)t->k0, nk = (int)t->nk;
    it->nreg = 0;
    it->reduce = reduce;
    it->key = ((long)t->layer * RTV_MK_NOPS + t->op) * 2 + reduce;
    switch (t->op) {
    case RTV_MK_QKV:
        reg(it, B_X, 0, n, 0, d->W, 0);
        reg(it, B_LQ + t->layer, kvr, kvr + n, t->tile * hd + c0, t->tile * hd + c0 + nc, 1);
        reg(it, B_LQ + t->layer, kvr, kvr + n, t->tile * hd + half + c0,
            t->tile * hd + half + c0 + nc, 1);
        break;
    case RTV_MK_ATT: {
        const int h = t->tile, kh = d->nh + h / grp, vh = d->nh + d->nkv + h / grp;
        if (reduce) {
            reg(it, B_AREC, h * S * n, (h + 1) * S * n, 0, hd + 2, 0);
            reg(it, B_ATT, 0, n, h * hd, (h + 1) * hd, 1);
            break;
        }
        reg(it, B_LQ + t->layer, kvr, kvr + n, h * hd, (h + 1) * hd, 0);
        reg(it, B_LQ + t->layer, k0, k0 + nk, kh * hd, (kh + 1) * hd, 0);
        reg(it, B_LQ + t->layer, k0, k0 + nk, vh * hd, (vh + 1) * hd, 0);
        if (S > 1)
            reg(it, B_AREC, (h * S + t->split) * n, (h * S + t->split + 1) * n, 0, hd + 2, 1);
        else
            reg(it, B_ATT, 0, n, h * hd, (h + 1) * hd, 1);
        break;
    }
    case RTV_MK_O:
    case RTV_MK_DOWN:
        if (reduce) {
            reg(it, B_PART, 0, S * n, c0, c0 + nc, 0);
            reg(it, B_X, 0, n, c0, c0 + nc, 0);
            reg(it, B_X, 0, n, c0, c0 + nc, 1);
            break;
        }
        reg(it, t->op == RTV_MK_O ? B_ATT : B_FF, 0, n, k0, k0 + nk, 0);
        if (S > 1) {
            reg(it, B_PART, t->split * n, (t->split + 1) * n, c0, c0 + nc, 1);
        } else {
            reg(it, B_X, 0, n, c0, c0 + nc, 0);
            reg(it, B_X, 0, n, c0, c0 + nc, 1);
        }
        break;
    case RTV_MK_GU:
        reg(it, B_X, 0, n, 0, d->W, 0);
        reg(it, B_FF, 0, n, c0, c0 + nc, 1);
        break;
    }
}

typedef struct items {
    int n;
    item *it;
    int *dep_first, *dep; /* each item's direct dependencies (item indices) */
    uint64_t *hb;         /* hb[i]: bitset of the items that happen before item i */
    int words;
} items;

static void items_free(items *s)
{
    free(s->it);
    free(s->dep_first);
    free(s->dep);
    free(s->hb);
    memset(s, 0, sizeof(*s));
}

/* Items in program order (a tile's reduction right after its last split) and their
 * dependencies: a task depends on every raiser of each counter it waits on, a reduction on
 * every split that arrives at its counter. Then the happens-before closure. */
static void items_build(const rtv_mk_plan *p, items *s)
{
    memset(s, 0, sizeof(*s));
    s->it = calloc((size_t)p->ntask * 2, sizeof(item));
    int *raisers_n = calloc((size_t)p->nctr, sizeof(int));
    int *arrivers_n = calloc((size_t)p->nctr, sizeof(int));
    for (int i = 0; i < p->ntask; i++) {
        const rtv_mk_task *t = &p->task[i];
        item *it = &s->it[s->n++];
        it->task = i;
        task_regions(p, t, 0, it);
        if (t->nsplit > 1) {
            arrivers_n[t->arrive]++;
            if (t->split == t->nsplit - 1) {
                it = &s->it[s->n++];
                it->task = i;
                task_regions(p, t, 1, it);
                raisers_n[t->signal]++;
            }
        } else {
            raisers_n[t->signal]++;
        }
    }
    /* raiser / arriver lists per counter */
    int *rf = calloc((size_t)p->nctr + 1, sizeof(int)), *af = calloc((size_t)p->nctr + 1,
                                                                      sizeof(int));
    for (int c = 0; c < p->nctr; c++) {
        rf[c + 1] = rf[c] + raisers_n[c];
        af[c + 1] = af[c] + arrivers_n[c];
    }
    int *rl = malloc(sizeof(int) * ((size_t)rf[p->nctr] + 1));
    int *al = malloc(sizeof(int) * ((size_t)af[p->nctr] + 1));
    memset(raisers_n, 0, sizeof(int) * (size_t)p->nctr);
    memset(arrivers_n, 0, sizeof(int) * (size_t)p->nctr);
    for (int i = 0; i < s->n; i++) {
        const rtv_mk_task *t = &p->task[s->it[i].task];
        if (s->it[i].reduce || t->nsplit == 1)
            rl[rf[t->signal] + raisers_n[t->signal]++] = i;
        if (!s->it[i].reduce && t->nsplit > 1)
            al[af[t->arrive] + arrivers_n[t->arrive]++] = i;
    }
    s->dep_first = calloc((size_t)s->n + 1, sizeof(int));
    for (int pass = 0; pass < 2; pass++) {
        int nd = 0;
        for (int i = 0; i < s->n; i++) {
            const rtv_mk_task *t = &p->task[s->it[i].task];
            if (pass == 0)
                s->dep_first[i] = nd;
            if (s->it[i].reduce) {
                for (int j = af[t->arrive]; j < af[t->arrive + 1]; j++, nd++)
                    if (pass) s->dep[nd] = al[j];
            } else {
                for (int w = 0; w < t->nwait; w++)
                    for (int j = rf[t->wait[w].ctr]; j < rf[t->wait[w].ctr + 1]; j++, nd++)
                        if (pass) s->dep[nd] = rl[j];
            }
        }
        if (pass == 0) {
            s->dep_first[s->n] = nd;
            s->dep = malloc(sizeof(int) * ((size_t)nd + 1));
        }
    }
    s->words = (s->n + 63) / 64;
    s->hb = calloc((size_t)s->n * s->words, sizeof(uint64_t));
    for (int i = 0; i < s->n; i++) {
        uint64_t *hi = s->hb + (size_t)i * s->words;
        for (int k = s->dep_first[i]; k < s->dep_first[i + 1]; k++) {
            const int j = s->dep[k];
            if (j >= i) /* a dependency on a later item: the closure below would be wrong */
                continue;
            const uint64_t *hj = s->hb + (size_t)j * s->words;
            for (int w = 0; w <= j / 64; w++)
                hi[w] |= hj[w];
            hi[j / 64] |= 1ull << (j % 64);
        }
    }
    free(raisers_n);
    free(arrivers_n);
    free(rf);
    free(af);
    free(rl);
    free(al);
}

static int hb(const items *s, int a, int b) /* a happens before b */
{
    return (int)((s->hb[(size_t)b * s->words + a / 64] >> (a % 64)) & 1);
}

static int overlap(const region *a, const region *b)
{
    return a->buf == b->buf && a->r0 < b->r1 && b->r0 < a->r1 && a->c0 < b->c1 && b->c0 < a->c1;
}

/* Every pair of items that touch the same memory, one writing: ordered by the counters in
 * program order, never concurrent within one op. Returns the unordered pairs (prints the
 * first). */
static int quiet; /* the broken plans of check_checkers: their first hazard is expected */

static long hazards(const rtv_mk_plan *p, const items *s)
{
    long bad = 0;
    const int nbuf = B_LQ + p->d.layers;
    int *cnt = calloc((size_t)nbuf + 1, sizeof(int));
    for (int i = 0; i < s->n; i++)
        for (int r = 0; r < s->it[i].nreg; r++)
            cnt[s->it[i].reg[r].buf + 1]++;
    for (int b = 0; b < nbuf; b++)
        cnt[b + 1] += cnt[b];
    int *fill = calloc((size_t)nbuf, sizeof(int));
    int *ref = malloc(sizeof(int) * 2 * ((size_t)cnt[nbuf] + 1));
    for (int i = 0; i < s->n; i++)
        for (int r = 0; r < s->it[i].nreg; r++) {
            const int b = s->it[i].reg[r].buf, at = cnt[b] + fill[b]++;
            ref[2 * at] = i;
            ref[2 * at + 1] = r;
        }
    for (int b = 0; b < nbuf; b++)
        for (int x = cnt[b]; x < cnt[b + 1]; x++)
            for (int y = x + 1; y < cnt[b + 1]; y++) {
                const int i = ref[2 * x], j = ref[2 * y];
                const region *ri = &s->it[i].reg[ref[2 * x + 1]];
                const region *rj = &s->it[j].reg[ref[2 * y + 1]];
                if (i == j || !(ri->write || rj->write) || !overlap(ri, rj))
                    continue;
                const int ok = s->it[i].key != s->it[j].key &&
                               (s->it[i].key < s->it[j].key ? hb(s, i, j) : hb(s, j, i));
                if (!ok && bad++ == 0 && !quiet)
                    fprintf(stderr, "  hazard: items %d (task %d op %d layer %d) and %d (task %d "
                            "op %d layer %d) on buffer %d unordered\n", i, s->it[i].task,
                            p->task[s->it[i].task].op, p->task[s->it[i].task].layer, j,
                            s->it[j].task, p->task[s->it[j].task].op,
                            p->task[s->it[j].task].layer, b);
            }
    free(cnt);
    free(fill);
    free(ref);
    return bad;
}

/* Counters: each wait's target is its counter's need, and every counter waited on or arrived
 * at gets exactly need raises per launch. Returns the violations. */
static int counters_bad(const rtv_mk_plan *p)
{
    int bad = 0;
    uint32_t *raised = calloc((size_t)p->nctr, sizeof(uint32_t));
    unsigned char *used = calloc((size_t)p->nctr, 1);
    for (int i = 0; i < p->ntask; i++) {
        const rtv_mk_task *t = &p->task[i];
        if (t->signal >= (uint32_t)p->nctr) { bad++; continue; }
        for (int w = 0; w < t->nwait; w++) {
            if (t->wait[w].ctr >= (uint32_t)p->nctr || t->wait[w].target != p->need[t->wait[w].ctr])
                bad++;
            else
                used[t->wait[w].ctr] = 1;
        }
        if (t->nsplit > 1) {
            if (t->arrive >= (uint32_t)p->nctr) { bad++; continue; }
            used[t->arrive] = 1;
            raised[t->arrive]++;
            if (t->split == t->nsplit - 1)
                raised[t->signal]++;
        } else {
            raised[t->signal]++;
        }
    }
    for (int c = 0; c < p->nctr; c++)
        if (used[c] && raised[c] != p->need[c]) {
            if (bad++ == 0)
                fprintf(stderr, "  counter %d: %u raises, waits expect %u\n", c, raised[c],
                        p->need[c]);
        }
    free(raised);
    free(used);
    return bad;
}

/* Each op's output written exactly once per layer (by tasks, or by reductions for split
 * tiles), and not at all for ops past last_ops. Returns the elements written otherwise. */
static long coverage_bad(const rtv_mk_plan *p, const items *s)
{
    const rtv_mk_dims *d = &p->d;
    const int n = d->n, QKV = (d->nh + 2 * d->nkv) * d->hd, Q = d->nh * d->hd;
    long bad = 0;
    /* per layer and op: the final output's element counts */
    for (int l = 0; l < d->layers; l++)
        for (int op = 0; op < RTV_MK_NOPS; op++) {
            const int buf = op == RTV_MK_QKV ? B_LQ + l : op == RTV_MK_ATT ? B_ATT
                            : op == RTV_MK_GU ? B_FF : B_X;
            const int cols = op == RTV_MK_QKV ? QKV : op == RTV_MK_ATT ? Q
                             : op == RTV_MK_GU ? d->F : d->W;
            const int r0 = op == RTV_MK_QKV ? d->kv_row : 0;
            int *c = calloc((size_t)n * cols, sizeof(int));
            for (int i = 0; i < s->n; i++) {
                const rtv_mk_task *t = &p->task[s->it[i].task];
                if (t->layer != l || t->op != op)
                    continue;
                for (int r = 0; r < s->it[i].nreg; r++) {
                    const region *g = &s->it[i].reg[r];
                    if (!g->write || g->buf != buf)
                        continue;
                    for (int y = g->r0; y < g->r1; y++)
                        for (int x = g->c0; x < g->c1; x++) {
                            if (y - r0 < 0 || y - r0 >= n || x < 0 || x >= cols)
                                bad++;
                            else
                                c[(size_t)(y - r0) * cols + x]++;
                        }
                }
            }
            const int planned = l < d->layers - 1 || !d->last_ops || op < d->last_ops;
            for (long e = 0; e < (long)n * cols; e++)
                bad += c[e] != planned;
            free(c);
        }
    return bad;
}

/* ---- running a plan: schedules, and the tasks' arithmetic on the CPU ---- */

typedef struct mk_model { /* small dimensions, fp32, folded norms as in weights.c */
    float **wqkv, **wo, **wgu, **wd; /* per layer: (QKV, W), (W, Q), (2F, W), (W, F) */
    float **lq;                      /* per layer: (kv_row + n, QKV), prefix rows filled */
    float *x0;                       /* the step's input rows (n, W) */
    float eps, theta;
} mk_model;

typedef struct mk_state {
    float *x, *att, *ff, *part, *arec, **lq;
} mk_state;

static double rs_row(const float *x, int W, float eps)
{
    double ss = 0;
    for (int i = 0; i < W; i++) ss += (double)x[i] * x[i];
    return (float)(1.0 / sqrt(ss / W + (double)eps));
}

static double dot(const float *a, const float *b, int k)
{
    double s = 0;
    for (int i = 0; i < k; i++) s += (double)a[i] * b[i];
    return s;
}

static float gelu_tanh(float v)
{
    return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
}

/* task t's arithmetic, as the CUDA kernel must do it (fp32 here) */
static void run_task(const rtv_mk_plan *p, const mk_model *m, mk_state *st, const rtv_mk_task *t)
{
    const rtv_mk_dims *d = &p->d;
    const int n = d->n, W = d->W, F = d->F, hd = d->hd, half = hd / 2;
    const int QKV = (d->nh + 2 * d->nkv) * hd, Q = d->nh * hd, S = t->nsplit;
    const int l = t->layer;
    switch (t->op) {
    case RTV_MK_QKV: {
        const int h = t->tile;
        for (int r = 0; r < n; r++) {
            const float *xr = st->x + (size_t)r * W;
            const float rr = (float)rs_row(xr, W, m->eps);
            float *y = st->lq[l] + (size_t)(d->kv_row + r) * QKV + (size_t)h * hd;
            const float pos = (float)(d->kv_row + r);
            for (int j = (int)t->col0; j < (int)(t->col0 + t->ncol); j++) {
                float a = (float)dot(xr, m->wqkv[l] + (size_t)(h * hd + j) * W, W) * rr;
                float b = (float)dot(xr, m->wqkv[l] + (size_t)(h * hd + half + j) * W, W) * rr;
                if (h < d->nh + d->nkv) { /* q and k heads rotate */
                    const float inv = 1.0f / powf(m->theta, (float)(2 * j) / (float)hd);
                    const float cs = cosf(pos * inv), sn = sinf(pos * inv);
                    const float a2 = a * cs - b * sn, b2 = b * cs + a * sn;
                    a = a2;
                    b = b2;
                }
                y[j] = a;
                y[half + j] = b;
            }
        }
        break;
    }
    case RTV_MK_ATT: {
        const int h = t->tile, kvh = h / (d->nh / d->nkv);
        const float scale = (float)(1.0 / sqrt((double)hd));
        double *lg = malloc(sizeof(double) * (t->nk + 1));
        for (int r = 0; r < n; r++) {
            const float *q = st->lq[l] + (size_t)(d->kv_row + r) * QKV + (size_t)h * hd;
            const int lim = r < d->limit_rows ? d->limit_keys : d->kv_row + n;
            double mx = -INFINITY, sum = 0, o[512] = {0};
            for (int k = 0; k < (int)t->nk; k++) {
                const int key = (int)t->k0 + k;
                const float *kr = st->lq[l] + (size_t)key * QKV + (size_t)(d->nh + kvh) * hd;
                lg[k] = key < lim ? (double)(float)dot(q, kr, hd) * scale : -INFINITY;
                if (lg[k] > mx) mx = lg[k];
            }
            for (int k = 0; k < (int)t->nk && mx > -INFINITY; k++) {
                if (lg[k] == -INFINITY) continue;
                const int key = (int)t->k0 + k;
                const float *vr = st->lq[l] + (size_t)key * QKV +
                                  (size_t)(d->nh + d->nkv + kvh) * hd;
                const double e = exp(lg[k] - mx);
                sum += e;
                for (int i = 0; i < hd; i++) o[i] += e * vr[i];
            }
            if (S > 1) {
                float *rec = st->arec + ((size_t)(h * S + t->split) * n + r) * (hd + 2);
                rec[0] = (float)mx;
                rec[1] = (float)sum;
                for (int i = 0; i < hd; i++) rec[2 + i] = (float)o[i];
            } else {
                float *out = st->att + (size_t)r * Q + (size_t)h * hd;
                for (int i = 0; i < hd; i++) out[i] = (float)(o[i] / sum);
            }
        }
        free(lg);
        break;
    }
    case RTV_MK_O:
    case RTV_MK_DOWN: {
        const float *a = t->op == RTV_MK_O ? st->att : st->ff;
        const int lda = t->op == RTV_MK_O ? Q : F, K = lda;
        const float *w = t->op == RTV_MK_O ? m->wo[l] : m->wd[l];
        for (int r = 0; r < n; r++)
            for (int c = (int)t->col0; c < (int)(t->col0 + t->ncol); c++) {
                const float v = (float)dot(a + (size_t)r * lda + t->k0,
                                           w + (size_t)c * K + t->k0, (int)t->nk);
                if (S > 1)
                    st->part[((size_t)t->split * n + r) * W + c] = v;
                else
                    st->x[(size_t)r * W + c] += v;
            }
        break;
    }
    case RTV_MK_GU:
        for (int r = 0; r < n; r++) {
            const float *xr = st->x + (size_t)r * W;
            const float rr = (float)rs_row(xr, W, m->eps);
            for (int c = (int)t->col0; c < (int)(t->col0 + t->ncol); c++) {
                const float g = (float)dot(xr, m->wgu[l] + (size_t)c * W, W);
                const float u = (float)dot(xr, m->wgu[l] + (size_t)(F + c) * W, W);
                st->ff[(size_t)r * F + c] = gelu_tanh(rr * g) * (rr * u);
            }
        }
        break;
    }
}

/* the tile's reduction, by the split that arrived last: in split order */
static void run_reduce(const rtv_mk_plan *p, mk_state *st, const rtv_mk_task *t)
{
    const rtv_mk_dims *d = &p->d;
    const int n = d->n, W = d->W, hd = d->hd, S = t->nsplit, Q = d->nh * hd;
    if (t->op == RTV_MK_ATT) {
        const int h = t->tile;
        for (int r = 0; r < n; r++) {
            float M = -INFINITY;
            for (int s = 0; s < S; s++) {
                const float m = st->arec[((size_t)(h * S + s) * n + r) * (hd + 2)];
                if (m > M) M = m;
            }
            double L = 0, o[512] = {0};
            for (int s = 0; s < S; s++) {
                const float *rec = st->arec + ((size_t)(h * S + s) * n + r) * (hd + 2);
                if (rec[0] == -INFINITY) continue;
                const double wgt = exp((double)rec[0] - M);
                L += wgt * rec[1];
                for (int i = 0; i < hd; i++) o[i] += wgt * rec[2 + i];
            }
            for (int i = 0; i < hd; i++)
                st->att[(size_t)r * Q + (size_t)h * hd + i] = (float)(o[i] / L);
        }
        return;
    }
    for (int r = 0; r < n; r++)
        for (int c = (int)t->col0; c < (int)(t->col0 + t->ncol); c++) {
            float v = 0;
            for (int s = 0; s < S; s++) v += st->part[((size_t)s * n + r) * W + c];
            st->x[(size_t)r * W + c] += v;
        }
}

/* Runs the plan's CTA lists, picking a random ready CTA at each step (seed). With m NULL only
 * the counters move. Returns 0, or -1 on deadlock (no CTA can go on, tasks remain). */
static int schedule(const rtv_mk_plan *p, const mk_model *m, mk_state *st, uint64_t seed)
{
    uint32_t *ctr = calloc((size_t)p->nctr, sizeof(uint32_t));
    int *next = calloc((size_t)p->d.ctas, sizeof(int)), *ready = malloc(sizeof(int) * p->d.ctas);
    int left = p->ntask, rc = 0;
    kt_seed(seed);
    while (left > 0) {
        int nr = 0;
        for (int k = 0; k < p->d.ctas; k++) {
            const int at = p->cta_first[k] + next[k];
            if (at >= p->cta_first[k + 1])
                continue;
            const rtv_mk_task *t = &p->task[p->cta_task[at]];
            int ok = 1;
            for (int w = 0; w < t->nwait; w++)
                ok &= ctr[t->wait[w].ctr] >= t->wait[w].target;
            if (ok)
                ready[nr++] = k;
        }
        if (!nr) {
            rc = -1;
            break;
        }
        const int k = ready[kt_u64() % (uint64_t)nr];
        const rtv_mk_task *t = &p->task[p->cta_task[p->cta_first[k] + next[k]++]];
        if (m)
            run_task(p, m, st, t);
        if (t->nsplit > 1) {
            if (++ctr[t->arrive] == t->nsplit) {
                if (m)
                    run_reduce(p, st, t);
                ctr[t->signal]++;
            }
        } else {
            ctr[t->signal]++;
        }
        left--;
    }
    free(ctr);
    free(next);
    free(ready);
    return rc;
}

/* ---- the op-by-op reference (encoder/gemma.c's layer with folded norms) ---- */

static void reference(const rtv_mk_dims *d, const mk_model *m, float *x, float **lq)
{
    const int n = d->n, W = d->W, F = d->F, hd = d->hd, Q = d->nh * hd, KV = d->nkv * hd;
    const int QKV = Q + 2 * KV;
    float *att = calloc((size_t)n * Q, sizeof(float)), *gu = calloc((size_t)n * 2 * F, 4);
    float *ff = calloc((size_t)n * F, sizeof(float));
    const float scale = (float)(1.0 / sqrt((double)hd));
    for (int l = 0; l < d->layers; l++) {
        const int nops = l == d->layers - 1 && d->last_ops ? d->last_ops : RTV_MK_NOPS;
        float *y = lq[l] + (size_t)d->kv_row * QKV;
        int st = kt_b->matmul(kt_s, y, QKV, x, W, m->wqkv[l], NULL, n, QKV, W, 0);
        st |= kt_b->rms_rope(kt_s, y, QKV, QKV, x, W, m->eps, n, d->nh + d->nkv, hd, d->kv_row,
                             m->theta);
        if (nops > RTV_MK_ATT)
            st |= kt_b->attention(kt_s, att, Q, y, QKV, lq[l] + Q, lq[l] + Q + KV, QKV,
                                  d->kv_row + n, NULL, NULL, 0, 0, n, d->nh, d->nkv, hd, scale,
                                  d->limit_rows, d->limit_keys);
        if (nops > RTV_MK_O)
            st |= kt_b->matmul(kt_s, x, W, att, Q, m->wo[l], NULL, n, W, Q, RTV_MM_ACCUM);
        if (nops > RTV_MK_GU) {
            st |= kt_b->matmul(kt_s, gu, 2 * F, x, W, m->wgu[l], NULL, n, 2 * F, W, 0);
            st |= kt_b->rms_geglu(kt_s, ff, gu, x, W, m->eps, n, F);
        }
        if (nops > RTV_MK_DOWN)
            st |= kt_b->matmul(kt_s, x, W, ff, F, m->wd[l], NULL, n, W, F, RTV_MM_ACCUM);
        if (st) {
            fprintf(stderr, "reference: %s\n", rtv_last_error());
            exit(2);
        }
    }
    free(att);
    free(gu);
    free(ff);
}

static float *rnd_buf(size_t n, float amp)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = kt_uni(amp);
    return p;
}

static void model_new(const rtv_mk_dims *d, mk_model *m)
{
    const int W = d->W, F = d->F, Q = d->nh * d->hd, QKV = Q + 2 * d->nkv * d->hd;
    const int L = d->layers, rows = d->kv_row + d->n;
    m->wqkv = malloc(sizeof(float *) * L);
    m->wo = malloc(sizeof(float *) * L);
    m->wgu = malloc(sizeof(float *) * L);
    m->wd = malloc(sizeof(float *) * L);
    m->lq = malloc(sizeof(float *) * L);
    for (int l = 0; l < L; l++) {
        m->wqkv[l] = rnd_buf((size_t)QKV * W, 1.5f / sqrtf((float)W));
        m->wo[l] = rnd_buf((size_t)W * Q, 1.0f / sqrtf((float)Q));
        m->wgu[l] = rnd_buf((size_t)2 * F * W, 1.5f / sqrtf((float)W));
        m->wd[l] = rnd_buf((size_t)W * F, 1.0f / sqrtf((float)F));
        m->lq[l] = rnd_buf((size_t)rows * QKV, 1.0f); /* prefix rows; suffix overwritten */
    }
    m->x0 = rnd_buf((size_t)d->n * W, 1.0f);
    m->eps = 1e-6f;
    m->theta = 10000.0f;
}

static void model_free(const rtv_mk_dims *d, mk_model *m)
{
    for (int l = 0; l < d->layers; l++) {
        free(m->wqkv[l]); free(m->wo[l]); free(m->wgu[l]); free(m->wd[l]); free(m->lq[l]);
    }
    free(m->wqkv); free(m->wo); free(m->wgu); free(m->wd); free(m->lq); free(m->x0);
}

static float **lq_copy(const rtv_mk_dims *d, float **src)
{
    const size_t sz = (size_t)(d->kv_row + d->n) * (d->nh + 2 * d->nkv) * d->hd;
    float **lq = malloc(sizeof(float *) * d->layers);
    for (int l = 0; l < d->layers; l++) {
        lq[l] = malloc(sz * sizeof(float));
        memcpy(lq[l], src[l], sz * sizeof(float));
    }
    return lq;
}

static void lq_free(const rtv_mk_dims *d, float **lq)
{
    for (int l = 0; l < d->layers; l++) free(lq[l]);
    free(lq);
}

/* The plan run under `seeds` random schedules against the reference: x and every layer's
 * suffix qkv rows within tol, and all schedules bit-identical. */
static void check_numbers(const rtv_mk_dims *d, const rtv_mk_shape *sh, int seeds)
{
    rtv_mk_plan p;
    char err[256];
    if (rtv_mk_plan_build(&p, d, sh, err, sizeof(err))) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    mk_model m;
    kt_seed(0x5eed + (uint64_t)d->n * 131 + (uint64_t)p.sh.a_splits);
    model_new(d, &m);
    const int QKV = (d->nh + 2 * d->nkv) * d->hd;
    const size_t nx = (size_t)d->n * d->W, nq = (size_t)d->n * QKV;
    float *xr = malloc(nx * sizeof(float));
    memcpy(xr, m.x0, nx * sizeof(float));
    float **lqr = lq_copy(d, m.lq);
    reference(d, &m, xr, lqr);
    float *x_first = NULL;
    int deadlocks = 0, diff = 0;
    for (int sd = 0; sd < seeds; sd++) {
        mk_state st;
        st.x = malloc(nx * sizeof(float));
        memcpy(st.x, m.x0, nx * sizeof(float));
        st.att = calloc((size_t)d->n * d->nh * d->hd, sizeof(float));
        st.ff = calloc((size_t)d->n * d->F, sizeof(float));
        st.part = calloc((size_t)RTV_MK_MAXSPLIT * nx, sizeof(float));
        st.arec = calloc((size_t)d->nh * p.sh.a_splits * d->n * (d->hd + 2), sizeof(float));
        st.lq = lq_copy(d, m.lq);
        deadlocks += schedule(&p, &m, &st, 1000 + (uint64_t)sd) != 0;
        if (sd == 0) {
            CHECK_CLOSE(st.x, xr, (long)nx, 2e-4f);
            for (int l = 0; l < d->layers; l++)
                CHECK_CLOSE(st.lq[l] + (size_t)d->kv_row * QKV, lqr[l] + (size_t)d->kv_row * QKV,
                            (long)nq, 2e-4f);
            x_first = st.x;
        } else {
            diff += memcmp(st.x, x_first, nx * sizeof(float)) != 0;
            free(st.x);
        }
        free(st.att); free(st.ff); free(st.part); free(st.arec);
        lq_free(d, st.lq);
    }
    CHECK_MSG(deadlocks == 0, "%d of %d schedules deadlocked", deadlocks, seeds);
    CHECK_MSG(diff == 0, "%d of %d schedules differ bitwise from the first", diff, seeds - 1);
    free(x_first);
    free(xr);
    lq_free(d, lqr);
    model_free(d, &m);
    rtv_mk_plan_free(&p);
}

/* The structural checks of one plan; returns its failures (counted as CHECKs too). */
static int check_plan(const rtv_mk_dims *d, const rtv_mk_shape *sh, const char *what, int seeds)
{
    rtv_mk_plan p;
    char err[256];
    const int f0 = check_fail_;
    if (rtv_mk_plan_build(&p, d, sh, err, sizeof(err))) {
        CHECK_MSG(0, "%s: %s", what, err);
        return 1;
    }
    items s;
    items_build(&p, &s);
    CHECK_MSG(counters_bad(&p) == 0, "%s: counters", what);
    const long cov = coverage_bad(&p, &s);
    CHECK_MSG(cov == 0, "%s: %ld output elements not written exactly once", what, cov);
    const long hz = hazards(&p, &s);
    CHECK_MSG(hz == 0, "%s: %ld unordered pairs", what, hz);
    int dl = 0;
    for (int sd = 0; sd < seeds; sd++)
        dl += schedule(&p, NULL, NULL, 77 + (uint64_t)sd) != 0;
    CHECK_MSG(dl == 0, "%s: %d of %d schedules deadlocked", what, dl, seeds);
    /* balance: report, and no CTA above twice the mean */
    double mx = 0, sum = 0;
    for (int k = 0; k < d->ctas; k++) {
        sum += p.cta_cost[k];
        if (p.cta_cost[k] > mx) mx = p.cta_cost[k];
    }
    CHECK_MSG(mx <= 2 * sum / d->ctas + 1, "%s: CTA work max %.0f mean %.0f", what, mx,
              sum / d->ctas);
    printf("%s: %d tasks, %d counters, q_pairs %d a_splits %d o %dx%d g %d d %dx%d, "
           "CTA work max/mean %.3f\n", what, p.ntask, p.nctr, p.sh.q_pairs, p.sh.a_splits,
           p.sh.o_cols, p.sh.o_splits, p.sh.g_cols, p.sh.d_cols, p.sh.d_splits,
           mx / (sum / d->ctas));
    items_free(&s);
    rtv_mk_plan_free(&p);
    return check_fail_ - f0;
}

/* Each checker rejects a broken plan. */
static void check_checkers(const rtv_mk_dims *d, const rtv_mk_shape *sh)
{
    rtv_mk_plan p;
    char err[256];
    if (rtv_mk_plan_build(&p, d, sh, err, sizeof(err))) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    items s;
    /* an attention split over this step's keys that no longer waits for the V head */
    int victim = -1;
    for (int i = 0; i < p.ntask && victim < 0; i++)
        if (p.task[i].op == RTV_MK_ATT && p.task[i].nwait == 3 && p.task[i].layer == 1)
            victim = i;
    CHECK(victim >= 0);
    if (victim >= 0) {
        p.task[victim].nwait = 2;
        items_build(&p, &s);
        quiet = 1;
        CHECK_MSG(hazards(&p, &s) > 0, "a dropped wait was not found");
        quiet = 0;
        items_free(&s);
        p.task[victim].nwait = 3;
    }
    /* a GU task that waits for one O tile fewer */
    for (int i = 0; i < p.ntask; i++)
        if (p.task[i].op == RTV_MK_GU) {
            p.task[i].wait[0].target--;
            CHECK_MSG(counters_bad(&p) > 0, "a short wait target was not found");
            p.task[i].wait[0].target++;
            break;
        }
    /* a QKV task writing its neighbour's pairs */
    for (int i = 0; i < p.ntask; i++)
        if (p.task[i].op == RTV_MK_QKV && p.task[i].col0 > 0) {
            p.task[i].col0 -= p.task[i].ncol;
            items_build(&p, &s);
            CHECK_MSG(coverage_bad(&p, &s) > 0, "overlapping QKV columns were not found");
            items_free(&s);
            p.task[i].col0 += p.task[i].ncol;
            break;
        }
    /* CTA 0 runs a later layer's task first: its own earlier tasks can never run */
    const int n0 = p.cta_first[1] - p.cta_first[0];
    CHECK(n0 >= 2);
    if (n0 >= 2) {
        int *l0 = p.cta_task + p.cta_first[0];
        const int tmp = l0[0];
        l0[0] = l0[n0 - 1];
        l0[n0 - 1] = tmp;
        CHECK_MSG(schedule(&p, NULL, NULL, 5) != 0, "a misordered list did not deadlock");
    }
    rtv_mk_plan_free(&p);
}

/* Bad dimensions and cuts are refused with a message naming the field. */
static void check_refusals(void)
{
    rtv_mk_plan p;
    char err[256];
    rtv_mk_dims d = {8, 64, 128, 4, 1, 16, 2, 10, 0, 0, 4, 0};
    rtv_mk_dims bad = d;
    bad.n = 65;
    CHECK(rtv_mk_plan_build(&p, &bad, NULL, err, sizeof(err)) != 0 && strstr(err, "n=65"));
    bad = d;
    bad.nkv = 3;
    CHECK(rtv_mk_plan_build(&p, &bad, NULL, err, sizeof(err)) != 0 && strstr(err, "kv_heads"));
    rtv_mk_shape sh = {0};
    sh.q_pairs = 3;
    CHECK(rtv_mk_plan_build(&p, &d, &sh, err, sizeof(err)) != 0 && strstr(err, "q_pairs=3"));
    memset(&sh, 0, sizeof(sh));
    sh.o_splits = 3;
    CHECK(rtv_mk_plan_build(&p, &d, &sh, err, sizeof(err)) != 0 && strstr(err, "o_splits=3"));
    memset(&sh, 0, sizeof(sh));
    sh.d_splits = 16;
    sh.g_cols = 16;
    CHECK(rtv_mk_plan_build(&p, &d, &sh, err, sizeof(err)) != 0 && strstr(err, "g_cols=16"));
    memset(&sh, 0, sizeof(sh));
    sh.a_keys = 4;
    sh.a_splits = 2; /* 18 keys in 4-key splits are 5 */
    CHECK(rtv_mk_plan_build(&p, &d, &sh, err, sizeof(err)) != 0 && strstr(err, "a_keys=4"));
    bad = d;
    bad.last_ops = 6;
    CHECK(rtv_mk_plan_build(&p, &bad, NULL, err, sizeof(err)) != 0 && strstr(err, "last_ops=6"));
    CHECK(rtv_mk_plan_build(&p, &d, NULL, err, sizeof(err)) == 0);
    rtv_mk_plan_free(&p);
}

int main(void)
{
    kt_init();
    check_refusals();
    /* small dimensions: numbers, under several cuts (n, W, F, nh, nkv, hd, layers, kv_row,
     * limit_rows, limit_keys, ctas) */
    const rtv_mk_dims step0 = {9, 64, 128, 4, 1, 16, 3, 20, 1, 21, 7, 0};
    const rtv_mk_dims step1 = {8, 64, 128, 4, 1, 16, 3, 21, 0, 0, 5, 0};
    const rtv_mk_dims gqa = {5, 48, 96, 4, 2, 8, 2, 6, 2, 3, 3, 0};
    const rtv_mk_shape cuts[] = {
        {0, 0, 0, 0, 0, 0, 0, 0, 0},         /* chosen (one task per head and op at this size) */
        {2, 3, 16, 2, 8, 16, 4, 4096, 0},    /* splits everywhere */
        {8, 1, 64, 1, 128, 64, 1, 0, 0},     /* no splits */
        {1, 16, 8, 4, 8, 8, 16, 0, 0},       /* the most splits */
        {4, 0, 32, 4, 16, 32, 2, 0, 8},      /* 8-key splits, the last shorter (as mk.cu) */
    };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        check_numbers(&step0, &cuts[i], 6);
        check_numbers(&step1, &cuts[i], 6);
        if (check_plan(&step0, &cuts[i], "small step 0", 20))
            fprintf(stderr, "  (cut %zu)\n", i);
    }
    /* a step stopped after each op of its last layer (how a kernel is checked part by part):
     * x holds the residual after O for last_ops 3, 4; the qkv rows are there from 1 on */
    for (int k = 1; k < RTV_MK_NOPS; k++) {
        rtv_mk_dims part = step0;
        part.last_ops = k;
        check_numbers(&part, &cuts[1], 3);
        char what[48];
        snprintf(what, sizeof(what), "small step 0, last_ops %d", k);
        check_plan(&part, &cuts[1], what, 10);
    }
    check_numbers(&gqa, NULL, 6);
    const rtv_mk_shape gqa_split = {1, 2, 8, 2, 8, 8, 4, 0, 0};
    check_numbers(&gqa, &gqa_split, 6);
    check_plan(&gqa, &gqa_split, "small gqa", 20);
    check_checkers(&step0, &cuts[1]);

    /* pi0's expert (pi0.md: width 1024, MLP 4096, 8 heads, 1 K/V head, head_dim 256, 18
     * layers) after a 512-key prefix: step 0 runs the state token and the 50 action rows, the
     * later steps the action rows; on the whole H100 and on green-context shares */
    const int shares[] = {132, 66, 32};
    for (int i = 0; i < 3; i++) {
        rtv_mk_dims p0 = {51, 1024, 4096, 8, 1, 256, 18, 512, 1, 513, shares[i], 0};
        rtv_mk_dims p1 = {50, 1024, 4096, 8, 1, 256, 18, 513, 0, 0, shares[i], 0};
        char what[64];
        snprintf(what, sizeof(what), "pi0 step 0, %d CTAs", shares[i]);
        check_plan(&p0, NULL, what, i == 0 ? 4 : 2);
        snprintf(what, sizeof(what), "pi0 step 1, %d CTAs", shares[i]);
        check_plan(&p1, NULL, what, 2);
        /* the cut kernels/cuda/mk.cu asks for: 64-column tiles (two 32-row weight boxes), key
         * splits of at most 80 keys (one chunk each) */
        for (int ak = 1; ak <= 2; ak++) { /* RTV_MK_AKEYS 1 and 2 (the default) */
            const rtv_mk_shape cuda_cut = rtv_mk_shape_cuda(p0.kv_row + p0.n, ak);
            snprintf(what, sizeof(what), "pi0 step 0 as mk.cu cuts it (%d-key splits), %d CTAs",
                     cuda_cut.a_keys, shares[i]);
            check_plan(&p0, &cuda_cut, what, 2);
        }
    }
    kt_fini();
    return check_report("test_mk_plan");
}
