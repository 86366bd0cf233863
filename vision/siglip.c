/* vision/siglip.c — the SigLIP vision tower and the multimodal projector.
 *
 * images (V, S, S, 3) in [-1, 1] -> patches (V T, 3 p p) -> patch GEMM + bias -> + position
 * embedding (T, Wv) -> vis_depth pre-LN blocks -> post LayerNorm -> projector (D, Wv) + bias,
 * written straight into the prefix rows [0, V T) of the LLM input (no rescaling: pi0.md 1.1).
 * Every GEMM runs over all views at once (M = V T); attention runs per view, because views
 * never attend to each other. Block: x += o(attn(LN1 x)); x += fc2(gelu_tanh(fc1(LN2 x))).
 */
#include <math.h>

#include "runtime/policy_impl.h"

int rtv_siglip_forward(const rtv_policy *p, rtv_stream *s, rtv_vl_ws *ws, int nv)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    const rtv_weights *w = &p->w;
    const int T = rtv_model_tokens_per_view(c), n = nv * T, W = c->vis_width;
    const int pin = 3 * c->patch * c->patch, F = c->vis_mlp, hd = W / c->vis_heads;
    const float eps = c->vis_ln_eps, scale = (float)(1.0 / sqrt((double)hd));

    if ((st = b->patchify(s, ws->patches, ws->img, nv, c->image_size, c->patch)))
        return st;
    if ((st = b->matmul(s, ws->vh, W, ws->patches, pin, w->patch_w, w->patch_b, n, W, pin, 0)))
        return st;
    if ((st = b->add_weight_rows(s, ws->vh, w->pos, n, W, T)))
        return st;
    for (int l = 0; l < c->vis_depth; l++) {
        const rtv_vis_layer *L = &w->vis[l];
        if ((st = b->layernorm(s, ws->vn, ws->vh, L->ln1_w, L->ln1_b, n, W, eps)))
            return st;
        if ((st = b->matmul(s, ws->vqkv, 3 * W, ws->vn, W, L->qkv_w, L->qkv_b, n, 3 * W, W, 0)))
            return st;
        if (b->attention_batch) {
            if ((st = b->attention_batch(s, nv, ws->vatt, W, (size_t)T * W, ws->vqkv, 3 * W,
                                         (size_t)T * 3 * W, rtv_cact_at(b, ws->vqkv, W),
                                         rtv_cact_at(b, ws->vqkv, 2 * W), 3 * W,
                                         (size_t)T * 3 * W, T, T, c->vis_heads, c->vis_heads,
                                         hd, scale)))
                return st;
        } else {
            for (int v = 0; v < nv; v++) {
                const void *q = rtv_act_at(b, ws->vqkv, (size_t)v * T * 3 * W);
                if ((st = b->attention(s, rtv_act_at(b, ws->vatt, (size_t)v * T * W), W, q,
                                       3 * W, rtv_cact_at(b, q, W), rtv_cact_at(b, q, 2 * W),
                                       3 * W, T, NULL, NULL, 0, 0, T, c->vis_heads,
                                       c->vis_heads, hd, scale, 0, 0)))
                    return st;
            }
        }
        if ((st = b->matmul(s, ws->vh, W, ws->vatt, W, L->o_w, L->o_b, n, W, W, RTV_MM_ACCUM)))
            return st;
        if ((st = b->layernorm(s, ws->vn, ws->vh, L->ln2_w, L->ln2_b, n, W, eps)))
            return st;
        if ((st = b->matmul(s, ws->vmlp, F, ws->vn, W, L->fc1_w, L->fc1_b, n, F, W, RTV_MM_GELU)))
            return st;
        if ((st = b->matmul(s, ws->vh, W, ws->vmlp, F, L->fc2_w, L->fc2_b, n, W, F, RTV_MM_ACCUM)))
            return st;
    }
    if ((st = b->layernorm(s, ws->vn, ws->vh, w->post_w, w->post_b, n, W, eps)))
        return st;
    if ((st = b->matmul(s, ws->x, c->llm_width, ws->vn, W, w->proj_w, w->proj_b, n, c->llm_width, W,
                        0)))
        return st;
    return RTV_OK;
}
