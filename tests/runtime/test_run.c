/* tests/runtime/test_run.c — the runtime end to end on the embedded default (CPU backend,
 * pi0-tiny with seeded weights, synthetic cameras, the servo-bus simulator on a pty), as
 * `rtvla run` wires it. Each scenario runs a few seconds:
 *   normal      the arm moved, chunks were executed (actions consumed), telemetry complete
 *               (records read back = written, 0 dropped), summary.json and trace written,
 *               torque off at exit, zero allocator calls on the action/control threads after
 *               warm-up (this executable links the alloc_count.c interposer);
 *   vl stall    an injected 1.5 s VL stall with max_age_ms 400 / stale_policy hold: the action
 *               thread holds (telemetry HOLD + STALE records) and recovers (fresh chunks after);
 *   servo fault every reply dropped from t = 1.5 s: the run ends in a safe stop naming the bus;
 *   stop        a stop request holds and ends cleanly; a second request ends with torque off;
 *   config      bad values are refused naming the key.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "hal/robot.h"
#include "hal/sim.h"
#include "runtime/cli.h"
#include "runtime/config.h"
#include "runtime/rt.h"
#include "runtime/run.h"
#include "runtime/status.h"
#include "runtime/telemetry.h"

static char logdir[128];

static int load_cfg(rtv_config *cfg, const char *const *extra, int n_extra)
{
    const char *sets[16];
    char dirset[200];
    snprintf(dirset, sizeof(dirset), "log.dir=%s", logdir);
    int n = 0;
    sets[n++] = dirset;
    for (int i = 0; i < n_extra; i++) sets[n++] = extra[i];
    int st = rtv_config_load(cfg, NULL, sets, n);
    if (st) fprintf(stderr, "config: %s\n", rtv_last_error());
    return st;
}

/* counts action records with the given flags in a run's telemetry */
static void scan_actions(const char *dir, uint64_t *holds, uint64_t *fresh_after_hold,
                         uint64_t *records)
{
    rtv_tel_file f;
    *holds = *fresh_after_hold = *records = 0;
    if (rtv_tel_file_read(&f, dir)) {
        fprintf(stderr, "%s\n", rtv_last_error());
        return;
    }
    *records = f.h.n_records;
    int seen_hold = 0;
    for (uint64_t i = 0; i < f.h.n_records; i++) {
        const rtv_tel_rec *r = &f.recs[i];
        if (strcmp(f.h.stages[r->stage].name, "action")) continue;
        if ((r->flags & RTV_TEL_F_HOLD) && (r->flags & RTV_TEL_F_STALE)) {
            (*holds)++;
            seen_hold = 1;
        } else if (seen_hold && (r->flags & RTV_TEL_F_FRESH) && !(r->flags & RTV_TEL_F_HOLD)) {
            (*fresh_after_hold)++;
        }
    }
    rtv_tel_file_free(&f);
}

static void test_normal(void)
{
    rtv_config cfg;
    CHECK(load_cfg(&cfg, NULL, 0) == RTV_OK);
    rtv_run_opts o = { .task = "pick up the red cube", .duration_s = 4, .status_line = 0, .quiet = 1 };
    rtv_run_result res;
    int st = rtv_run_main(&cfg, &o, &res);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    CHECK_MSG(res.end == RTV_RUN_END_DURATION, "end %d: %s", res.end, res.end_reason);
    printf("normal: %llu encodes, %llu action cycles, %llu chunks, %llu consumed, %llu skipped, "
           "move %.1f, %llu records, sched %s / %s, rt allocs %llu\n",
           (unsigned long long)res.vl_encodes, (unsigned long long)res.act_cycles,
           (unsigned long long)res.act_chunks, (unsigned long long)res.actions_consumed,
           (unsigned long long)res.actions_skipped, (double)res.max_move,
           (unsigned long long)res.tel_records, res.sched_action, res.sched_control,
           (unsigned long long)res.rt_allocs);
    CHECK(res.vl_encodes >= 5);
    CHECK(res.act_chunks >= 10);
    CHECK(res.chunks_received >= 10);
    CHECK(res.actions_consumed >= 50);
    CHECK_MSG(res.max_move > 1.0f, "the arm moved %.3f units", (double)res.max_move);
    CHECK(res.tel_dropped == 0 && res.tel_records > 200);
    CHECK(res.torque_off_at_exit == 1);
    CHECK(res.rt_alloc_counted == 1);
    CHECK_MSG(res.rt_allocs == 0, "%llu allocator calls on the action/control threads after warm-up",
              (unsigned long long)res.rt_allocs);

    /* the run folder: telemetry read back equals what was written, summary, trace */
    rtv_tel_file f;
    CHECK(rtv_tel_file_read(&f, res.run_dir) == RTV_OK);
    CHECK(f.h.n_records == res.tel_records && f.h.n_dropped == 0 && f.h.n_threads == 3);
    rtv_tel_file_free(&f);
    char p[700];
    snprintf(p, sizeof(p), "%s/summary.json", res.run_dir);
    FILE *jf = fopen(p, "r");
    static char buf[1 << 16];
    size_t n = jf ? fread(buf, 1, sizeof(buf) - 1, jf) : 0;
    if (jf) fclose(jf);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    CHECK(j != NULL);
    cJSON *run = cJSON_GetObjectItem(j, "run");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(run, "sched_action")));
    CHECK(cJSON_GetObjectItem(j, "records_dropped") &&
          cJSON_GetObjectItem(j, "records_dropped")->valuedouble == 0);
    cJSON *act = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stages"), "action");
    CHECK(act && cJSON_GetObjectItem(act, "p99_ms") && cJSON_GetObjectItem(act, "uses"));
    cJSON_Delete(j);
    char *targv[] = { "trace", res.run_dir, NULL };
    CHECK(rtv_cmd_trace(2, targv) == 0);
    snprintf(p, sizeof(p), "%s/trace.json", res.run_dir);
    CHECK(access(p, R_OK) == 0);
}

