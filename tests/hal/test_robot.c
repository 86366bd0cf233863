/* The robot layer on the simulated bus, as the runtime uses it: open from a config (SO-101
 * and Koch), state in LeRobot units, goals through the safety filter (limits, max step, NaN),
 * a failing servo, calibration written to the servos, torque policy, and `rtvla check`'s
 * robot part. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "hal/robot.h"
#include "hal/sim.h"
#include "runtime/config.h"
#include "runtime/status.h"

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static void config(rtv_config *cfg, const char *type)
{
    rtv_config_defaults(cfg);
    char set[64];
    snprintf(set, sizeof(set), "robot.type=%s", type);
    CHECK(rtv_config_set(cfg, set) == RTV_OK);
    CHECK(rtv_config_set(cfg, "robot.sim.noise=0") == RTV_OK);
    CHECK(rtv_config_set(cfg, "robot.sim.tau_ms=10") == RTV_OK);
}

/* The goal register of servo id once the simulator has handled every packet sent so far (a
 * sync write has no reply: a read behind it is the barrier). */
static int sim_goal(rtv_robot *r, int id)
{
    rtv_sim_servo s;
    uint32_t u;
    rtv_bus_read_u(rtv_robot_bus(r), id, 5 /* ID, on both families' tables: any register */, 1, &u);
    if (rtv_sim_servo_get(rtv_robot_sim(r), id, &s)) return -99999;
    return s.goal_ticks;
}

static void test_so101(FILE *log)
{
    rtv_config cfg;
    config(&cfg, "so101");
    rtv_robot_opts o;
    rtv_robot_opts_default(&o);
    o.log = log;
    rtv_robot *r = NULL;
    CHECK_MSG(rtv_robot_open_opts(&r, &cfg, &o) == RTV_OK, "%s", rtv_last_error());
    if (!r) return;
    CHECK(rtv_robot_n_joints(r) == 6 && !strcmp(rtv_robot_joint_name(r, 5), "gripper"));
    CHECK(rtv_robot_joint_mode(r, 0) == RTV_NORM_DEGREES && rtv_robot_joint_mode(r, 5) == RTV_NORM_RANGE_0_100);
    rtv_sim_servo sv;
    CHECK(rtv_sim_servo_get(rtv_robot_sim(r), 1, &sv) == RTV_OK && sv.torque == 1 && sv.goal_ticks == 2048);
    rtv_robot_state st;
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK && st.n == 6 && !st.stale);
    /* 2048 ticks: centre of 1024..3072 = 0 deg; wrist_roll centre 2047.5; gripper at its min = 0 % */
    CHECK(fabsf(st.pos[0]) < 1e-4f && fabsf(st.pos[4] - 0.5f * 360.0f / 4095.0f) < 1e-4f && fabsf(st.pos[5]) < 1e-4f);
    CHECK(st.pos_ticks[2] == 2048 && st.servo_err[2] == 0);
    /* +10 deg on shoulder_pan, 30 % gripper */
    float goal[6];
    memcpy(goal, st.pos, sizeof(goal));
    goal[0] = 10.0f;
    goal[5] = 30.0f;
    int flags = -1;
    CHECK(rtv_robot_write_rt(r, goal, &flags) == RTV_OK && flags == 0);
    CHECK(sim_goal(r, 1) == (int)(10.0 * 4095 / 360 + 2048)); /* 2161 */
    CHECK(sim_goal(r, 6) == (int)(0.3 * 1024 + 2048));       /* 2355 */
    sleep_ms(150);
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK);
    CHECK_MSG(fabsf(st.pos[0] - 10.0f) < 0.2f && fabsf(st.pos[5] - 30.0f) < 0.3f, "pos %g, gripper %g", st.pos[0], st.pos[5]);
    CHECK(st.vel[0] >= 0 && st.t_ns > 0);
    /* beyond the joint limit (1024..3072 = +-90 deg): clamped, never sent */
    goal[0] = 170.0f;
    goal[5] = 1e6f;
    CHECK(rtv_robot_write_rt(r, goal, &flags) == RTV_OK && (flags & RTV_SAFETY_LIMIT));
    CHECK(sim_goal(r, 1) <= 3072 && sim_goal(r, 1) >= 3070 && sim_goal(r, 6) == 3072);
    /* max_relative_target: 5 deg per tick from the last read */
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK);
    rtv_robot_safety(r)->max_step = 5.0f;
    memcpy(goal, st.pos, sizeof(goal));
    goal[1] = st.pos[1] - 40.0f;
    CHECK(rtv_robot_write_rt(r, goal, &flags) == RTV_OK && (flags & RTV_SAFETY_STEP));
    int expect = (int)((st.pos[1] - 5.0f) * 4095.0f / 360.0f + 2048.0f);
    CHECK_MSG(abs(sim_goal(r, 2) - expect) <= 1, "goal %d, expected %d", sim_goal(r, 2), expect);
    rtv_robot_safety(r)->max_step = 0;
    /* NaN: whole vector rejected, hold */
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK);
    goal[3] = NAN;
    CHECK(rtv_robot_write_rt(r, goal, &flags) == RTV_OK && flags == RTV_SAFETY_REJECTED);
    CHECK(abs(sim_goal(r, 2) - st.pos_ticks[1]) <= 1);
    /* a servo stops answering: the read fails after the budget, state marked stale */
    /* 20 ms: long enough that a loaded CI machine does not time out a servo that answers */
    rtv_bus_set_timeout_us(rtv_robot_bus(r), 20000);
    rtv_sim_fault f = { .kind = RTV_SIM_DROP, .id = 3, .count = -1 };
    CHECK(rtv_sim_inject(rtv_robot_sim(r), &f) == RTV_OK);
    rtv_robot_state st2;
    CHECK(rtv_robot_read_rt(r, &st2) == RTV_E_TIMEOUT && st2.stale == 1 && st2.pos[0] == st.pos[0]);
    CHECK_MSG(strstr(rtv_last_error(), "servo 3") != NULL, "error: %s", rtv_last_error());
    rtv_sim_clear_faults(rtv_robot_sim(r));
    CHECK(rtv_robot_read_rt(r, &st2) == RTV_OK && st2.stale == 0);
    /* hold policy keeps torque; off policy releases it */
    cfg.robot.torque_on_exit = RTV_TORQUE_OFF;
    CHECK(rtv_robot_safe_stop(r) == RTV_OK);
    CHECK(rtv_sim_servo_get(rtv_robot_sim(r), 4, &sv) == RTV_OK && sv.torque == 0);
    CHECK(rtv_robot_torque(r, 1) == RTV_OK);
    CHECK(rtv_sim_servo_get(rtv_robot_sim(r), 4, &sv) == RTV_OK && sv.torque == 1);
    CHECK(rtv_robot_close(r) == RTV_OK);
}

