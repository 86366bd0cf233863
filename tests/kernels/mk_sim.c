/* tests/kernels/mk_sim.c — a timing MODEL of the persistent expert kernel (kernels/cuda/mk.cu)
 * running a plan of kernels/cuda/mk_plan.h: not a measurement, and not a test. It exists to
 * compare cuts and kernel variants before spending GPU time on them, and to set next to the
 * kernel's trace (RTV_MK_TRACE=1) once it has run, to see which assumption was wrong.
 *
 * Usage: build/tests/kernels/mk_sim [rows kv_row ctas akeys ring [q_pairs g_cols [chunkdeps]]]
 *        (default: pi0's later steps, 50 rows after 513 keys, 132 CTAs, 2, 10; the cut mk.cu
 *        runs, 32 pairs and 32 GeGLU columns per task: other cuts model kernels not built;
 *        chunkdeps 1 models a kernel not built either: a qkv / gate_up task's chunk c waits
 *        only for the down / o tile c it reads, not for the whole op)
 *
 * The model walks the tasks in program order (every dependency and every earlier task of a CTA is
 * then already timed). A CTA's producer streams weight chunks (8 KB) at its fair share of HBM, at
 * most `ring` chunks ahead of its consumers (mk.cu: 10). A chunk's activations are copied once its
 * stage is free and its task's counters were released (+ a visibility delay), an L2 round trip;
 * the consumers take it when the CTA is free and both halves are in, for the cost of its MMAs;
 * after the last chunk, the epilogue. The split that finishes last reduces the tile on its CTA. An
 * attention task loads Q after its wait (K/V before it for prefix-only splits), runs its 80-key
 * chunks, and its last split combines the records at one SM's L2 bandwidth. All constants are
 * assumptions, printed with the result; change them here, not in the kernel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/mk_plan.h"

/* assumptions (H100 SXM, us and GB/s) */
static const double HBM_GBS = 3000.0;  /* weight stream, shared by all CTAs */
static const double SM_GBS = 60.0;     /* the most one SM's copies pull from HBM */
static const double L2_GBS = 127.0;    /* one SM's L2 bandwidth (64 B/clock) */
static const double L2_US = 0.8;       /* an activation chunk's copy: issue to arrival */
static const double SIG_US = 0.5;      /* a counter's release seen by a poller */
static const double CHUNK_US = 0.12;   /* 4 wgmma m64n64k16 + the row's sum of squares */
static const double EPI_US = 0.6;      /* stage the tile, epilogue, barriers, release */
static const double RED_US = 0.8;      /* fixed part of a reduction (bulk copies issued) */
static const double ATT_Q_US = 1.0;    /* Q (and K/V where not early) after the wait */
static const double ATT_CHUNK_US = 1.4; /* S, softmax, P.V of 80 keys (attn_wg's trace) */

