/* action/sensor.c — the sensor encoding: normalized robot state (and an optional history of
 * joint positions, velocities and loads) projected to the head's width.
 *
 * flow:       sens = state_proj(state_norm)            (We): pi0's state token
 * regression: sens = reg_head.state_proj(state_norm)   (R):  the state term of h0
 * history > 0 adds sensor_history_proj(hist) (head width) to either. hist is the (history, 3,
 * robot_dof) window, oldest sample first, scaled per dimension (docs/checkpoints.md):
 * positions normalized exactly as the state; velocities (robot units / s) multiplied by the
 * state normalization's slope (1 / (std + eps), or 2 / (q99 - q01 + eps) for quantiles);
 * loads passed as given (fraction of the servo's maximum torque, in [-1, 1]).
 */
#include "runtime/policy_impl.h"

int rtv_sensor_encode(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    const rtv_weights *w = &p->w;
    const int A = c->action_dim, HW = rtv_weights_head_width(c);
    const int flow = c->head == RTV_HEAD_FLOW;

    if ((st = b->matmul(s, ws->sens, HW, ws->state, A, flow ? w->state_w : w->reg_state_w,
                        flow ? w->state_b : w->reg_state_b, 1, HW, A, 0)))
        return st;
    if (c->history > 0) {
        const int NH = 3 * c->history * c->robot_dof;
        if ((st = b->matmul(s, ws->sens, HW, ws->hist, NH, w->hist_w, w->hist_b, 1, HW, NH,
                            RTV_MM_ACCUM)))
            return st;
    }
    return RTV_OK;
}

void rtv_sensor_scale_history(const rtv_policy *p, const float *raw, float *out)
{
    const rtv_model_cfg *c = &p->cfg;
    const rtv_norm_stats *ns = &p->stats;
    const int dof = c->robot_dof;
    float pos[RTV_MAX_DOF];
    for (int h = 0; h < c->history; h++) {
        const float *r = raw + (size_t)h * 3 * dof;
        float *o = out + (size_t)h * 3 * dof;
        rtv_normstats_state(ns, r, pos, c->action_dim);
        for (int d = 0; d < dof; d++) {
            float slope = 1.0f;
            if (ns->mode == RTV_NORM_MEAN_STD)
                slope = 1.0f / (ns->state_std[d] + ns->eps);
            else if (ns->mode == RTV_NORM_QUANTILE)
                slope = 2.0f / (ns->state_q99[d] - ns->state_q01[d] + ns->eps);
            o[d] = pos[d];
            o[dof + d] = r[dof + d] * slope;
            o[2 * dof + d] = r[2 * dof + d];
        }
    }
}
