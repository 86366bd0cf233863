/* encoder/gemma.c — Gemma decoder layers: the prefix LLM over [image tokens; task tokens] and
 * the action expert over the suffix, sharing one attention per layer (pi0.md 1.2-1.4).
 *
 * Layer (pre-norm, Gemma 1): x += o(attn(rope(qkv(rms(x))))); x += down(geglu(gate_up(rms(x)))),
 * RMSNorm scaled by (1 + w), RoPE half-split on q and k only, logits scaled by head_dim^-1/2.
 * The prefix is bidirectional; its K (after RoPE) and V go to the features object, which the
 * expert then only reads. pooled = mean over prefix rows of final_norm(last layer output),
 * computed for the regression head only: with the flow head the last layer's output has no
 * reader, so that layer stops at its K/V (prefix_kv_only).
 * The expert runs rows [row0, row0 + n) of the suffix at positions n_prefix + row0 ..; they
 * attend to the whole prefix and to suffix rows [0, row0 + n). A call with row0 0 includes the
 * state token (row 0), which sees only the prefix and itself (the attention's limit rule);
 * later calls run the action rows alone (row0 1) and reuse its K/V: exactly pi0's mask (the
 * state token sees the prefix and itself; action tokens see everything), with the state
 * token's K/V computed once per action cycle instead of once per Euler step.
 * Where the backend has rms_rope and rms_geglu, the two norms of each layer (expert and prefix)
 * run behind their GEMMs: the norm weights are folded into qkv and gate_up at load (weights.c)
 * and the row scale rides on the RoPE and GeGLU passes (backend.h), two kernels fewer per layer
 * (and Euler step).
 */
#include <math.h>

#include "runtime/policy_impl.h"

#define RTV_EXPERT_MAXL 64 /* layers expert_layers takes in one call */

/* One decoder layer on rows x[0, n) (width W, MLP F). Prefix: K/V rows go to kc/vc at
 * kv_row and attention reads kc/vc rows [0, kv_row + n). Expert (kvbase set): qkv points at row
 * kv_row of kvbase, a (rows, QKV) buffer whose earlier rows already hold K/V, so attention reads
 * K/V in place (row stride QKV) over rows [0, kv_row + n) and nothing is copied. */
typedef struct layer_io {
    void *x, *xn, *qkv, *att, *gu, *ff; /* activations (see rtv_vl_ws / rtv_act_ws) */
    int W, F, n, pos0;
    void *kc, *vc;
    int kv_row;
    const void *kvbase;
    int limit_rows, limit_keys; /* attention's limit rule (expert: the state token) */
    int folded; /* the norms' weights are in qkv / gate_up: s_r after the GEMM (backend.h) */
    int qkv_ready;                /* the previous layer's rms_mlp computed this one's qkv */
    const rtv_qkv_next *next_qkv; /* rms_mlp computes the next layer's qkv (NULL: it doesn't) */
} layer_io;

