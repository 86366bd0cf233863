#include "runtime/chunk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/status.h"

int rtv_chunk_exec_init(rtv_chunk_exec *x, int horizon, int dof, int64_t step_ns,
                        rtv_aggregate agg, float decay, int cap)
{
    memset(x, 0, sizeof(*x));
    if (horizon < 1 || dof < 1 || step_ns <= 0 || cap < 1 || cap > 1024 || !(decay >= 0))
        return rtv_fail(RTV_E_ARG,
                        "chunk executor: horizon %d, dof %d, step %lld ns, cap %d, decay %g: "
                        "expected all > 0 (cap <= 1024, decay >= 0)",
                        horizon, dof, (long long)step_ns, cap, (double)decay);
    if (agg == RTV_AGG_LATEST) cap = 1;
    x->horizon = horizon, x->dof = dof, x->cap = cap, x->step_ns = step_ns;
    x->agg = agg, x->decay = decay;
    x->act = calloc((size_t)cap * (size_t)horizon * (size_t)dof, sizeof(float));
    x->t_obs_ns = calloc((size_t)cap, sizeof(int64_t));
    x->seq = calloc((size_t)cap, sizeof(uint64_t));
    x->next = calloc((size_t)cap, sizeof(int));
    x->used = calloc((size_t)cap, sizeof(int));
    x->wsum = calloc((size_t)dof, sizeof(float));
    if (!x->act || !x->t_obs_ns || !x->seq || !x->next || !x->used || !x->wsum) {
        rtv_chunk_exec_free(x);
        return rtv_fail(RTV_E_NOMEM, "chunk executor: out of memory");
    }
    x->newest = cap - 1;
    return RTV_OK;
}

void rtv_chunk_exec_free(rtv_chunk_exec *x)
{
    if (!x) return;
    free(x->act);
    free(x->t_obs_ns);
    free(x->seq);
    free(x->next);
    free(x->used);
    free(x->wsum);
    memset(x, 0, sizeof(*x));
}

void rtv_chunk_exec_push_rt(rtv_chunk_exec *x, const float *act, int64_t t_obs_ns, uint64_t seq)
{
    int k = (x->newest + 1) % x->cap;
    size_t n = (size_t)x->horizon * (size_t)x->dof;
    memcpy(x->act + (size_t)k * n, act, n * sizeof(float));
    x->t_obs_ns[k] = t_obs_ns;
    x->seq[k] = seq;
    x->next[k] = 0;
    x->used[k] = 0;
    x->newest = k;
    if (x->n < x->cap) x->n++;
    x->n_chunks++;
}

void rtv_chunk_exec_clear_rt(rtv_chunk_exec *x) { x->n = 0; }

/* Action index of ring entry k at now (nearest step; negative clamps to 0). */
static int index_at(const rtv_chunk_exec *x, int k, int64_t now_ns)
{
    int64_t d = now_ns - x->t_obs_ns[k];
    if (d <= 0) return 0;
    int64_t i = (d + x->step_ns / 2) / x->step_ns;
    return i > x->horizon ? x->horizon : (int)i;
}

int rtv_chunk_exec_step_rt(rtv_chunk_exec *x, int64_t now_ns, float *out, rtv_chunk_pick *pick)
{
    memset(pick, 0, sizeof(*pick));
    if (!x->n) {
        x->n_empty++;
        return 0;
    }
    int k = x->newest;
    int i = index_at(x, k, now_ns);
    if (i >= x->horizon) {
        x->n_empty++;
        return 0;
    }
    pick->seq = x->seq[k];
    pick->index = i;
    pick->first = x->used[k] == 0;
    if (i < x->next[k]) {
        x->n_repeat++;
    } else {
        pick->skipped = i - x->next[k];
        x->n_skipped += (uint64_t)pick->skipped;
        x->next[k] = i + 1;
        x->n_consumed++;
    }
    x->used[k]++;
    size_t n = (size_t)x->horizon * (size_t)x->dof;
    if (x->agg == RTV_AGG_LATEST || x->n == 1) {
        memcpy(out, x->act + (size_t)k * n + (size_t)i * (size_t)x->dof, sizeof(float) * (size_t)x->dof);
        pick->n_contrib = 1;
        return 1;
    }
    /* Ensemble, oldest retained chunk first (weight exp(0) = 1), newest last. */
    float wtot = 0;
    for (int d = 0; d < x->dof; d++) x->wsum[d] = 0;
    int w_rank = 0;
    for (int a = x->n - 1; a >= 0; a--) {
        int c = ((x->newest - a) % x->cap + x->cap) % x->cap;
        int ci = index_at(x, c, now_ns);
        if (ci >= x->horizon) continue;
        float w = expf(-x->decay * (float)w_rank++);
        const float *src = x->act + (size_t)c * n + (size_t)ci * (size_t)x->dof;
        for (int d = 0; d < x->dof; d++) x->wsum[d] += w * src[d];
        wtot += w;
        if (c != k) {
            x->used[c]++;
            if (ci >= x->next[c]) x->next[c] = ci + 1;
        }
    }
    for (int d = 0; d < x->dof; d++) out[d] = x->wsum[d] / wtot;
    pick->n_contrib = w_rank;
    return 1;
}