static void test_calibration_sync(FILE *log, const char *dir)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/so101.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"shoulder_pan\": {\"id\": 1, \"drive_mode\": 0, \"homing_offset\": 100, \"range_min\": 900, \"range_max\": 3000},"
               "\"shoulder_lift\": {\"id\": 2, \"drive_mode\": 0, \"homing_offset\": -50, \"range_min\": 900, \"range_max\": 3000},"
               "\"elbow_flex\": {\"id\": 3, \"drive_mode\": 0, \"homing_offset\": 0, \"range_min\": 900, \"range_max\": 3000},"
               "\"wrist_flex\": {\"id\": 4, \"drive_mode\": 0, \"homing_offset\": 0, \"range_min\": 900, \"range_max\": 3000},"
               "\"wrist_roll\": {\"id\": 5, \"drive_mode\": 0, \"homing_offset\": 0, \"range_min\": 0, \"range_max\": 4095},"
               "\"gripper\": {\"id\": 6, \"drive_mode\": 0, \"homing_offset\": 0, \"range_min\": 2000, \"range_max\": 3000}}");
    fclose(f);
    rtv_config cfg;
    config(&cfg, "so101");
    snprintf(cfg.robot.calibration, sizeof(cfg.robot.calibration), "%s", path);
    rtv_robot_opts o;
    rtv_robot_opts_default(&o);
    o.log = log;
    o.body_mode = RTV_NORM_RANGE_M100_100; /* an older SO dataset */
    rtv_robot *r = NULL;
    CHECK_MSG(rtv_robot_open_opts(&r, &cfg, &o) == RTV_OK, "%s", rtv_last_error());
    if (!r) return;
    rtv_sim_servo sv;
    CHECK(rtv_sim_servo_get(rtv_robot_sim(r), 1, &sv) == RTV_OK && sv.offset == 100);
    CHECK(rtv_sim_servo_get(rtv_robot_sim(r), 2, &sv) == RTV_OK && sv.offset == -50);
    rtv_robot_state st;
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK);
    /* present = actual - offset: 2048 - 100 = 1948 -> (1948 - 900)/2100*200 - 100 */
    CHECK(st.pos_ticks[0] == 1948 && fabsf(st.pos[0] - (float)((1948 - 900) / 2100.0 * 200 - 100)) < 1e-3f);
    float goal[6];
    memcpy(goal, st.pos, sizeof(goal));
    goal[0] = -150.0f; /* outside -100..100 */
    int flags;
    CHECK(rtv_robot_write_rt(r, goal, &flags) == RTV_OK && (flags & RTV_SAFETY_LIMIT) && sim_goal(r, 1) == 900);
    CHECK(rtv_robot_close(r) == RTV_OK);
    /* calibration whose ids do not match robot.ids */
    config(&cfg, "so101");
    snprintf(cfg.robot.calibration, sizeof(cfg.robot.calibration), "%s", path);
    CHECK(rtv_config_set(&cfg, "robot.ids=1,2,3,4,5,7") == RTV_OK);
    CHECK(rtv_robot_open_opts(&r, &cfg, &o) == RTV_E_INPUT && !r);
    CHECK_MSG(strstr(rtv_last_error(), "gripper") && strstr(rtv_last_error(), "robot.ids[5] is 7"), "%s", rtv_last_error());
}