static int layer(const rtv_policy *p, rtv_stream *s, const rtv_gemma_layer *L, const layer_io *io)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    const int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    const int QKV = rtv_model_qkv_dim(c), n = io->n, W = io->W, F = io->F;
    const float scale = (float)(1.0 / sqrt((double)c->head_dim));

    /* folded: the GEMMs read x itself and the norm's row scale rides on RoPE and GeGLU */
    const void *xn = io->folded ? io->x : io->xn;
    if (!io->folded && (st = b->rmsnorm(s, io->xn, io->x, L->ln_attn, n, W, c->rms_eps)))
        return st;
    if (!io->qkv_ready) {
        if ((st = b->matmul(s, io->qkv, QKV, xn, W, L->qkv, NULL, n, QKV, W, 0)))
            return st;
        /* q heads and k heads are adjacent in the fused qkv row: one RoPE call covers both */
        if (io->folded)
            st = b->rms_rope(s, io->qkv, QKV, QKV, io->x, W, c->rms_eps, n,
                             c->n_heads + c->n_kv_heads, c->head_dim, io->pos0, c->rope_theta);
        else
            st = b->rope(s, io->qkv, QKV, n, c->n_heads + c->n_kv_heads, c->head_dim, io->pos0,
                         c->rope_theta);
        if (st)
            return st;
    }
    if (io->kvbase) {
        if ((st = b->attention(s, io->att, Q, io->qkv, QKV, rtv_cact_at(b, io->kvbase, Q),
                               rtv_cact_at(b, io->kvbase, (size_t)Q + KV), QKV, io->kv_row + n,
                               NULL, NULL, 0, 0, n, c->n_heads, c->n_kv_heads, c->head_dim,
                               scale, io->limit_rows, io->limit_keys)))
            return st;
    } else {
        /* K and V are adjacent in the qkv row and interleaved by row in the features: one copy */
        if ((st = b->copy2d(s, rtv_act_at(b, io->kc, (size_t)io->kv_row * 2 * KV), 2 * KV,
                            rtv_act_at(b, io->qkv, Q), QKV, n, 2 * KV)))
            return st;
        if ((st = b->attention(s, io->att, Q, io->qkv, QKV, io->kc, io->vc, 2 * KV,
                               io->kv_row + n, NULL, NULL, 0, 0, n, c->n_heads, c->n_kv_heads,
                               c->head_dim, scale, 0, 0)))
            return st;
    }
    if (io->folded && b->rms_mlp) /* o-proj and the MLP block in one call (backend.h) */
        return b->rms_mlp(s, io->x, io->att, L->o, Q, L->gate_up, L->down, io->gu, io->ff, W,
                          c->rms_eps, n, F, io->next_qkv);
    if ((st = b->matmul(s, io->x, W, io->att, Q, L->o, NULL, n, W, Q, RTV_MM_ACCUM)))
        return st;
    if (!io->folded && (st = b->rmsnorm(s, io->xn, io->x, L->ln_ffw, n, W, c->rms_eps)))
        return st;
    /* one call where the backend can fuse them: matmul_rms_geglu when folded (the row scale
     * must reach the gate before GELU), matmul_geglu when not */
    if (io->folded && b->matmul_rms_geglu) {
        if ((st = b->matmul_rms_geglu(s, io->ff, io->gu, io->x, L->gate_up, n, F, W,
                                      c->rms_eps)))
            return st;
    } else if (b->matmul_geglu && !io->folded) {
        if ((st = b->matmul_geglu(s, io->ff, io->gu, xn, W, L->gate_up, n, F, W)))
            return st;
    } else {
        if ((st = b->matmul(s, io->gu, 2 * F, xn, W, L->gate_up, NULL, n, 2 * F, W, 0)))
            return st;
        st = io->folded ? b->rms_geglu(s, io->ff, io->gu, io->x, W, c->rms_eps, n, F)
                        : b->geglu(s, io->ff, io->gu, n, F);
        if (st)
            return st;
    }
    if ((st = b->matmul(s, io->x, W, io->ff, F, L->down, NULL, n, W, F, RTV_MM_ACCUM)))
        return st;
    return RTV_OK;
}

/* The last prefix layer when nothing reads its output (the flow head: the expert reads only
 * the prefix K/V, and pooled features exist for the regression head): the K and V projection
 * of rms(x) and RoPE on K, written straight into the features; its q, attention, o-proj and
 * MLP, the final norm and the pooling are dead work and are not run. */
static int prefix_kv_only(const rtv_policy *p, rtv_stream *s, const rtv_gemma_layer *L,
                          const layer_io *io)
{
    const rtv_backend *b = p->b;
    const rtv_model_cfg *c = &p->cfg;
    const int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, W = io->W;
    void *kv = rtv_act_at(b, io->kc, (size_t)io->kv_row * 2 * KV); /* rows [K | V] */
    const void *w_kv = rtv_w_at(b, L->qkv, (size_t)Q * W);         /* qkv's K and V rows */
    int st;
    if (!io->folded && (st = b->rmsnorm(s, io->xn, io->x, L->ln_attn, io->n, W, c->rms_eps)))
        return st;
    if ((st = b->matmul(s, kv, 2 * KV, io->folded ? io->x : io->xn, W, w_kv, NULL, io->n,
                        2 * KV, W, 0)))
        return st;
    if (io->folded)
        return b->rms_rope(s, kv, 2 * KV, 2 * KV, io->x, W, c->rms_eps, io->n, c->n_kv_heads,
                           c->head_dim, io->pos0, c->rope_theta);
    return b->rope(s, kv, 2 * KV, io->n, c->n_kv_heads, c->head_dim, io->pos0, c->rope_theta);
}

