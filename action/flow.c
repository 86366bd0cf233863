/* action/flow.c — pi0's flow-matching head: N Euler steps of the action expert from seeded
 * Gaussian noise, attending to the cached prefix (pi0.md 1.4-2).
 *
 * Convention: t = 1 is noise, t = 0 is data; t_k = 1 - k / steps (rounded to fp32, as openpi),
 * dt = -1 / steps, x += dt v. Per step: a = action_in_proj(x_t) (H, We);
 * h = mlp_out(silu(mlp_in_a a + time_bias[k])) where time_bias[k] folds the time half of
 * action_time_mlp_in with posemb(t_k) at load (runtime/weights.c); suffix = [state token; h];
 * the state token runs through the expert once per cycle, with the first step's action rows
 * (its K/V do not depend on t; the attention's limit rule keeps it from seeing them).
 * v = action_out_proj(final_norm(expert(h))) on the H action rows.
 *
 * Noise (bit-exact with tests/reference/pi0_ref.py): splitmix64 with state = seed; for element
 * i of the row-major (H, A) noise, a = next(), b = next(), u1 = ((a >> 11) + 1) 2^-53,
 * u2 = (b >> 11) 2^-53, z = sqrt(-2 ln u1) cos(2 pi u2) in double, then (float)z.
 */
#include <math.h>

#include "runtime/policy_impl.h"

double rtv_flow_time(int k, int steps)
{
    return (double)(float)(1.0 - (double)k / steps);
}

void rtv_flow_posemb(double t, int dim, double *out)
{
    const int half = dim / 2;
    for (int i = 0; i < half; i++) {
        double frac = half > 1 ? (double)i / (half - 1) : 0.0;
        double period = 4e-3 * pow(4.0 / 4e-3, frac);
        double arg = (2.0 * M_PI / period) * t;
        out[i] = sin(arg);
        out[half + i] = cos(arg);
    }
}

static uint64_t splitmix_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void rtv_flow_noise(uint64_t seed, float *out, int n)
{
    uint64_t st = seed;
    for (int i = 0; i < n; i++) {
        uint64_t a = splitmix_next(&st), b = splitmix_next(&st);
        double u1 = (double)((a >> 11) + 1) * 0x1.0p-53;
        double u2 = (double)(b >> 11) * 0x1.0p-53;
        out[i] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
    }
}

int rtv_flow_sample(const rtv_policy *p, rtv_stream *s, rtv_act_ws *ws, const rtv_features *f)
{
    const rtv_backend *b = p->b;
    int st;
    const rtv_model_cfg *c = &p->cfg;
    const rtv_weights *w = &p->w;
    const int H = c->chunk, A = c->action_dim, We = c->exp_width;
    void *act_rows = rtv_act_at(b, ws->sx, (size_t)We);   /* suffix rows 1 .. H */
    void *act_norm = rtv_act_at(b, ws->sxn, (size_t)We);
    const float dt = (float)(-1.0 / c->steps);

    /* the prefix K/V in front of the suffix rows (see rtv_act_ws.lq) */
    const int KV = c->n_kv_heads * c->head_dim, Q = c->n_heads * c->head_dim;
    const int QKV = rtv_model_qkv_dim(c);
    for (int l = 0; l < c->llm_depth; l++) /* K|V rows (rtv_features.k): one copy per layer */
        if ((st = b->copy2d(s, rtv_act_at(b, ws->lq[l], (size_t)Q), QKV, f->k[l], 2 * KV,
                            f->n_prefix, 2 * KV)))
            return st;
    if ((st = b->copy2d(s, ws->sx, We, ws->sens, We, 1, We)))
        return st;
    for (int k = 0; k < c->steps; k++) {
        if ((st = b->matmul(s, ws->aemb, We, ws->xt, A, w->act_in_w, w->act_in_b, H, We, A, 0)))
            return st;
        if ((st = b->matmul(s, act_norm, We, ws->aemb, We, w->mlp_in_a,
                            rtv_w_at(b, w->time_bias, (size_t)k * We), H, We, We, RTV_MM_SILU)))
            return st;
        if ((st = b->matmul(s, act_rows, We, act_norm, We, w->mlp_out_w, w->mlp_out_b, H, We, We,
                            0)))
            return st;
        /* step 0 also runs the state token (row 0), whose K/V the later steps reuse */
        if ((st = k == 0 ? rtv_gemma_expert(p, s, ws, f, 0, 1 + H)
                         : rtv_gemma_expert(p, s, ws, f, 1, H)))
            return st;
        if ((st = b->rmsnorm(s, act_norm, act_rows, w->exp_norm, H, We, c->rms_eps)))
            return st;
        if ((st = b->matmul(s, ws->v, A, act_norm, We, w->act_out_w, w->act_out_b, H, A, We, 0)))
            return st;
        if ((st = b->axpy(s, ws->xt, ws->v, dt, (size_t)H * A)))
            return st;
    }
    return RTV_OK;
}
