/* tests/runtime/test_chunk.c — chunk execution: time-indexed picks, skipping, expiry,
 * latest vs ensemble aggregation against a hand-computed weighted average. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "runtime/chunk.h"
#include "runtime/status.h"

#define H 10
#define DOF 2
static const int64_t STEP = 20000000; /* 20 ms: 50 Hz control */

/* chunk whose action i, joint d = base + i + 0.1 d */
static void make(float *a, float base)
{
    for (int i = 0; i < H; i++)
        for (int d = 0; d < DOF; d++) a[i * DOF + d] = base + (float)i + 0.1f * (float)d;
}

static void test_latest(void)
{
    rtv_chunk_exec x;
    float a[H * DOF], out[DOF] = { -1, -1 };
    rtv_chunk_pick pk;
    CHECK(rtv_chunk_exec_init(&x, 0, DOF, STEP, RTV_AGG_LATEST, 0, 4) == RTV_E_ARG);
    CHECK(rtv_chunk_exec_init(&x, H, DOF, STEP, RTV_AGG_LATEST, 0, 4) == RTV_OK);
    CHECK(rtv_chunk_exec_step_rt(&x, 0, out, &pk) == 0 && out[0] == -1); /* no chunk yet */

    make(a, 100);
    rtv_chunk_exec_push_rt(&x, a, 1000 * STEP, 1);
    /* delivered 3 steps after the observation: indices 0..2 are skipped */
    CHECK(rtv_chunk_exec_step_rt(&x, 1003 * STEP, out, &pk) == 1);
    CHECK(pk.index == 3 && pk.skipped == 3 && pk.first && pk.seq == 1 && pk.n_contrib == 1);
    CHECK(out[0] == 103.0f && fabsf(out[1] - 103.1f) < 1e-5f);
    /* tick jitter: 4.4 steps rounds to 4, 5.6 to 6 (5 skipped) */
    CHECK(rtv_chunk_exec_step_rt(&x, 1004 * STEP + 8000000, out, &pk) == 1 && pk.index == 4);
    CHECK(pk.skipped == 0 && !pk.first);
    CHECK(rtv_chunk_exec_step_rt(&x, 1005 * STEP + 12000000, out, &pk) == 1 && pk.index == 6);
    CHECK(pk.skipped == 1 && out[0] == 106.0f);
    /* the same index again: a repeat, not a new consumed action */
    CHECK(rtv_chunk_exec_step_rt(&x, 1006 * STEP, out, &pk) == 1 && pk.index == 6);
    CHECK(x.n_consumed == 3 && x.n_skipped == 4 && x.n_repeat == 1);
    /* observation time in the future (clock skew): index 0 */
    /* past the end: nothing */
    CHECK(rtv_chunk_exec_step_rt(&x, 1010 * STEP, out, &pk) == 0);
    CHECK(x.n_empty == 2);

    /* a newer chunk replaces the old one at once */
    make(a, 200);
    rtv_chunk_exec_push_rt(&x, a, 1008 * STEP, 2);
    CHECK(rtv_chunk_exec_step_rt(&x, 1009 * STEP, out, &pk) == 1);
    CHECK(pk.seq == 2 && pk.index == 1 && out[0] == 201.0f && pk.skipped == 1);
    make(a, 300);
    rtv_chunk_exec_push_rt(&x, a, 1020 * STEP, 3);
    CHECK(rtv_chunk_exec_step_rt(&x, 1019 * STEP, out, &pk) == 1 && pk.index == 0);
    CHECK(out[0] == 300.0f);
    rtv_chunk_exec_clear_rt(&x);
    CHECK(rtv_chunk_exec_step_rt(&x, 1021 * STEP, out, &pk) == 0);
    rtv_chunk_exec_free(&x);
    rtv_chunk_exec_free(&x); /* a freed (zeroed) executor frees again harmlessly */
}

static void test_ensemble(void)
{
    rtv_chunk_exec x;
    float a[H * DOF], out[DOF];
    rtv_chunk_pick pk;
    const float m = 0.5f;
    CHECK(rtv_chunk_exec_init(&x, H, DOF, STEP, RTV_AGG_ENSEMBLE, m, 3) == RTV_OK);
    make(a, 0);
    rtv_chunk_exec_push_rt(&x, a, 0, 1);
    make(a, 100);
    rtv_chunk_exec_push_rt(&x, a, 4 * STEP, 2);
    make(a, 1000);
    rtv_chunk_exec_push_rt(&x, a, 6 * STEP, 3);
    /* at 7 steps: chunk1 idx 7 (7), chunk2 idx 3 (103), chunk3 idx 1 (1001); oldest weight 1 */
    CHECK(rtv_chunk_exec_step_rt(&x, 7 * STEP, out, &pk) == 1);
    float w0 = 1, w1 = expf(-m), w2 = expf(-2 * m);
    float ref = (w0 * 7 + w1 * 103 + w2 * 1001) / (w0 + w1 + w2);
    CHECK_MSG(fabsf(out[0] - ref) < 1e-3f, "got %g expected %g", (double)out[0], (double)ref);
    CHECK(fabsf(out[1] - (ref + 0.1f)) < 1e-3f);
    CHECK(pk.n_contrib == 3 && pk.seq == 3 && pk.index == 1);
    /* at 11 steps chunk1 (idx 11 >= H) drops out: chunk2 idx 7, chunk3 idx 5 */
    CHECK(rtv_chunk_exec_step_rt(&x, 11 * STEP, out, &pk) == 1);
    ref = (1 * 107.0f + w1 * 1005.0f) / (1 + w1);
    CHECK_MSG(fabsf(out[0] - ref) < 1e-3f, "got %g expected %g", (double)out[0], (double)ref);
    CHECK(pk.n_contrib == 2);
    /* a 4th chunk pushes the oldest out of the 3-chunk ring */
    make(a, 5000);
    rtv_chunk_exec_push_rt(&x, a, 12 * STEP, 4);
    CHECK(x.n == 3);
    CHECK(rtv_chunk_exec_step_rt(&x, 12 * STEP, out, &pk) == 1 && pk.n_contrib == 3);
    ref = (1 * 108.0f + w1 * 1006.0f + w2 * 5000.0f) / (1 + w1 + w2);
    CHECK_MSG(fabsf(out[0] - ref) < 1e-2f, "got %g expected %g", (double)out[0], (double)ref);
    /* decay 0: the plain mean */
    rtv_chunk_exec_free(&x);
    CHECK(rtv_chunk_exec_init(&x, H, DOF, STEP, RTV_AGG_ENSEMBLE, 0, 8) == RTV_OK);
    make(a, 10);
    rtv_chunk_exec_push_rt(&x, a, 0, 1);
    make(a, 20);
    rtv_chunk_exec_push_rt(&x, a, 0, 2);
    CHECK(rtv_chunk_exec_step_rt(&x, 2 * STEP, out, &pk) == 1 && out[0] == 17.0f);
    rtv_chunk_exec_free(&x);
}

int main(int argc, char **argv)
{
    test_latest();
    test_ensemble();
    return check_report(argv[0]);
}