int rtv_gemma_prefix(const rtv_policy *p, rtv_stream *s, rtv_vl_ws *ws, int n_prefix,
                     rtv_features *f)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    layer_io io = {ws->x, ws->xn, ws->qkv, ws->att, ws->gu, ws->ff, c->llm_width, c->llm_mlp,
                   n_prefix, 0, NULL, NULL, 0, NULL, 0, 0, p->llm_norms_folded, 0, NULL};
    for (int l = 0; l < c->llm_depth; l++) {
        io.kc = f->k[l];
        io.vc = f->v[l];
        if (l == c->llm_depth - 1 && !f->pooled && !p->prefix_full)
            return prefix_kv_only(p, s, &p->w.llm[l], &io);
        if ((st = layer(p, s, &p->w.llm[l], &io)))
            return st;
    }
    if (!f->pooled)
        return RTV_OK;
    if ((st = b->rmsnorm(s, ws->xn, ws->x, p->w.llm_norm, n_prefix, c->llm_width, c->rms_eps)))
        return st;
    if ((st = b->mean_rows(s, f->pooled, ws->xn, c->llm_width, n_prefix, c->llm_width)))
        return st;
    return RTV_OK;
}

int rtv_gemma_expert(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws, const rtv_features *f,
                     int row0, int n)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    /* per layer one (rows, QKV) buffer: the prefix K/V (copied in by rtv_flow_sample) and the
     * suffix rows, whose qkv projection is written in place at n_prefix + row0 .. */
    const int QKV = rtv_model_qkv_dim(c), kv_row = f->n_prefix + row0;
    layer_io io = {rtv_act_at(b, ws->sx, (size_t)row0 * c->exp_width), ws->sxn, NULL, ws->att,
                   ws->gu, ws->ff, c->exp_width, c->exp_mlp, n, kv_row, NULL, NULL, kv_row, NULL,
                   /* row 0 is the state token: it sees the prefix and itself only */
                   row0 == 0 && n > 1 ? 1 : 0, f->n_prefix + 1, p->exp_norms_folded, 0, NULL};
    /* all layers in one call where the backend takes it (kernels/backend.h expert_layers) */
    if (p->exp_norms_folded && b->expert_layers && c->llm_depth <= RTV_EXPERT_MAXL) {
        void *lq[RTV_EXPERT_MAXL];
        const void *wq[RTV_EXPERT_MAXL], *wo[RTV_EXPERT_MAXL], *wg[RTV_EXPERT_MAXL],
            *wd[RTV_EXPERT_MAXL];
        for (int l = 0; l < c->llm_depth; l++) {
            lq[l] = ws->lq[l];
            wq[l] = p->w.exp[l].qkv;
            wo[l] = p->w.exp[l].o;
            wg[l] = p->w.exp[l].gate_up;
            wd[l] = p->w.exp[l].down;
        }
        const rtv_expert_step e = {n, c->exp_width, c->exp_mlp, c->n_heads, c->n_kv_heads,
                                   c->head_dim, c->llm_depth, kv_row, io.limit_rows,
                                   io.limit_keys, c->rms_eps, c->rope_theta, io.x, lq, wq, wo,
                                   wg, wd};
        ws->expert_fused = (st = b->expert_layers(s, &e)) != RTV_E_UNSUPPORTED;
        if (ws->expert_fused)
            return st;
    }
    ws->expert_fused = 0;
    /* with rms_mlp, layer l's call also starts layer l + 1 (its qkv, row scale and RoPE) */
    const int chain = p->exp_norms_folded && b->rms_mlp != NULL;
    rtv_qkv_next nq = {NULL, NULL, QKV, QKV, c->n_heads + c->n_kv_heads, c->head_dim, kv_row,
                       c->rope_theta, NULL, 0};
    for (int l = 0; l < c->llm_depth; l++) {
        io.kvbase = ws->lq[l];
        io.qkv = rtv_act_at(b, ws->lq[l], (size_t)kv_row * QKV);
        io.next_qkv = NULL;
        if (chain && l + 1 < c->llm_depth) {
            nq.w = p->w.exp[l + 1].qkv;
            nq.after = p->w.exp[l + 1].o;
            nq.after_bytes = (size_t)c->exp_width * c->n_heads * c->head_dim *
                             rtv_dtype_size(b->w_dt);
            nq.y = rtv_act_at(b, ws->lq[l + 1], (size_t)kv_row * QKV);
            io.next_qkv = &nq;
        }
        if ((st = layer(p, s, &p->w.exp[l], &io)))
            return st;
        io.qkv_ready = io.next_qkv != NULL;
    }
    return RTV_OK;
}