static void stall_hook(rtv_run *run, int64_t t_ms, void *user)
{
    int *done = user;
    if (t_ms >= 1500 && !*done) {
        rtv_run_inject_vl_stall(run, 1500);
        *done = 1;
    }
}

static void test_vl_stall(void)
{
    rtv_config cfg;
    const char *sets[] = { "runtime.max_age_ms=400", "runtime.stale_policy=hold" };
    CHECK(load_cfg(&cfg, sets, 2) == RTV_OK);
    int done = 0;
    rtv_run_opts o = { .task = "pick", .duration_s = 4.5, .status_line = 0, .quiet = 1,
                       .on_tick = stall_hook, .user = &done };
    rtv_run_result res;
    CHECK(rtv_run_main(&cfg, &o, &res) == RTV_OK);
    CHECK(res.end == RTV_RUN_END_DURATION);
    uint64_t holds, fresh_after, recs;
    scan_actions(res.run_dir, &holds, &fresh_after, &recs);
    printf("vl stall: %llu stale holds, %llu fresh chunks after the first hold, %llu hold ticks\n",
           (unsigned long long)holds, (unsigned long long)fresh_after,
           (unsigned long long)res.ctrl_holds);
    CHECK(done == 1);
    CHECK(holds >= 5 && res.act_holds == holds);
    CHECK(fresh_after >= 3); /* recovery */
    CHECK(res.ctrl_holds > 0);
    CHECK(res.tel_dropped == 0);
}

static void fault_hook(rtv_run *run, int64_t t_ms, void *user)
{
    int *done = user;
    if (t_ms >= 1500 && !*done) {
        rtv_sim *sim = rtv_robot_sim(rtv_run_robot(run));
        rtv_sim_fault f = { .kind = RTV_SIM_DROP, .id = 0, .count = -1 };
        *done = sim && rtv_sim_inject(sim, &f) == RTV_OK ? 1 : -1;
    }
}

static void test_servo_fault(void)
{
    rtv_config cfg;
    CHECK(load_cfg(&cfg, NULL, 0) == RTV_OK);
    int done = 0;
    rtv_run_opts o = { .task = "pick", .duration_s = 6, .status_line = 0, .quiet = 1,
                       .on_tick = fault_hook, .user = &done };
    rtv_run_result res;
    CHECK(rtv_run_main(&cfg, &o, &res) == RTV_OK);
    printf("servo fault: end %d after %.2f s: %s\n", res.end, res.seconds, res.end_reason);
    CHECK(done == 1);
    CHECK(res.end == RTV_RUN_END_FAULT);
    CHECK(strstr(res.end_reason, "servo bus fault") != NULL);
    CHECK(res.seconds < 5); /* ended well before the 6 s duration (fault at 1.5 s) */
    CHECK(res.tel_dropped == 0);
}

static void stop_hook(rtv_run *run, int64_t t_ms, void *user)
{
    int *level = user;
    if (t_ms >= 1500) rtv_run_request_stop(*level);
}

static void test_stop(int level)
{
    rtv_config cfg;
    CHECK(load_cfg(&cfg, NULL, 0) == RTV_OK);
    rtv_run_opts o = { .task = "pick", .duration_s = 10, .status_line = 0, .quiet = 1,
                       .on_tick = stop_hook, .user = &level };
    rtv_run_result res;
    CHECK(rtv_run_main(&cfg, &o, &res) == RTV_OK);
    CHECK(res.end == (level == 1 ? RTV_RUN_END_REQUEST : RTV_RUN_END_HARD));
    CHECK(res.seconds < 3);
    CHECK(res.torque_off_at_exit == 1);
}

static void test_config_errors(void)
{
    rtv_config cfg;
    const char *bad1[] = { "runtime.max_reuse=0" };
    CHECK(load_cfg(&cfg, bad1, 1) != RTV_OK);
    CHECK(strstr(rtv_last_error(), "runtime.max_reuse") != NULL);
    const char *bad2[] = { "runtime.stale_policy=sometimes" };
    CHECK(load_cfg(&cfg, bad2, 1) != RTV_OK);
    CHECK(strstr(rtv_last_error(), "runtime.stale_policy") != NULL);
    /* the CLI: usage errors exit 2 */
    char *a1[] = { "run", "--duration", "1", NULL };
    CHECK(rtv_cmd_run(3, a1) == 2); /* no task */
    char *a2[] = { "run", "--task", "x", "--set", "runtime.action_hz=abc", NULL };
    CHECK(rtv_cmd_run(5, a2) == 2);
    /* a run without a task is refused by the library too */
    CHECK(load_cfg(&cfg, NULL, 0) == RTV_OK);
    rtv_run_opts o = { .task = "" };
    rtv_run_result res;
    CHECK(rtv_run_main(&cfg, &o, &res) == RTV_E_ARG);
}

int main(int argc, char **argv)
{
    snprintf(logdir, sizeof(logdir), "/tmp/rtv_test_run_XXXXXX");
    if (!mkdtemp(logdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_config_errors();
    test_normal();
    test_vl_stall();
    test_servo_fault();
    test_stop(1);
    test_stop(2);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", logdir);
    if (!getenv("RTV_KEEP_RUNS") && system(cmd)) fprintf(stderr, "could not remove %s\n", logdir);
    return check_report(argv[0]);
}