int main(int argc, char **argv)
{
    int rows = 50, kv_row = 513, ctas = 132, akeys = 2, ring = 10, qp = 32, gc = 32;
    int chunkdeps = 0;
    if (argc == 6 || argc == 8 || argc == 9) {
        rows = atoi(argv[1]);
        kv_row = atoi(argv[2]);
        ctas = atoi(argv[3]);
        akeys = atoi(argv[4]);
        ring = atoi(argv[5]);
        if (argc >= 8) {
            qp = atoi(argv[6]);
            gc = atoi(argv[7]);
        }
        if (argc == 9) chunkdeps = atoi(argv[8]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [rows kv_row ctas akeys ring [q_pairs g_cols [chunkdeps]]]\n",
                argv[0]);
        return 2;
    }
    if (ring < 1 || akeys < 1) {
        fprintf(stderr, "mk_sim: ring and akeys must be >= 1\n");
        return 2;
    }
    /* pi0's expert, the cut mk.cu asks for */
    rtv_mk_dims d = {rows, 1024, 4096, 8, 1, 256, 18, kv_row, 0, 0, ctas, 0};
    const int keys = kv_row + rows;
    rtv_mk_shape sh = rtv_mk_shape_cuda(keys, akeys);
    sh.q_pairs = qp;
    sh.g_cols = gc;
    rtv_mk_plan p;
    char err[256];
    if (rtv_mk_plan_build(&p, &d, &sh, err, sizeof(err))) {
        fprintf(stderr, "mk_sim: %s\n", err);
        return 1;
    }
    const double share = HBM_GBS / ctas < SM_GBS ? HBM_GBS / ctas : SM_GBS;
    const double w_us = 8192.0 / (share * 1e3); /* one weight chunk at a CTA's share */
    double *cta_free = calloc((size_t)ctas, sizeof(double));
    double *ctr_done = calloc((size_t)p.nctr, sizeof(double)); /* time its target is reached */
    unsigned *ctr_n = calloc((size_t)p.nctr, sizeof(unsigned));
    double *tile_end = calloc((size_t)p.nctr, sizeof(double));  /* per arrival counter */
    double *tile_done = calloc((size_t)p.nctr, sizeof(double)); /* its reduction's end */
    rtv_mk_ctrs cl;
    rtv_mk_ctr_layout(&p.d, &p.sh, &cl);
    int *tile_cta = calloc((size_t)p.nctr, sizeof(int));
    /* per CTA: the producer's weight stream (arrival time of its last chunk) and the
     * consumer's finish times of its last `ring` chunks (a stage frees when consumed) */
    double *w_last = calloc((size_t)ctas, sizeof(double));
    double *done_ring = calloc((size_t)ctas * ring, sizeof(double));
    long *nchunk = calloc((size_t)ctas, sizeof(long));
    int *owner = malloc(sizeof(int) * (size_t)p.ntask);
    for (int k = 0; k < ctas; k++)
        for (int i = p.cta_first[k]; i < p.cta_first[k + 1]; i++) owner[p.cta_task[i]] = k;
    double op_us[RTV_MK_NOPS] = {0}, op_wait[RTV_MK_NOPS] = {0};
    double span[2][RTV_MK_NOPS][2]; /* layers 1 and 2: each op's first start and last end */
    for (int l = 0; l < 2; l++)
        for (int op = 0; op < RTV_MK_NOPS; op++) span[l][op][0] = 1e30, span[l][op][1] = 0;
    int op_n[RTV_MK_NOPS] = {0};
    double end_all = 0;
    for (int i = 0; i < p.ntask; i++) {
        const rtv_mk_task *t = &p.task[i];
        const int k = owner[i];
        double deps = 0;
        /* chunkdeps: a qkv (gate_up) task waits per chunk for the down (o) tile it reads */
        const int per_chunk = chunkdeps && ((t->op == RTV_MK_QKV && t->layer > 0) ||
                                            t->op == RTV_MK_GU);
        if (!per_chunk)
            for (int w = 0; w < t->nwait; w++)
                if (ctr_done[t->wait[w].ctr] + SIG_US > deps)
                    deps = ctr_done[t->wait[w].ctr] + SIG_US;
        const double start = cta_free[k] > deps ? cta_free[k] : deps;
        double end;
        if (t->op == RTV_MK_ATT) {
            const int nc = ((int)t->nk + RTV_MK_KEY_CHUNK - 1) / RTV_MK_KEY_CHUNK;
            end = start + ATT_Q_US + nc * ATT_CHUNK_US + EPI_US;
        } else {
            /* a task's weight chunk is 64 K x its weight rows (64 in mk.cu's cut) */
            const int wrows = t->op == RTV_MK_QKV ? 2 * (int)t->ncol
                              : t->op == RTV_MK_GU ? 2 * (int)t->ncol : (int)t->ncol;
            const double wc_us = w_us * wrows / 64.0;
            const int nch = (int)t->nk / 64;
            double tchunk = start, a_prev = 0;
            for (int c = 0; c < nch; c++, nchunk[k]++) {
                /* the chunk's stage frees when the chunk `ring` earlier was consumed; its
                 * weights then stream after the previous chunk's, and its activations go out
                 * once the stage is free and the task's counters were seen (the producer runs
                 * ahead of the consumers), one L2 round trip, at one SM's L2 bandwidth */
                const double freed = nchunk[k] >= ring ? done_ring[(size_t)k * ring +
                                                                   (nchunk[k] % ring)] : 0;
                const double w_in = (w_last[k] > freed ? w_last[k] : freed) + wc_us;
                w_last[k] = w_in;
                double dep = deps;
                if (per_chunk) { /* tile c of down (layer - 1) or of o (this layer) */
                    const uint32_t tc = t->op == RTV_MK_QKV
                        ? (uint32_t)(t->layer - 1) * cl.per_layer + cl.da + (uint32_t)c
                        : (uint32_t)t->layer * cl.per_layer + cl.oa + (uint32_t)c;
                    dep = tile_done[tc] + SIG_US;
                }
                double a_in = (dep > freed ? dep : freed) + L2_US;
                if (a_in < a_prev + 8192.0 / (L2_GBS * 1e3))
                    a_in = a_prev + 8192.0 / (L2_GBS * 1e3);
                a_prev = a_in;
                double ready = a_in > w_in ? a_in : w_in;
                if (ready < tchunk) ready = tchunk;
                tchunk = ready + CHUNK_US;
                done_ring[(size_t)k * ring + (nchunk[k] % ring)] = tchunk;
            }
            end = tchunk + EPI_US;
        }
        op_wait[t->op] += start - cta_free[k];
        op_us[t->op] += end - start;
        op_n[t->op]++;
        cta_free[k] = end;
        if (t->nsplit > 1) { /* the split that ends last reduces the tile on its CTA */
            const uint32_t a = t->arrive;
            if (end > tile_end[a]) {
                tile_end[a] = end;
                tile_cta[a] = k;
            }
            if (++ctr_n[a] == t->nsplit) {
                const double bytes = t->op == RTV_MK_ATT ? (double)t->nsplit * rows * 1056
                                                         : (double)t->nsplit * rows * 256;
                const double red = RED_US + bytes / (L2_GBS * 1e3);
                const int kr = tile_cta[a];
                const double r0 = cta_free[kr] > tile_end[a] ? cta_free[kr] : tile_end[a];
                cta_free[kr] = r0 + red;
                tile_done[a] = r0 + red;
                end = r0 + red;
                if (end > ctr_done[t->signal]) ctr_done[t->signal] = end;
            }
        } else if (end > ctr_done[t->signal]) {
            ctr_done[t->signal] = end;
        }
        if (end > end_all) end_all = end;
        if (t->layer == 1 || t->layer == 2) {
            double (*sp)[2] = span[t->layer - 1];
            if (start < sp[t->op][0]) sp[t->op][0] = start;
            if (end > sp[t->op][1]) sp[t->op][1] = end;
        }
    }
    static const char *const names[RTV_MK_NOPS] = {"qkv", "attention", "o", "gate_up", "down"};
    printf("mk_sim (a model, not a measurement): rows %d, keys %d, %d CTAs, %d tasks; qkv %d "
           "pairs, gate_up %d columns, attention splits of %d keys, o %dx%d, down %dx%d, ring "
           "%d%s\n", rows, keys, ctas, p.ntask, p.sh.q_pairs, p.sh.g_cols, p.sh.a_keys,
           p.sh.o_cols, p.sh.o_splits, p.sh.d_cols, p.sh.d_splits, ring,
           chunkdeps ? ", per-chunk dependencies (not built)" : "");
    printf("assumed: HBM %.0f GB/s (%.2f us per 8 KB per CTA), L2 %.0f GB/s per SM, "
           "first chunk %.1f us, release seen %.1f, chunk %.2f, epilogue %.1f, reduction "
           "%.1f + bytes, attention %.1f + %.1f per 80 keys\n", HBM_GBS, w_us, L2_GBS, L2_US,
           SIG_US, CHUNK_US, EPI_US, RED_US, ATT_Q_US, ATT_CHUNK_US);
    printf("step %.1f us (%.1f us per layer), cycle of 10 steps %.2f ms; HBM floor %.1f us\n",
           end_all, end_all / d.layers, end_all * 10 / 1000.0,
           (double)d.layers * 17301504 * 2 / (HBM_GBS * 1e3));
    for (int op = 0; op < RTV_MK_NOPS; op++)
        printf("  %-10s %5d tasks, mean %.2f us running, %.2f us waiting before\n", names[op],
               op_n[op], op_us[op] / op_n[op], op_wait[op] / op_n[op]);
    for (int l = 0; l < 2; l++) { /* how the ops of a layer follow each other */
        printf("  layer %d, us from its first task:", l + 1);
        for (int op = 0; op < RTV_MK_NOPS; op++)
            printf(" %s %.1f-%.1f", names[op], span[l][op][0] - span[l][0][0],
                   span[l][op][1] - span[l][0][0]);
        printf("\n");
    }
    free(cta_free); free(ctr_done); free(ctr_n); free(tile_end); free(tile_done); free(tile_cta);
    free(w_last); free(done_ring); free(nchunk); free(owner);
    rtv_mk_plan_free(&p);
    return 0;
}
