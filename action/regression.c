/* action/regression.c — the regression head (ours): an MLP from the pooled VL features and
 * the sensor encoding to the whole chunk (tensor names in docs/checkpoints.md).
 *
 * h0 = in_proj(pooled) + sens  (sens = reg_head.state_proj(state_norm) [+ history term])
 * h1 = gelu_tanh(h0); h2 = gelu_tanh(fc(h1)); out = out_proj(h2) -> (H, A) normalized.
 * gelu(h0) is geglu over [h0; ones] (rgu's second half is 1.0, set once at context creation):
 * exact, and it keeps the op table free of a standalone activation op.
 */
#include "runtime/policy_impl.h"

int rtv_regression_forward(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws,
                           const rtv_features *f)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    const rtv_weights *w = &p->w;
    const int R = c->reg_hidden, D = c->llm_width, HA = c->chunk * c->action_dim;

    if ((st = b->copy2d(s, ws->rgu, R, ws->sens, R, 1, R)))
        return st;
    if ((st = b->matmul(s, ws->rgu, 2 * R, f->pooled, D, w->reg_in_w, w->reg_in_b, 1, R, D,
                        RTV_MM_ACCUM)))
        return st;
    if ((st = b->geglu(s, ws->rh1, ws->rgu, 1, R)))
        return st;
    if ((st = b->matmul(s, ws->rh2, R, ws->rh1, R, w->reg_fc_w, w->reg_fc_b, 1, R, R, RTV_MM_GELU)))
        return st;
    if ((st = b->matmul(s, ws->xt, HA, ws->rh2, R, w->reg_out_w, w->reg_out_b, 1, HA, R, 0)))
        return st;
    return RTV_OK;
}
