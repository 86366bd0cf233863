/* hal/safety.c — goal filtering: NaN rejection, joint limits, max step, watchdog. */
#include "hal/safety.h"

#include <math.h>
#include <string.h>

#include "runtime/status.h"

static void inc(uint64_t *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }

int rtv_safety_init(rtv_safety *s, int n, const float *lo, const float *hi, float max_step,
                    int watchdog_ms)
{
    memset(s, 0, sizeof(*s));
    if (n < 1 || n > RTV_MAX_MOTORS)
        return rtv_fail(RTV_E_ARG, "safety: %d joints, expected 1..%d", n, RTV_MAX_MOTORS);
    if (!(max_step >= 0) || !isfinite(max_step))
        return rtv_fail(RTV_E_ARG, "safety: max_relative_target %g, expected >= 0", max_step);
    if (watchdog_ms < 0) return rtv_fail(RTV_E_ARG, "safety: watchdog %d ms, expected >= 0", watchdog_ms);
    for (int i = 0; i < n; i++)
        if (!isfinite(lo[i]) || !isfinite(hi[i]) || !(lo[i] < hi[i]))
            return rtv_fail(RTV_E_ARG, "safety: joint %d limits [%g, %g], expected finite lo < hi",
                            i, lo[i], hi[i]);
    s->n = n;
    memcpy(s->lo, lo, (size_t)n * sizeof(float));
    memcpy(s->hi, hi, (size_t)n * sizeof(float));
    s->max_step = max_step;
    s->watchdog_ns = (int64_t)watchdog_ms * 1000000;
    return RTV_OK;
}

int rtv_safety_apply_rt(rtv_safety *s, const float *goal, const float *present, float *out)
{
    int flags = 0;
    for (int i = 0; i < s->n; i++)
        if (!isfinite(goal[i])) {
            inc(&s->n_rejected);
            for (int j = 0; j < s->n; j++) {
                float p = present[j];
                out[j] = p < s->lo[j] ? s->lo[j] : p > s->hi[j] ? s->hi[j] : p;
            }
            return RTV_SAFETY_REJECTED;
        }
    /* Step first, limits last: whatever present is, the output is inside [lo, hi]. */
    for (int i = 0; i < s->n; i++) {
        float g = goal[i];
        if (s->max_step > 0 && isfinite(present[i])) {
            float a = present[i] - s->max_step, b = present[i] + s->max_step;
            if (g < a || g > b) {
                g = g < a ? a : b;
                flags |= RTV_SAFETY_STEP;
                inc(&s->n_step_clamps);
            }
        }
        if (g < s->lo[i] || g > s->hi[i]) {
            g = g < s->lo[i] ? s->lo[i] : s->hi[i];
            flags |= RTV_SAFETY_LIMIT;
            inc(&s->n_limit_clamps);
        }
        out[i] = g;
    }
    return flags;
}

int rtv_safety_watchdog_rt(rtv_safety *s, int64_t now_ns, int64_t last_action_ns)
{
    if (s->watchdog_ns <= 0 || now_ns - last_action_ns <= s->watchdog_ns) return 0;
    inc(&s->n_watchdog);
    return 1;
}
