/* LeRobot calibration JSON: round trips, errors naming file/motor/field; conversions against
 * hand-computed values (servo_protocols.md §3.3); the safety filter. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "hal/calib.h"
#include "hal/safety.h"
#include "runtime/status.h"

static const char *const so_names[] = { "shoulder_pan", "shoulder_lift", "elbow_flex",
                                        "wrist_flex", "wrist_roll", "gripper" };

static char tmpdir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static const char *good =
    "{\"shoulder_pan\": {\"id\": 1, \"drive_mode\": 0, \"homing_offset\": 363, \"range_min\": 796, \"range_max\": 3486},\n"
    " \"shoulder_lift\": {\"id\": 2, \"drive_mode\": 0, \"homing_offset\": -1200, \"range_min\": 820, \"range_max\": 3200},\n"
    " \"elbow_flex\": {\"id\": 3, \"drive_mode\": 0, \"homing_offset\": 1043.0, \"range_min\": 900, \"range_max\": 3100},\n"
    " \"wrist_flex\": {\"id\": 4, \"drive_mode\": 0, \"homing_offset\": 0, \"range_min\": 800, \"range_max\": 3300},\n"
    " \"wrist_roll\": {\"id\": 5, \"drive_mode\": 0, \"homing_offset\": 12, \"range_min\": 0, \"range_max\": 4095},\n"
    " \"gripper\": {\"id\": 6, \"drive_mode\": 0, \"homing_offset\": 1500, \"range_min\": 2020, \"range_max\": 3400}}\n";

/* text with the first `from` replaced by `to` (static buffer) */
static const char *subst(const char *text, const char *from, const char *to)
{
    static char buf[4096];
    const char *q = strstr(text, from);
    if (!q) return "not found";
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(q - text), text, to, q + strlen(from));
    return buf;
}

static void expect_error(const char *file, const char *text, const char *needle1, const char *needle2)
{
    rtv_calib c;
    const char *p = write_file(file, text);
    int st = rtv_calib_load(&c, p, so_names, 6, 1);
    CHECK_MSG(st == RTV_E_INPUT, "%s: status %d", file, st);
    CHECK_MSG(strstr(rtv_last_error(), p) && strstr(rtv_last_error(), needle1) &&
              (!needle2 || strstr(rtv_last_error(), needle2)), "%s: '%s'", file, rtv_last_error());
}

static void test_file(void)
{
    rtv_calib c, d;
    const char *p = write_file("good.json", good);
    CHECK_MSG(rtv_calib_load(&c, p, so_names, 6, 1) == RTV_OK, "%s", rtv_last_error());
    CHECK(c.n == 6 && c.m[0].homing_offset == 363 && c.m[1].homing_offset == -1200);
    CHECK(c.m[2].homing_offset == 1043); /* float written by some tools */
    CHECK(!strcmp(c.m[5].name, "gripper") && c.m[5].range_max == 3400);
    /* the order follows names, not the file */
    const char *rev[] = { "gripper", "shoulder_pan" };
    CHECK(rtv_calib_load(&d, p, rev, 2, 1) == RTV_OK && d.n == 2 && d.m[0].id == 6 && d.m[1].id == 1);
    /* round trip through rtv_calib_save */
    char out[128];
    snprintf(out, sizeof(out), "%s/saved.json", tmpdir);
    CHECK(rtv_calib_load(&c, p, so_names, 6, 1) == RTV_OK && rtv_calib_save(&c, out) == RTV_OK);
    CHECK(rtv_calib_load(&d, out, NULL, 0, 1) == RTV_OK && d.n == 6);
    CHECK(!memcmp(c.m, d.m, sizeof(c.m[0]) * 6));
    CHECK(rtv_calib_find(&d, "wrist_roll") == 4 && rtv_calib_find(&d, "elbow") == -1);
    /* errors */
    expect_error("missing.json", "{\"shoulder_pan\": {\"id\": 1, \"drive_mode\": 0, \"homing_offset\": 0, "
                 "\"range_min\": 1, \"range_max\": 2}}", "'shoulder_lift' missing", "shoulder_pan");
    expect_error("range.json", subst(good, "\"range_min\": 900", "\"range_min\": 3150"), "elbow_flex",
                 "range_min 3150 >= range_max 3100");
    expect_error("offset.json", subst(good, "-1200", "-2100"), "shoulder_lift", "homing_offset -2100");
    expect_error("float.json", subst(good, "1043.0", "1043.5"), "elbow_flex", "'homing_offset' must be an integer");
    expect_error("string.json", subst(good, "\"id\": 2", "\"id\": \"2\""), "shoulder_lift", "got a string");
    expect_error("field.json", subst(good, "\"drive_mode\": 0, \"homing_offset\": 12", "\"drive_mod\": 0, \"homing_offset\": 12"),
                 "wrist_roll", "missing field 'drive_mode'");
    expect_error("broken.json", "{\"shoulder_pan\": {\"id\": 1,", "invalid JSON", NULL);
    expect_error("array.json", "[1, 2]", "expected a JSON object", NULL);
    expect_error("wide.json", subst(good, "\"range_max\": 4095", "\"range_max\": 5095"), "wrist_roll", "0..4095");
    expect_error("dupid.json", subst(good, "\"id\": 4", "\"id\": 3"), "both have id 3", NULL);
    rtv_calib e;
    CHECK(rtv_calib_load(&e, "/nonexistent/calib.json", so_names, 6, 1) == RTV_E_INPUT);
    CHECK(strstr(rtv_last_error(), "/nonexistent/calib.json") != NULL);
    /* Dynamixel accepts large offsets and ranges beyond one turn */
    const char *koch = write_file("koch.json", "{\"shoulder_pan\": {\"id\": 1, \"drive_mode\": 1, "
                                  "\"homing_offset\": -3000, \"range_min\": -500, \"range_max\": 5000}}");
    CHECK(rtv_calib_load(&e, koch, so_names, 1, 0) == RTV_OK && e.m[0].drive_mode == 1);
    CHECK(rtv_calib_load(&e, koch, so_names, 1, 1) == RTV_E_INPUT);
}