/* A bus with mixed firmware is refused, naming both servos (robot opened on a hand-started
 * simulator through its pty path, as a real port would be). */
static void test_mixed_firmware(FILE *log, const char *dir)
{
    rtv_sim_opts so;
    rtv_sim_opts_default(&so, RTV_BUS_FEETECH, 6);
    rtv_sim *sim = NULL;
    CHECK(rtv_sim_start(&sim, &so) == RTV_OK);
    if (!sim) return;
    rtv_bus *bus = NULL;
    CHECK(rtv_bus_open(&bus, rtv_sim_path(sim), 1000000, RTV_BUS_FEETECH, 2) == RTV_OK);
    CHECK(bus && rtv_bus_write_u(bus, 4, 1 /* Firmware_Minor_Version */, 1, 9) == RTV_OK);
    rtv_bus_close(bus);
    rtv_config cfg;
    config(&cfg, "so101");
    snprintf(cfg.robot.port, sizeof(cfg.robot.port), "%s", rtv_sim_path(sim));
    snprintf(cfg.robot.calibration, sizeof(cfg.robot.calibration), "%s/so101.json", dir);
    rtv_robot_opts o;
    rtv_robot_opts_default(&o);
    o.log = log;
    rtv_robot *r = NULL;
    CHECK(rtv_robot_open_opts(&r, &cfg, &o) == RTV_E_DEVICE && !r);
    CHECK_MSG(strstr(rtv_last_error(), "servo 4 (wrist_flex) 3.9") && strstr(rtv_last_error(), "3.10"), "%s", rtv_last_error());
    rtv_sim_stop(sim);
}

static void test_koch(FILE *log)
{
    rtv_config cfg;
    config(&cfg, "koch");
    rtv_robot_opts o;
    rtv_robot_opts_default(&o);
    o.log = log;
    rtv_robot *r = NULL;
    CHECK_MSG(rtv_robot_open_opts(&r, &cfg, &o) == RTV_OK, "%s", rtv_last_error());
    if (!r) return;
    CHECK(rtv_robot_joint_mode(r, 0) == RTV_NORM_RANGE_M100_100);
    rtv_robot_state st;
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK && fabsf(st.pos[0]) < 1e-4f);
    float goal[6];
    memcpy(goal, st.pos, sizeof(goal));
    goal[2] = 50.0f; /* elbow: 1024 + 0.75 * 2048 */
    CHECK(rtv_robot_write_rt(r, goal, NULL) == RTV_OK && sim_goal(r, 3) == 2560);
    sleep_ms(300); /* 512 ticks at the 3140 ticks/s cap: 163 ms, then the tail of tau */
    CHECK(rtv_robot_read_rt(r, &st) == RTV_OK);
    CHECK_MSG(fabsf(st.pos[2] - 50.0f) < 0.5f, "elbow at %g (%d ticks)", st.pos[2], st.pos_ticks[2]);
    CHECK(rtv_robot_close(r) == RTV_OK);
}

static void test_check(const char *dir)
{
    char out_path[256];
    snprintf(out_path, sizeof(out_path), "%s/check.txt", dir);
    rtv_config cfg;
    config(&cfg, "so101");
    FILE *f = fopen(out_path, "w+");
    CHECK(rtv_robot_check(&cfg, f) == 0);
    char text[8192] = "";
    rewind(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    CHECK_MSG(strstr(text, "[ok]   servo 1 (shoulder_pan): model 777 (sts3215), position 2048 ticks") &&
              strstr(text, "servo 6 (gripper)") && !strstr(text, "FAIL"), "%s", text);
    /* a port that is not there, with a calibration that is */
    config(&cfg, "so101");
    snprintf(cfg.robot.port, sizeof(cfg.robot.port), "/dev/ttyRTVLA_absent");
    snprintf(cfg.robot.calibration, sizeof(cfg.robot.calibration), "%s/so101.json", dir);
    f = fopen(out_path, "w+");
    CHECK(rtv_robot_check(&cfg, f) == 1);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = 0;
    fclose(f);
    CHECK_MSG(strstr(text, "[FAIL] port /dev/ttyRTVLA_absent") && strstr(text, "fix:") &&
              strstr(text, "[ok]   calibration"), "%s", text);
}

int main(int argc, char **argv)
{
    (void)argc;
    char dir[] = "/tmp/rtv_robot_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char log_path[64];
    snprintf(log_path, sizeof(log_path), "%s/log.txt", dir);
    FILE *log = fopen(log_path, "w+");
    test_so101(log);
    test_calibration_sync(log, dir);
    test_mixed_firmware(log, dir);
    test_koch(log);
    test_check(dir);
    char text[4096] = "";
    rewind(log);
    size_t n = fread(text, 1, sizeof(text) - 1, log);
    text[n] = 0;
    CHECK_MSG(strstr(text, "shoulder_pan (id 1): servo has offset 0 range 0..4095") &&
              strstr(text, "says 100, 900..3000: writing the calibration"), "log: %s", text);
    fclose(log);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) {}
    return check_report(argv[0]);
}