static void test_conversions(void)
{
    rtv_motor_calib m = { "shoulder_pan", 1, 0, 363, 796, 3486 };
    /* §3.3 worked example: raw 2500 -> 31.560 deg, 26.691 in -100..100 */
    CHECK(fabs(rtv_calib_to_norm(&m, RTV_NORM_DEGREES, 2500) - 31.5604) < 1e-3);
    CHECK(fabs(rtv_calib_to_norm(&m, RTV_NORM_RANGE_M100_100, 2500) - 26.6914) < 1e-3);
    CHECK(rtv_calib_from_norm(&m, RTV_NORM_DEGREES, 31.5604) == 2499); /* truncation: one tick lost */
    CHECK(rtv_calib_from_norm(&m, RTV_NORM_RANGE_M100_100, 26.6914) == 2499);
    /* DEGREES: no clamp; centre (796+3486)/2 = 2141 -> 0 deg; 4095 ticks = 360 deg */
    CHECK(fabs(rtv_calib_to_norm(&m, RTV_NORM_DEGREES, 2141)) < 1e-9);
    CHECK(fabs(rtv_calib_to_norm(&m, RTV_NORM_DEGREES, 0) - (-2141 * 360.0 / 4095)) < 1e-9);
    CHECK(rtv_calib_from_norm(&m, RTV_NORM_DEGREES, -200.0) == (int)(-200.0 * 4095 / 360 + 2141));
    /* RANGE modes clamp */
    CHECK(rtv_calib_to_norm(&m, RTV_NORM_RANGE_M100_100, 100) == -100.0);
    CHECK(rtv_calib_to_norm(&m, RTV_NORM_RANGE_M100_100, 4000) == 100.0);
    CHECK(rtv_calib_from_norm(&m, RTV_NORM_RANGE_M100_100, 250.0) == 3486);
    CHECK(rtv_calib_from_norm(&m, RTV_NORM_RANGE_M100_100, -250.0) == 796);
    /* drive_mode inverts the RANGE modes only */
    rtv_motor_calib inv = m;
    inv.drive_mode = 1;
    CHECK(fabs(rtv_calib_to_norm(&inv, RTV_NORM_RANGE_M100_100, 2500) + 26.6914) < 1e-3);
    CHECK(rtv_calib_to_norm(&inv, RTV_NORM_DEGREES, 2500) == rtv_calib_to_norm(&m, RTV_NORM_DEGREES, 2500));
    CHECK(rtv_calib_from_norm(&inv, RTV_NORM_RANGE_M100_100, -26.6914) == 2499);
    /* gripper 0..100: min 2020 max 3400; raw 2710 = 50 % */
    rtv_motor_calib g = { "gripper", 6, 0, 0, 2020, 3400 };
    CHECK(fabs(rtv_calib_to_norm(&g, RTV_NORM_RANGE_0_100, 2710) - 50.0) < 1e-9);
    CHECK(rtv_calib_to_norm(&g, RTV_NORM_RANGE_0_100, 1000) == 0.0);
    CHECK(rtv_calib_from_norm(&g, RTV_NORM_RANGE_0_100, 50.0) == 2710);
    CHECK(rtv_calib_from_norm(&g, RTV_NORM_RANGE_0_100, 120.0) == 3400);
    g.drive_mode = 1;
    CHECK(fabs(rtv_calib_to_norm(&g, RTV_NORM_RANGE_0_100, 2158) - 90.0) < 1e-9);
    CHECK(rtv_calib_from_norm(&g, RTV_NORM_RANGE_0_100, 90.0) == 2158);
    /* round trips over the whole range: at most one tick lost */
    for (int raw = 796; raw <= 3486; raw++) {
        int back = rtv_calib_from_norm(&m, RTV_NORM_DEGREES, rtv_calib_to_norm(&m, RTV_NORM_DEGREES, raw));
        int back2 = rtv_calib_from_norm(&m, RTV_NORM_RANGE_M100_100, rtv_calib_to_norm(&m, RTV_NORM_RANGE_M100_100, raw));
        if (abs(back - raw) > 1 || abs(back2 - raw) > 1) {
            CHECK_MSG(0, "raw %d -> %d / %d", raw, back, back2);
            break;
        }
    }
    CHECK(fabs(rtv_calib_units_per_tick(&m, RTV_NORM_DEGREES) - 360.0 / 4095) < 1e-12);
    CHECK(fabs(rtv_calib_units_per_tick(&inv, RTV_NORM_RANGE_M100_100) + 200.0 / 2690) < 1e-12);
}

static void test_safety(void)
{
    rtv_safety s;
    float lo[3] = { -90, -45, 0 }, hi[3] = { 90, 45, 100 };
    CHECK(rtv_safety_init(&s, 3, lo, hi, 5.0f, 200) == RTV_OK);
    float present[3] = { 0, 40, 50 }, out[3];
    /* within everything: unchanged */
    float g1[3] = { 3, 42, 52 };
    CHECK(rtv_safety_apply_rt(&s, g1, present, out) == 0 && out[0] == 3 && out[1] == 42 && out[2] == 52);
    /* max step: 20 away -> present + 5 */
    float g2[3] = { 20, 40, 30 };
    CHECK(rtv_safety_apply_rt(&s, g2, present, out) == RTV_SAFETY_STEP);
    CHECK(out[0] == 5 && out[1] == 40 && out[2] == 45);
    /* limit wins over the step: joint 1 at 40, goal 60 -> step allows 45 = limit */
    float g3[3] = { 0, 60, 50 };
    float p3[3] = { 0, 44, 50 };
    int f = rtv_safety_apply_rt(&s, g3, p3, out);
    CHECK(f == (RTV_SAFETY_STEP | RTV_SAFETY_LIMIT) && out[1] == 45);
    /* a joint outside its limits still gets a goal inside them */
    float p4[3] = { 120, 0, 50 }, g4[3] = { 130, 0, 50 };
    rtv_safety_apply_rt(&s, g4, p4, out);
    CHECK(out[0] == 90);
    /* NaN / inf anywhere: whole vector replaced by present (clamped to limits) */
    float g5[3] = { 1, NAN, 2 };
    CHECK(rtv_safety_apply_rt(&s, g5, present, out) == RTV_SAFETY_REJECTED);
    CHECK(out[0] == 0 && out[1] == 40 && out[2] == 50 && s.n_rejected == 1);
    float g6[3] = { INFINITY, 0, 0 };
    CHECK(rtv_safety_apply_rt(&s, g6, present, out) == RTV_SAFETY_REJECTED);
    /* without max step: only limits */
    rtv_safety s2;
    CHECK(rtv_safety_init(&s2, 3, lo, hi, 0, 0) == RTV_OK);
    float g7[3] = { -200, 10, 101 };
    CHECK(rtv_safety_apply_rt(&s2, g7, present, out) == RTV_SAFETY_LIMIT && out[0] == -90 && out[2] == 100);
    CHECK(s2.n_limit_clamps == 2);
    /* watchdog */
    CHECK(rtv_safety_watchdog_rt(&s, 1000000000, 900000000) == 0);
    CHECK(rtv_safety_watchdog_rt(&s, 1000000000, 700000000) == 1 && s.n_watchdog == 1);
    CHECK(rtv_safety_watchdog_rt(&s2, 1000000000, 0) == 0);
    /* bad init */
    float bad_hi[3] = { 90, -50, 100 };
    CHECK(rtv_safety_init(&s2, 3, lo, bad_hi, 0, 0) == RTV_E_ARG && strstr(rtv_last_error(), "joint 1"));
    CHECK(rtv_safety_init(&s2, 3, lo, hi, -1, 0) == RTV_E_ARG);
    /* fuzz: whatever goal and present, the output is inside the limits and finite */
    uint64_t x = 12345;
    for (int k = 0; k < 20000; k++) {
        float g[3], p[3];
        for (int i = 0; i < 3; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            g[i] = (float)((int64_t)(x % 2000001) - 1000000) / 1000.0f;
            p[i] = (float)((int64_t)((x >> 21) % 4001) - 2000) / 10.0f;
        }
        if (k % 97 == 0) g[k % 3] = NAN;
        rtv_safety_apply_rt(&s, g, p, out);
        for (int i = 0; i < 3; i++)
            if (!(out[i] >= lo[i] && out[i] <= hi[i])) {
                CHECK_MSG(0, "k %d joint %d: out %g outside [%g, %g]", k, i, out[i], lo[i], hi[i]);
                k = 1 << 30;
                break;
            }
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rtv_calib_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_file();
    test_conversions();
    test_safety();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return check_report(argv[0]);
}
