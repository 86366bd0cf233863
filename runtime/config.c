/* runtime/config.c — the key table, and everything that comes from it: defaults, the YAML loader
 * (libcyaml), --set overrides, validation, `rtvla config` and configs/README.md.
 *
 * Loading in one paragraph. The libcyaml schema is built once from the table: every section is
 * a mapping, every key a string leaf (robot.ids a sequence of strings, cameras a sequence of
 * mappings), unknown keys rejected. libcyaml thus checks the document's shape (syntax, unknown
 * and duplicate keys, scalar vs list vs section) and hands back the text of each key present;
 * the text then goes through the same converter as `--set key=value`, so a file value and a
 * command-line value give the same error. libcyaml's log (and its backtrace of mapping fields
 * and sequence entries) is captured to name the key path of its errors; line numbers come from
 * a second pass over the text with libyaml, run only when there is an error to report.
 */
#include "runtime/config.h"

#include <cyaml/cyaml.h>
#include <yaml.h>

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli.h"
#include "runtime/status.h"

/* ---- the key table --------------------------------------------------------------------- */

static const char *const presets_c[] = { "pi0", "pi0-tiny", NULL };
static const char *const backends_c[] = { "cpu", "cuda", NULL };
static const char *const heads_c[] = { "flow", "regression", NULL };
static const char *const robots_c[] = { "so100", "so101", "koch", NULL };
static const char *const torque_c[] = { "off", "hold", NULL };
static const char *const stale_c[] = { "hold", "continue", "stop", NULL };
static const char *const agg_c[] = { "latest", "ensemble", NULL };
static const char *const split_c[] = { "off", "streams", "green", "mps", NULL };

/* ENUM keys store the index of the name in choices: keep the C enums in that order. */
_Static_assert(RTV_HEAD_FLOW == 0 && RTV_HEAD_REGRESSION == 1, "heads_c order");
_Static_assert(RTV_TORQUE_OFF == 0 && RTV_TORQUE_HOLD == 1, "torque_c order");
_Static_assert(RTV_STALE_HOLD == 0 && RTV_STALE_CONTINUE == 1 && RTV_STALE_STOP == 2, "stale_c");
_Static_assert(RTV_AGG_LATEST == 0 && RTV_AGG_ENSEMBLE == 1, "agg_c order");
_Static_assert(RTV_SPLIT_OFF == 0 && RTV_SPLIT_STREAMS == 1 && RTV_SPLIT_GREEN == 2 &&
                   RTV_SPLIT_MPS == 3, "split_c order");
_Static_assert(sizeof(rtv_head) == sizeof(int) && sizeof(rtv_stale_policy) == sizeof(int),
               "ENUM keys are stored as int");

#define F(field) .offset = offsetof(rtv_config, field), .size = sizeof(((rtv_config *)0)->field)
#define M(field) .flags = RTV_CFG_FROM_PRESET, F(model.m.field)
#define CAM(field)                                                                            \
    .flags = RTV_CFG_CAMERA, .offset = offsetof(rtv_camera_cfg, field),                       \
    .size = sizeof(((rtv_camera_cfg *)0)->field)

static const rtv_cfg_key keys[] = {
    /* model */
    { "model.preset", RTV_CFG_CHOICE, F(model.preset), .def = "pi0-tiny", .min = 1,
      .choices = presets_c, .unit = "",
      .doc = "model dimensions: pi0 (PaliGemma 3B + 300M action expert) or pi0-tiny (tests, CPU demo)" },
    { "model.checkpoint", RTV_CFG_STRING, .flags = RTV_CFG_PATH, F(model.checkpoint), .def = "random", .min = 1, .unit = "",
      .doc = "checkpoint folder (model.safetensors, normalization stats, tokenizer.model), or random: seeded weights" },
    { "model.backend", RTV_CFG_CHOICE, F(model.backend), .def = "cpu", .min = 1, .choices = backends_c,
      .unit = "", .doc = "cpu: C reference (fp32, OpenBLAS); cuda: NVIDIA GPU (bf16, CUDA graphs)" },
    { "model.seed", RTV_CFG_U64, F(model.seed), .def = "0", .unit = "",
      .doc = "seed of the random weights and of the flow-matching noise" },
    { "model.head", RTV_CFG_ENUM, M(head), .choices = heads_c, .unit = "",
      .doc = "action head: flow (pi0 action expert, Euler steps) or regression (MLP)" },
    { "model.chunk", RTV_CFG_INT, M(chunk), .min = 1, .max = 1000, .unit = "actions",
      .doc = "actions per chunk (H)" },
    { "model.steps", RTV_CFG_INT, M(steps), .min = 1, .max = 100, .unit = "steps",
      .doc = "Euler steps of the flow head" },
    { "model.views", RTV_CFG_INT, M(n_views), .min = 1, .max = RTV_MAX_CAMERAS, .unit = "views",
      .doc = "camera views per VL encoding; must equal the number of cameras" },
    { "model.max_prompt", RTV_CFG_INT, M(max_prompt), .min = 2, .max = 1024, .unit = "tokens",
      .doc = "task tokens at most, BOS and newline included" },
    { "model.history", RTV_CFG_INT, M(history), .min = 0, .max = 64, .unit = "frames",
      .doc = "sensor history window (0: current state only)" },
    { "model.robot_dof", RTV_CFG_INT, M(robot_dof), .min = 0, .max = 32, .unit = "joints",
      .doc = "state/action dims the robot uses (0: from the normalization stats or the robot)" },

    /* robot */
    { "robot.type", RTV_CFG_CHOICE, F(robot.type), .def = "so101", .min = 1, .choices = robots_c,
      .unit = "", .doc = "arm: so100, so101 (Feetech STS3215) or koch (Dynamixel XL330/XL430)" },
    { "robot.port", RTV_CFG_STRING, F(robot.port), .def = "sim", .min = 1, .unit = "",
      .doc = "serial port (/dev/ttyACM0, /dev/serial/by-id/...) or sim: simulated bus on a pseudo-terminal" },
    { "robot.baud", RTV_CFG_INT, F(robot.baud), .def = "1000000", .min = 9600, .max = 4000000,
      .unit = "bit/s", .doc = "bus rate (LeRobot sets 1000000 on both servo families)" },
    { "robot.calibration", RTV_CFG_STRING, .flags = RTV_CFG_PATH, F(robot.calibration), .def = "", .unit = "",
      .doc = "LeRobot calibration JSON; required on a real port (empty: the simulator's)" },
    { "robot.ids", RTV_CFG_INT_LIST, F(robot.ids), .count_offset = offsetof(rtv_config, robot.n_motors),
      .def = "1,2,3,4,5,6", .min = 0, .max = 252, .unit = "",
      .doc = "servo ids in joint order, gripper last" },
    { "robot.control_hz", RTV_CFG_INT, F(robot.control_hz), .def = "50", .min = 1, .max = 1000,
      .unit = "Hz", .doc = "control thread rate: pick the action for now, write goals, read state" },
    { "robot.max_relative_target", RTV_CFG_FLOAT, F(robot.max_relative_target), .def = "0",
      .min = 0, .max = 200, .unit = "units/tick",
      .doc = "largest goal change per control tick, normalized units (0: off)" },
    { "robot.torque_on_exit", RTV_CFG_ENUM, F(robot.torque_on_exit), .def = "off",
      .choices = torque_c, .unit = "",
      .doc = "on exit or fatal fault: off (servos go limp) or hold (keep the last position)" },
    { "robot.retries", RTV_CFG_INT, F(robot.retries), .def = "2", .min = 0, .max = 10, .unit = "",
      .doc = "immediate retries of a bus transaction before it counts as a fault" },
    { "robot.sim.latency_us", RTV_CFG_INT, F(robot.sim_latency_us), .def = "100", .min = 0,
      .max = 100000, .unit = "us", .doc = "simulated servo reply latency (wire time is added)" },
    { "robot.sim.noise", RTV_CFG_FLOAT, F(robot.sim_noise), .def = "0.5", .min = 0, .max = 100,
      .unit = "ticks", .doc = "simulated position noise (standard deviation)" },
    { "robot.sim.tau_ms", RTV_CFG_FLOAT, F(robot.sim_tau_ms), .def = "50", .min = 0.1, .max = 10000,
      .unit = "ms", .doc = "simulated servo time constant (first order, toward the goal)" },

    /* cameras: one list entry each */
    { "cameras[].name", RTV_CFG_STRING, CAM(name), .def = NULL, .min = 1, .unit = "",
      .doc = "view name the policy knows (pi0: base_0_rgb, left_wrist_0_rgb, right_wrist_0_rgb); required" },
    { "cameras[].source", RTV_CFG_STRING, CAM(source), .def = "synthetic", .min = 1, .unit = "",
      .doc = "synthetic, file:PATH (PPM/JPEG) or a V4L2 device (/dev/videoN)" },
    { "cameras[].width", RTV_CFG_INT, CAM(width), .def = "640", .min = 16, .max = 4096, .unit = "px",
      .doc = "capture width" },
    { "cameras[].height", RTV_CFG_INT, CAM(height), .def = "480", .min = 16, .max = 4096, .unit = "px",
      .doc = "capture height" },
    { "cameras[].fps", RTV_CFG_INT, CAM(fps), .def = "30", .min = 1, .max = 240, .unit = "Hz",
      .doc = "capture rate" },
    { "cameras[].max_age_ms", RTV_CFG_INT, CAM(max_age_ms), .def = "200", .min = 1, .max = 10000,
      .unit = "ms", .doc = "a frame older than this is not used" },

    /* runtime */
    { "runtime.action_hz", RTV_CFG_INT, F(runtime.action_hz), .def = "10", .min = 1, .max = 1000,
      .unit = "Hz", .doc = "action thread rate (one head run per cycle)" },
    { "runtime.max_reuse", RTV_CFG_INT, F(runtime.max_reuse), .def = "10", .min = 1, .max = 100,
      .unit = "cycles", .doc = "action cycles one VL encoding may serve before it is stale" },
    { "runtime.max_age_ms", RTV_CFG_INT, F(runtime.max_age_ms), .def = "1000", .min = 1, .max = 60000,
      .unit = "ms", .doc = "a VL encoding older than this (from frame capture) is stale" },
    { "runtime.stale_policy", RTV_CFG_ENUM, F(runtime.stale_policy), .def = "hold", .choices = stale_c,
      .unit = "", .doc = "on stale features: hold position, continue (counted), or stop safely" },
    { "runtime.vl_every_n_cycles", RTV_CFG_INT, F(runtime.vl_every_n_cycles), .def = "0", .min = 0,
      .max = 1000, .unit = "cycles", .doc = "VL pacing: encode once per N action cycles (0: back to back)" },
    { "runtime.aggregate", RTV_CFG_ENUM, F(runtime.aggregate), .def = "latest", .choices = agg_c,
      .unit = "", .doc = "overlapping chunks: latest (newest wins) or ensemble (ACT temporal ensembling)" },
    { "runtime.ensemble_decay", RTV_CFG_FLOAT, F(runtime.ensemble_decay), .def = "0.01", .min = 0,
      .max = 1, .unit = "", .doc = "ensemble weight exp(-decay * i), i = 0 for the oldest chunk (ACT's m)" },
    { "runtime.priorities.control", RTV_CFG_INT, F(runtime.prio_control), .def = "80", .min = 0,
      .max = 99, .unit = "", .doc = "SCHED_FIFO priority of the control thread (0: SCHED_OTHER)" },
    { "runtime.priorities.action", RTV_CFG_INT, F(runtime.prio_action), .def = "-1", .min = -1,
      .max = 99, .unit = "", .doc = "SCHED_FIFO priority of the action thread (0: SCHED_OTHER; -1: "
      "70 with backend cuda, SCHED_OTHER with cpu, whose action thread computes for tens of ms "
      "and at SCHED_FIFO keeps the kernel workers that carry serial bytes off its core)" },
    { "runtime.priorities.vl", RTV_CFG_INT, F(runtime.prio_vl), .def = "0", .min = 0, .max = 99,
      .unit = "", .doc = "SCHED_FIFO priority of the VL thread (0: SCHED_OTHER)" },
    { "runtime.cpus.control", RTV_CFG_INT, F(runtime.cpu_control), .def = "-1", .min = -1,
      .max = 1023, .unit = "", .doc = "CPU the control thread is pinned to (-1: any)" },
    { "runtime.cpus.action", RTV_CFG_INT, F(runtime.cpu_action), .def = "-1", .min = -1, .max = 1023,
      .unit = "", .doc = "CPU the action thread is pinned to (-1: any)" },
    { "runtime.cpus.vl", RTV_CFG_INT, F(runtime.cpu_vl), .def = "-1", .min = -1, .max = 1023,
      .unit = "", .doc = "CPU the VL thread is pinned to (-1: any)" },

    /* gpu */
    { "gpu.device", RTV_CFG_INT, F(gpu.device), .def = "0", .min = 0, .max = 63, .unit = "",
      .doc = "CUDA device index" },
    { "gpu.split.mode", RTV_CFG_ENUM, F(gpu.split_mode), .def = "off", .choices = split_c, .unit = "",
      .doc = "SM split between action and VL: off, streams (priorities), green (green contexts), mps" },
    { "gpu.split.action_sms", RTV_CFG_INT, F(gpu.action_sms), .def = "32", .min = 0, .max = 1024,
      .unit = "SMs", .doc = "SMs for the action side, rounded up to the GPU's granularity; VL gets the rest" },

    /* log */
    { "log.dir", RTV_CFG_STRING, .flags = RTV_CFG_PATH, F(log.dir), .def = "runs", .min = 1, .unit = "",
      .doc = "run folders go to DIR/<timestamp>/" },
    { "log.status_line", RTV_CFG_BOOL, F(log.status_line), .def = "true", .unit = "",
      .doc = "print a status line once per second on a terminal" },
};
#define N_KEYS ((int)(sizeof(keys) / sizeof(keys[0])))

/* A field added to rtv_config (or rtv_camera_cfg) without a row above trips this: add the row,
 * then update the size. (LP64: x86-64 and aarch64 give the same layout.) */
_Static_assert(sizeof(rtv_config) == 7432, "rtv_config changed: update the key table in config.c");
_Static_assert(sizeof(rtv_camera_cfg) == 560, "rtv_camera_cfg changed: update the camera rows");

/* The embedded default's camera list (configs/sim.yaml spells out the same). */
static const rtv_camera_cfg default_cameras[] = {
    { "base_0_rgb", "synthetic", 320, 240, 30, 200 },
    { "left_wrist_0_rgb", "synthetic", 320, 240, 30, 200 },
};

static const struct {
    const char *name, *doc;
} sections[] = {
    { "model", "The policy. `preset` fills every dimension (table below); the other model keys "
               "override the preset's value when given." },
    { "robot", "The arm and its servo bus. `port: sim` starts the servo-bus simulator on a "
               "pseudo-terminal and drives it through the same serial code as a real port." },
    { "cameras", "A list, one entry per view, in the order the policy sees them. Each entry is a "
                 "mapping with the keys below; only `name` is required." },
    { "runtime", "Threads, rates, and the feature mailbox (VL reuse and staleness)." },
    { "gpu", "CUDA device and the split of its SMs between the action and VL threads "
             "(`rtvla bench split` measures the choices)." },
    { "log", "Run folders (telemetry, summary) and terminal output." },
};

const rtv_cfg_key *rtv_config_keys(int *n_keys)
{
    if (n_keys) *n_keys = N_KEYS;
    return keys;
}

/* ---- converting text to a field -------------------------------------------------------- */

static int idx_of(const char *path)
{
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].path, path)) return i;
    return -1;
}

static void choices_text(const char *const *c, const char *sep, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; c[i] && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? sep : "", c[i]);
}

/* "an integer in [1, 100]": what the key accepts, for messages and docs. */
static void expect_text(const rtv_cfg_key *k, char *buf, size_t n)
{
    char c[256];
    switch (k->type) {
    case RTV_CFG_INT: snprintf(buf, n, "an integer in [%.10g, %.10g]", k->min, k->max); break;
    case RTV_CFG_U64: snprintf(buf, n, "an unsigned 64-bit integer"); break;
    case RTV_CFG_FLOAT: snprintf(buf, n, "a number in [%.10g, %.10g]", k->min, k->max); break;
    case RTV_CFG_BOOL: snprintf(buf, n, "true or false"); break;
    case RTV_CFG_STRING:
        snprintf(buf, n, "a %sstring of at most %u bytes", k->min > 0 ? "non-empty " : "", k->size - 1);
        break;
    case RTV_CFG_CHOICE:
    case RTV_CFG_ENUM:
        choices_text(k->choices, ", ", c, sizeof(c));
        snprintf(buf, n, "one of %s", c);
        break;
    case RTV_CFG_INT_LIST:
        snprintf(buf, n, "a list of 1 to %u distinct integers in [%.10g, %.10g]",
                 (unsigned)(k->size / sizeof(int)), k->min, k->max);
        break;
    }
}

static int is_number_text(const char *s)
{
    char *end;
    if (!*s) return 0;
    errno = 0;
    (void)strtod(s, &end);
    return *end == 0;
}

static int bad_value(const char *where, const rtv_cfg_key *k, const char *got)
{
    char e[320];
    expect_text(k, e, sizeof(e));
    int num = k->type == RTV_CFG_INT || k->type == RTV_CFG_U64 || k->type == RTV_CFG_FLOAT ||
              k->type == RTV_CFG_INT_LIST;
    if (num && is_number_text(got)) return rtv_fail(RTV_E_ARG, "%s: expected %s, got %s", where, e, got);
    return rtv_fail(RTV_E_ARG, "%s: expected %s, got '%.200s'", where, e, got);
}

static int parse_int(const char *s, double lo, double hi, int *out)
{
    char *end;
    if (!*s || isspace((unsigned char)*s)) return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = { "true", "yes", "on", "1" }, *const f[] = { "false", "no", "off", "0" };
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, t[i])) { *out = 1; return 0; }
        if (!strcasecmp(s, f[i])) { *out = 0; return 0; }
    }
    return -1;
}

static int choice_index(const char *const *c, const char *s)
{
    for (int i = 0; c[i]; i++)
        if (!strcmp(c[i], s)) return i;
    return -1;
}

/* Converts text for key k into the field at base + k->offset. where: "FILE:LINE: key" or
 * "--set key", the message's prefix. */
static int apply_text(const rtv_cfg_key *k, void *base, const char *s, const char *where)
{
    char *p = (char *)base + k->offset;
    switch (k->type) {
    case RTV_CFG_INT: {
        int v;
        if (parse_int(s, k->min, k->max, &v)) return bad_value(where, k, s);
        *(int *)p = v;
        return RTV_OK;
    }
    case RTV_CFG_U64: {
        char *end;
        if (!*s || !isdigit((unsigned char)*s)) return bad_value(where, k, s);
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end || errno) return bad_value(where, k, s);
        *(uint64_t *)p = v;
        return RTV_OK;
    }
    case RTV_CFG_FLOAT: {
        char *end;
        if (!*s || isspace((unsigned char)*s)) return bad_value(where, k, s);
        double v = strtod(s, &end);
        if (*end || !isfinite(v) || v < k->min || v > k->max) return bad_value(where, k, s);
        *(float *)p = (float)v;
        return RTV_OK;
    }
    case RTV_CFG_BOOL: {
        int v;
        if (parse_bool(s, &v)) return bad_value(where, k, s);
        *(int *)p = v;
        return RTV_OK;
    }
    case RTV_CFG_STRING:
    case RTV_CFG_CHOICE: {
        char home[RTV_PATH_MAX];
        const char *h = getenv("HOME");
        if ((k->flags & RTV_CFG_PATH) && !strncmp(s, "~/", 2) && h && h[0]) {
            int w = snprintf(home, sizeof(home), "%s%s", h, s + 1);
            if (w < 0 || (size_t)w >= sizeof(home)) return bad_value(where, k, s);
            s = home;
        }
        size_t len = strlen(s);
        if (len >= k->size || len < (size_t)k->min) return bad_value(where, k, s);
        if (k->type == RTV_CFG_CHOICE && choice_index(k->choices, s) < 0) return bad_value(where, k, s);
        memcpy(p, s, len + 1);
        return RTV_OK;
    }
    case RTV_CFG_ENUM: {
        int i = choice_index(k->choices, s);
        if (i < 0) return bad_value(where, k, s);
        *(int *)p = i;
        return RTV_OK;
    }
    case RTV_CFG_INT_LIST: break; /* lists go through apply_list */
    }
    return rtv_fail(RTV_E_ARG, "%s: not a scalar key", where);
}

/* items: the list entries as text (YAML sequence entries, or "1,2,3" split at commas). */
static int apply_list(const rtv_cfg_key *k, void *base, char *const *items, int n, const char *where)
{
    int cap = (int)(k->size / sizeof(int)), v[RTV_MAX_MOTORS];
    char e[320], w[RTV_ERR_MAX / 2];
    if (n < 1 || n > cap || n > RTV_MAX_MOTORS) {
        expect_text(k, e, sizeof(e));
        return rtv_fail(RTV_E_ARG, "%s: expected %s, got %d entries", where, e, n);
    }
    for (int i = 0; i < n; i++) {
        if (parse_int(items[i], k->min, k->max, &v[i])) {
            snprintf(w, sizeof(w), "%s[%d]", where, i);
            snprintf(e, sizeof(e), "an integer in [%.10g, %.10g]", k->min, k->max);
            if (is_number_text(items[i])) return rtv_fail(RTV_E_ARG, "%s: expected %s, got %s", w, e, items[i]);
            return rtv_fail(RTV_E_ARG, "%s: expected %s, got '%.200s'", w, e, items[i]);
        }
        for (int j = 0; j < i; j++)
            if (v[j] == v[i])
                return rtv_fail(RTV_E_ARG, "%s: id %d is listed twice (entries %d and %d)", where,
                                v[i], j, i);
    }
    memcpy((char *)base + k->offset, v, (size_t)n * sizeof(int));
    *(int *)((char *)base + k->count_offset) = n;
    return RTV_OK;
}

/* Splits "1,2,3" in place (buf is a copy) and applies it. */
static int apply_list_text(const rtv_cfg_key *k, void *base, char *buf, const char *where)
{
    char *items[RTV_MAX_MOTORS + 1] = { 0 };
    int n = 0;
    if (!*buf) return apply_list(k, base, items, 0, where);
    for (char *s = buf;; n++) {
        if (n > RTV_MAX_MOTORS) return apply_list(k, base, items, n, where);
        items[n] = s;
        char *comma = strchr(s, ',');
        if (!comma) { n++; break; }
        *comma = 0;
        s = comma + 1;
    }
    return apply_list(k, base, items, n, where);
}

/* Shortest text that reads back to the same float. */
static void float_text(float f, char *buf, size_t n)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

static void value_text(const rtv_cfg_key *k, const void *base, char *buf, size_t n)
{
    const char *p = (const char *)base + k->offset;
    switch (k->type) {
    case RTV_CFG_INT: snprintf(buf, n, "%d", *(const int *)p); return;
    case RTV_CFG_U64: snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p); return;
    case RTV_CFG_FLOAT: float_text(*(const float *)p, buf, n); return;
    case RTV_CFG_BOOL: snprintf(buf, n, "%s", *(const int *)p ? "true" : "false"); return;
    case RTV_CFG_STRING:
    case RTV_CFG_CHOICE: snprintf(buf, n, "%.*s", (int)k->size, p); return;
    case RTV_CFG_ENUM: {
        int v = *(const int *)p, m = 0;
        while (k->choices[m]) m++;
        snprintf(buf, n, "%s", v >= 0 && v < m ? k->choices[v] : "?");
        return;
    }
    case RTV_CFG_INT_LIST: {
        int cnt = *(const int *)((const char *)base + k->count_offset);
        size_t len = 0;
        buf[0] = 0;
        for (int i = 0; i < cnt && i < (int)(k->size / sizeof(int)) && len < n; i++)
            len += (size_t)snprintf(buf + len, n - len, "%s%d", i ? "," : "", ((const int *)p)[i]);
        return;
    }
    }
}

/* ---- defaults, key lookup, --set -------------------------------------------------------- */

static void camera_defaults(rtv_camera_cfg *c)
{
    memset(c, 0, sizeof(*c));
    for (int i = 0; i < N_KEYS; i++) {
        if (!(keys[i].flags & RTV_CFG_CAMERA) || !keys[i].def) continue;
        int st = apply_text(&keys[i], c, keys[i].def, keys[i].path);
        (void)st;
        assert(st == RTV_OK); /* a table default that does not parse is a bug */
    }
}

static void fill_preset(rtv_config *cfg)
{
    int st = rtv_model_cfg_preset(&cfg->model.m, cfg->model.preset);
    (void)st;
    assert(st == RTV_OK); /* model.preset only ever holds one of presets_c */
}

void rtv_config_defaults(rtv_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->path, sizeof(cfg->path), "<embedded default>");
    for (int i = 0; i < N_KEYS; i++) {
        const rtv_cfg_key *k = &keys[i];
        if (!k->def || (k->flags & RTV_CFG_CAMERA)) continue;
        char buf[64];
        snprintf(buf, sizeof(buf), "%s", k->def);
        int st = k->type == RTV_CFG_INT_LIST ? apply_list_text(k, cfg, buf, k->path)
                                             : apply_text(k, cfg, k->def, k->path);
        (void)st;
        assert(st == RTV_OK);
    }
    fill_preset(cfg);
    cfg->n_cameras = (int)(sizeof(default_cameras) / sizeof(default_cameras[0]));
    memcpy(cfg->cameras, default_cameras, sizeof(default_cameras));
    cfg->runtime.history = cfg->model.m.history;
}

/* "cameras[2].width" -> row of "cameras[].width", *cam = 2; other paths: *cam = -1.
 * -1: unknown key; -2: malformed camera index. */
static int find_key(const char *path, int *cam)
{
    *cam = -1;
    if (!strncmp(path, "cameras[", 8)) {
        char *end, row[64];
        errno = 0;
        long i = strtol(path + 8, &end, 10);
        if (end == path + 8 || errno || i < 0 || i >= RTV_MAX_CAMERAS || strncmp(end, "].", 2)) return -2;
        snprintf(row, sizeof(row), "cameras[].%s", end + 2);
        *cam = (int)i;
        return idx_of(row);
    }
    int i = idx_of(path);
    return i >= 0 && (keys[i].flags & RTV_CFG_CAMERA) ? -1 : i;
}

static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

/* The known key closest to an unknown one: same last segment first, else the smallest edit
 * distance within about a third of the length. Camera rows are offered as cameras[0].x. */
static int closest_key(const char *path, char *buf, size_t n)
{
    const char *last = strrchr(path, '.');
    last = last ? last + 1 : path;
    int best = -1, best_d = 1 << 30;
    for (int i = 0; i < N_KEYS; i++) {
        char cand[96];
        if (keys[i].flags & RTV_CFG_CAMERA) snprintf(cand, sizeof(cand), "cameras[0].%s", keys[i].path + 10);
        else snprintf(cand, sizeof(cand), "%s", keys[i].path);
        const char *cl = strrchr(cand, '.') + 1;
        int d = edit_distance(path, cand);
        if (!strcmp(cl, last)) d = d < 2 ? d : 2; /* "max_reuse" -> runtime.max_reuse */
        else if (strlen(last) >= 3 && !strncmp(cl, last, strlen(last))) d = d < 2 ? d : 2; /* "tau" */
        if (d < best_d) { best_d = d; best = i; snprintf(buf, n, "%s", cand); }
    }
    int limit = (int)strlen(last) / 3;
    if (limit < 2) limit = 2;
    return best >= 0 && best_d <= limit ? best : -1;
}

static int unknown_key(const char *where, const char *path)
{
    char near[96];
    if (closest_key(path, near, sizeof(near)) >= 0)
        return rtv_fail(RTV_E_ARG, "%s: unknown key; did you mean %s?", where, near);
    return rtv_fail(RTV_E_ARG, "%s: unknown key (`rtvla config` lists every key)", where);
}

/* Applies "key=value" to cfg; the message prefix is "--set KEY". */
static int set_one(rtv_config *cfg, const char *assignment, int skip_preset, int only_preset)
{
    char key[128], where[192], val[RTV_PATH_MAX + 8];
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof(key))
        return rtv_fail(RTV_E_ARG, "--set '%.200s': expected key.path=value (e.g. runtime.max_reuse=5)",
                        assignment);
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = 0;
    snprintf(where, sizeof(where), "--set %s", key);
    int cam, i = find_key(key, &cam);
    if (i == -2)
        return rtv_fail(RTV_E_ARG, "%s: expected cameras[N].field with N in [0, %d]", where,
                        RTV_MAX_CAMERAS - 1);
    if (i < 0) return unknown_key(where, key);
    int is_preset = !strcmp(keys[i].path, "model.preset");
    if ((skip_preset && is_preset) || (only_preset && !is_preset)) return RTV_OK;
    if (strlen(eq + 1) >= sizeof(val)) return bad_value(where, &keys[i], "(too long)");
    snprintf(val, sizeof(val), "%s", eq + 1);
    if (cam >= 0) {
        if (cam >= cfg->n_cameras)
            return rtv_fail(RTV_E_ARG, "%s: there are %d cameras (cameras[0] to cameras[%d]); add "
                            "entries in the config file", where, cfg->n_cameras, cfg->n_cameras - 1);
        return apply_text(&keys[i], &cfg->cameras[cam], val, where);
    }
    if (keys[i].type == RTV_CFG_INT_LIST) return apply_list_text(&keys[i], cfg, val, where);
    int st = apply_text(&keys[i], cfg, val, where);
    if (st == RTV_OK && is_preset) fill_preset(cfg);
    if (st == RTV_OK) cfg->runtime.history = cfg->model.m.history;
    return st;
}

int rtv_config_set(rtv_config *cfg, const char *assignment)
{
    return set_one(cfg, assignment, 0, 0);
}

int rtv_config_get(const rtv_config *cfg, const char *path, char *buf, size_t n)
{
    int cam, i = find_key(path, &cam);
    if (n) buf[0] = 0;
    if (i < 0 || (cam >= 0 && cam >= cfg->n_cameras))
        return rtv_fail(RTV_E_ARG, "config key '%s' is unknown or out of range", path);
    value_text(&keys[i], cam >= 0 ? (const void *)&cfg->cameras[cam] : (const void *)cfg, buf, n);
    return RTV_OK;
}

/* ---- YAML: schema from the table, load, error translation ------------------------------- */

/* What libcyaml fills: the text of every key present (NULL: absent). Sections alias this one
 * struct (each nested mapping sits at offset 0), so a key's slot is its row index. */
typedef struct raw_node {
    void *v[N_KEYS];     /* char * (scalar), or char ** (INT_LIST entries) */
    uint32_t n[N_KEYS];  /* INT_LIST entry count */
    struct raw_node *cams;
    uint32_t n_cams;
} raw_node;

#define MAX_NODES 16
#define MAX_FIELDS 24
static struct snode {
    char prefix[48];                        /* "", "robot", "robot.sim", "cameras[]" */
    cyaml_schema_field_t f[MAX_FIELDS + 1]; /* NULL-key terminated */
    int n;
} snodes[MAX_NODES];
static int n_snodes;
static char seg_pool[2048];
static size_t seg_used;
static const cyaml_schema_value_t str_entry = {
    .type = CYAML_STRING, .flags = CYAML_FLAG_POINTER, .data_size = 1, .string = { 0, CYAML_UNLIMITED }
};
static cyaml_schema_value_t cam_entry, top_schema;
static pthread_once_t schema_once = PTHREAD_ONCE_INIT;

static struct snode *snode_get(const char *prefix)
{
    for (int i = 0; i < n_snodes; i++)
        if (!strcmp(snodes[i].prefix, prefix)) return &snodes[i];
    assert(n_snodes < MAX_NODES);
    struct snode *s = &snodes[n_snodes++];
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    return s;
}

static cyaml_schema_field_t *snode_field(struct snode *s, const char *key, size_t len)
{
    for (int i = 0; i < s->n; i++)
        if (strlen(s->f[i].key) == len && !strncmp(s->f[i].key, key, len)) return &s->f[i];
    assert(s->n < MAX_FIELDS && seg_used + len + 1 <= sizeof(seg_pool));
    char *k = seg_pool + seg_used;
    memcpy(k, key, len);
    k[len] = 0;
    seg_used += len + 1;
    cyaml_schema_field_t *f = &s->f[s->n++];
    f->key = k;
    return f;
}

static void schema_build(void)
{
    struct snode *root = snode_get("");
    for (int i = 0; i < N_KEYS; i++) {
        const rtv_cfg_key *k = &keys[i];
        struct snode *at = root;
        const char *seg = k->path, *dot;
        while ((dot = strchr(seg, '.'))) { /* sections down to the leaf's mapping */
            char prefix[48];
            snprintf(prefix, sizeof(prefix), "%.*s", (int)(dot - k->path), k->path);
            int is_cams = !strcmp(prefix, "cameras[]");
            struct snode *child = snode_get(prefix);
            cyaml_schema_field_t *f = snode_field(at, seg, (size_t)(dot - seg) - (is_cams ? 2 : 0));
            if (is_cams) {
                cam_entry = (cyaml_schema_value_t){ .type = CYAML_MAPPING, .flags = CYAML_FLAG_DEFAULT,
                                                    .data_size = sizeof(raw_node),
                                                    .mapping.fields = child->f };
                f->data_offset = offsetof(raw_node, cams);
                f->count_offset = offsetof(raw_node, n_cams);
                f->count_size = sizeof(uint32_t);
                f->value = (cyaml_schema_value_t){ .type = CYAML_SEQUENCE,
                                                   .flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
                                                   .data_size = sizeof(raw_node),
                                                   .sequence = { &cam_entry, 1, CYAML_UNLIMITED } };
            } else {
                f->data_offset = 0;
                f->value = (cyaml_schema_value_t){ .type = CYAML_MAPPING, .flags = CYAML_FLAG_OPTIONAL,
                                                   .data_size = sizeof(raw_node),
                                                   .mapping.fields = child->f };
            }
            at = child;
            seg = dot + 1;
        }
        cyaml_schema_field_t *f = snode_field(at, seg, strlen(seg));
        f->data_offset = (uint32_t)(offsetof(raw_node, v) + (size_t)i * sizeof(void *));
        if (k->type == RTV_CFG_INT_LIST) {
            f->count_offset = (uint32_t)(offsetof(raw_node, n) + (size_t)i * sizeof(uint32_t));
            f->count_size = sizeof(uint32_t);
            f->value = (cyaml_schema_value_t){ .type = CYAML_SEQUENCE,
                                               .flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL,
                                               .data_size = sizeof(char *),
                                               .sequence = { &str_entry, 1, CYAML_UNLIMITED } };
        } else {
            f->value = str_entry;
            f->value.flags = CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL;
        }
    }
    top_schema = (cyaml_schema_value_t){ .type = CYAML_MAPPING, .flags = CYAML_FLAG_POINTER,
                                         .data_size = sizeof(raw_node), .mapping.fields = root->f };
}

/* Everything about one load, for error messages: the file text and where each key came from. */
typedef struct load_ctx {
    const char *file;     /* as given */
    const char *text;     /* file contents (NULL: no file) */
    size_t len;
    signed char origin[N_KEYS]; /* 0 default, 1 file, 2 --set */
    int cams_from_file;
    char log[4096];       /* libcyaml's error log */
    size_t log_len;
} load_ctx;

static void log_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    load_ctx *L = ctx;
    (void)level;
    if (L->log_len + 1 >= sizeof(L->log)) return;
    int w = vsnprintf(L->log + L->log_len, sizeof(L->log) - L->log_len, fmt, args);
    if (w > 0) L->log_len += (size_t)w;
    if (L->log_len >= sizeof(L->log)) L->log_len = sizeof(L->log) - 1;
}

/* One pass of libyaml over the text: the 1-based line of the node at path ("robot.port": its
 * key; "cameras[1]": the entry; "cameras[1].fps": the key in that entry), or 0. On a syntax
 * error returns -1 with the message and its line in err. */
static int yaml_locate(const char *text, size_t len, const char *path, char *err, size_t errn)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct { int seq, idx, want_key; char path[160]; } st[32];
    int depth = -1, line = 0, done = 0;
    char cur[160];
    if (!yaml_parser_initialize(&p)) return 0;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            if (err)
                snprintf(err, errn, "line %zu, column %zu: %s%s%s", p.problem_mark.line + 1,
                         p.problem_mark.column + 1, p.problem ? p.problem : "syntax error",
                         p.context ? " " : "", p.context ? p.context : "");
            line = -1;
            break;
        }
        int start = ev.type == YAML_SCALAR_EVENT || ev.type == YAML_MAPPING_START_EVENT ||
                    ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_ALIAS_EVENT;
        int ln = (int)ev.start_mark.line + 1;
        snprintf(cur, sizeof(cur), "%s", depth >= 0 ? st[depth].path : "");
        if (start && depth >= 0) {
            if (st[depth].seq) { /* a sequence entry */
                snprintf(cur, sizeof(cur), "%s[%d]", st[depth].path, ++st[depth].idx);
                if (!strcmp(cur, path)) { line = ln; done = 1; }
            } else if (st[depth].want_key) { /* a mapping key: remember it, match it */
                if (ev.type == YAML_SCALAR_EVENT) {
                    snprintf(cur, sizeof(cur), "%s%s%s", st[depth].path, st[depth].path[0] ? "." : "",
                             (const char *)ev.data.scalar.value);
                    if (!strcmp(cur, path)) { line = ln; done = 1; }
                    snprintf(st[depth + 1 < 32 ? depth + 1 : depth].path, 160, "%s", cur);
                }
                st[depth].want_key = 0;
                yaml_event_delete(&ev);
                continue;
            } else { /* a mapping value: its path was stored in the slot above */
                snprintf(cur, sizeof(cur), "%s", depth + 1 < 32 ? st[depth + 1].path : "");
                st[depth].want_key = 1;
            }
        }
        if ((ev.type == YAML_MAPPING_START_EVENT || ev.type == YAML_SEQUENCE_START_EVENT) && depth < 31) {
            depth++;
            st[depth].seq = ev.type == YAML_SEQUENCE_START_EVENT;
            st[depth].idx = -1;
            st[depth].want_key = 1;
            snprintf(st[depth].path, sizeof(st[depth].path), "%s", cur);
        } else if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            depth--;
        } else if (ev.type == YAML_STREAM_END_EVENT) {
            done = 1;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    return line;
}

/* "FILE:LINE: path" (or "FILE: path" when the line is not found). */
static void file_where(const load_ctx *L, const char *path, char *buf, size_t n)
{
    int line = L->text ? yaml_locate(L->text, L->len, path, NULL, 0) : 0;
    if (line > 0) snprintf(buf, n, "%s:%d: %s", L->file, line, path);
    else snprintf(buf, n, "%s: %s", L->file, path);
}

/* The known keys of the section at prefix ("robot"), for an unknown-key message. */
static void section_keys(const char *prefix, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < n_snodes; i++) {
        if (strcmp(snodes[i].prefix, prefix)) continue;
        for (int j = 0; j < snodes[i].n && len < n; j++)
            len += (size_t)snprintf(buf + len, n - len, "%s%s", j ? ", " : "", snodes[i].f[j].key);
    }
}

/* Turns a libcyaml failure into one message naming the file, line and key path. */
static int yaml_error(load_ctx *L, cyaml_err_t err)
{
    /* The backtrace lists the innermost field first: "  in mapping field 'port' (line: 3, ...)",
     * "  in sequence entry '1' (...)", "  in mapping (...)" (no field: an unknown key). */
    char segs[16][64], path[256] = "", schema_path[256] = "", what[128] = "";
    int n = 0;
    for (char *s = L->log; (s = strstr(s, "  in ")); s++) {
        char name[63];
        unsigned idx;
        if (n < 16 && sscanf(s, "  in mapping field '%62[^']'", name) == 1) snprintf(segs[n++], 64, ".%s", name);
        else if (n < 16 && sscanf(s, "  in sequence entry '%u'", &idx) == 1 && idx > 0)
            snprintf(segs[n++], 64, "[%u]", idx - 1); /* libcyaml counts the entry being read */
    }
    for (int i = n - 1; i >= 0; i--) {
        size_t len = strlen(path);
        snprintf(path + len, sizeof(path) - len, "%s", segs[i] + (len == 0 && segs[i][0] == '.'));
    }
    /* the same path without indices names the schema node ("cameras[]") */
    for (const char *s = path; *s && strlen(schema_path) + 3 < sizeof(schema_path); s++) {
        size_t len = strlen(schema_path);
        if (*s == '[') {
            memcpy(schema_path + len, "[]", 3);
            while (*s && *s != ']') s++;
        } else {
            schema_path[len] = *s;
            schema_path[len + 1] = 0;
        }
    }
    char *m;
    if ((m = strstr(L->log, "Unexpected key: "))) sscanf(m + 16, "%127[^\n]", what);

    char where[600], full[400], known[512], near[96];
    if (err == CYAML_ERR_LIBYAML_PARSER) {
        char msg[384];
        if (yaml_locate(L->text, L->len, "\x01", msg, sizeof(msg)) == -1)
            return rtv_fail(RTV_E_INPUT, "%s: YAML syntax error at %s", L->file, msg);
        return rtv_fail(RTV_E_INPUT, "%s: YAML syntax error", L->file);
    }
    if (err == CYAML_ERR_INVALID_KEY) {
        snprintf(full, sizeof(full), "%s%s%s", path, path[0] ? "." : "", what);
        file_where(L, full, where, sizeof(where));
        section_keys(schema_path, known, sizeof(known));
        char fullnoidx[400];
        snprintf(fullnoidx, sizeof(fullnoidx), "%s%s%s", path, path[0] ? "." : "", what);
        if (closest_key(fullnoidx, near, sizeof(near)) >= 0)
            return rtv_fail(RTV_E_INPUT, "%s: unknown key; did you mean %s? (keys of %s: %s)", where,
                            near, path[0] ? path : "the top level", known);
        return rtv_fail(RTV_E_INPUT, "%s: unknown key (keys of %s: %s)", where,
                        path[0] ? path : "the top level", known);
    }
    if ((m = strstr(L->log, "Mapping field already seen: "))) {
        file_where(L, path, where, sizeof(where));
        return rtv_fail(RTV_E_INPUT, "%s: key given twice", where);
    }
    file_where(L, path[0] ? path : "(top level)", where, sizeof(where));
    if (err == CYAML_ERR_SEQUENCE_ENTRIES_MIN)
        return rtv_fail(RTV_E_INPUT, "%s: expected at least one entry, got an empty list", where);
    if (err == CYAML_ERR_INVALID_ALIAS || err == CYAML_ERR_ALIAS)
        return rtv_fail(RTV_E_INPUT, "%s: YAML alias without an anchor", where);
    /* A shape mismatch: a value where a section or list belongs, or the reverse. */
    int ki = idx_of(schema_path);
    if (ki >= 0 && keys[ki].type == RTV_CFG_INT_LIST)
        return rtv_fail(RTV_E_INPUT, "%s: expected a list of integers, e.g. [1, 2, 3]", where);
    if (ki >= 0) {
        char e[320];
        expect_text(&keys[ki], e, sizeof(e));
        return rtv_fail(RTV_E_INPUT, "%s: expected a single value (%s), got a list or a mapping", where, e);
    }
    if (!strcmp(schema_path, "cameras"))
        return rtv_fail(RTV_E_INPUT, "%s: expected a list of camera entries (- name: ...)", where);
    if (!strcmp(schema_path, "cameras[]")) {
        section_keys("cameras[]", known, sizeof(known));
        return rtv_fail(RTV_E_INPUT, "%s: expected a camera entry, a mapping with keys %s", where, known);
    }
    section_keys(schema_path, known, sizeof(known));
    if (known[0])
        return rtv_fail(RTV_E_INPUT, "%s: expected a section (a mapping with keys %s)", where, known);
    char first[200] = "";
    if ((m = strstr(L->log, "Load: "))) sscanf(m + 6, "%199[^\n]", first);
    return rtv_fail(RTV_E_INPUT, "%s: %s%s%s", where, cyaml_strerror(err), first[0] ? ": " : "", first);
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return rtv_fail(RTV_E_INPUT, "%s: cannot open config file: %s", path, strerror(errno));
    size_t cap = 1 << 20; /* a config is a few KiB; 1 MiB bounds a wrong file */
    char *buf = malloc(cap + 1);
    if (!buf) { fclose(f); return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path); }
    size_t n = fread(buf, 1, cap + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > cap) {
        free(buf);
        return rtv_fail(RTV_E_INPUT, "%s: %s", path, rerr ? "read error" : "larger than 1 MiB: not a config file");
    }
    if (memchr(buf, 0, n)) {
        free(buf);
        return rtv_fail(RTV_E_INPUT, "%s: contains NUL bytes: not a YAML config file", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return RTV_OK;
}

static int apply_raw(load_ctx *L, rtv_config *cfg, const raw_node *raw, int only_preset)
{
    char where[512];
    for (int i = 0; i < N_KEYS; i++) {
        const rtv_cfg_key *k = &keys[i];
        int is_preset = !strcmp(k->path, "model.preset");
        if ((k->flags & RTV_CFG_CAMERA) || !raw->v[i] || is_preset != only_preset) continue;
        file_where(L, k->path, where, sizeof(where));
        int st = k->type == RTV_CFG_INT_LIST ? apply_list(k, cfg, raw->v[i], (int)raw->n[i], where)
                                             : apply_text(k, cfg, raw->v[i], where);
        if (st) return st;
        if (is_preset) fill_preset(cfg);
        L->origin[i] = 1;
    }
    if (only_preset || !raw->cams) return RTV_OK;
    if (raw->n_cams > RTV_MAX_CAMERAS) {
        file_where(L, "cameras", where, sizeof(where));
        return rtv_fail(RTV_E_INPUT, "%s: %u entries, expected at most %d", where, raw->n_cams,
                        RTV_MAX_CAMERAS);
    }
    for (uint32_t c = 0; c < raw->n_cams; c++) {
        rtv_camera_cfg *cam = &cfg->cameras[c];
        camera_defaults(cam);
        for (int i = 0; i < N_KEYS; i++) {
            const rtv_cfg_key *k = &keys[i];
            if (!(k->flags & RTV_CFG_CAMERA)) continue;
            char path[96];
            snprintf(path, sizeof(path), "cameras[%u].%s", c, k->path + 10);
            const char *text = raw->cams[c].v[i];
            if (!text && !k->def) {
                snprintf(path, sizeof(path), "cameras[%u]", c);
                file_where(L, path, where, sizeof(where));
                return rtv_fail(RTV_E_INPUT, "%s: missing key '%s'", where, k->path + 10);
            }
            if (!text) continue;
            file_where(L, path, where, sizeof(where));
            int st = apply_text(k, cam, text, where);
            if (st) return st;
        }
    }
    cfg->n_cameras = (int)raw->n_cams;
    L->cams_from_file = 1;
    return RTV_OK;
}

/* ---- validation ------------------------------------------------------------------------ */

/* Message prefix for a key: where its value came from. */
static void key_where(const load_ctx *L, const rtv_config *cfg, const char *path, char *buf, size_t n)
{
    int i = idx_of(path);
    if (L && i >= 0 && L->origin[i] == 2) snprintf(buf, n, "--set %s", path);
    else if (L && ((i >= 0 && L->origin[i] == 1) || (!strncmp(path, "cameras", 7) && L->cams_from_file)))
        file_where(L, path, buf, n);
    else snprintf(buf, n, "%s: %s", cfg->path, path);
}

/* Of two keys in a conflict, the one the user wrote (else a). */
static const char *blame(const load_ctx *L, const char *a, const char *b)
{
    int ia = idx_of(a), ib = idx_of(b);
    if (!L || (ia >= 0 && L->origin[ia])) return a;
    if (ib >= 0 && L->origin[ib]) return b;
    if (ib < 0 && !strcmp(b, "cameras") && L->cams_from_file) return b;
    return a;
}

static int validate(const rtv_config *cfg, const load_ctx *L)
{
    char where[600], got[RTV_PATH_MAX + 8];
    /* every key's own range (a programmatic config bypasses the converters) */
    for (int i = 0; i < N_KEYS; i++) {
        const rtv_cfg_key *k = &keys[i];
        if (k->flags & RTV_CFG_CAMERA) continue;
        if (k->type == RTV_CFG_STRING || k->type == RTV_CFG_CHOICE) {
            const char *s = (const char *)cfg + k->offset;
            if (!memchr(s, 0, k->size)) {
                key_where(L, cfg, k->path, where, sizeof(where));
                return rtv_fail(RTV_E_ARG, "%s: string is not terminated", where);
            }
        }
        rtv_config tmp = *cfg;
        value_text(k, cfg, got, sizeof(got));
        key_where(L, cfg, k->path, where, sizeof(where));
        int st = k->type == RTV_CFG_INT_LIST ? apply_list_text(k, &tmp, got, where)
                                             : apply_text(k, &tmp, got, where);
        if (st) return st;
    }
    if (cfg->n_cameras < 1 || cfg->n_cameras > RTV_MAX_CAMERAS) {
        key_where(L, cfg, "cameras", where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: %d cameras, expected 1 to %d", where, cfg->n_cameras, RTV_MAX_CAMERAS);
    }
    for (int c = 0; c < cfg->n_cameras; c++) {
        for (int i = 0; i < N_KEYS; i++) {
            if (!(keys[i].flags & RTV_CFG_CAMERA)) continue;
            rtv_camera_cfg tmp = cfg->cameras[c];
            char path[96];
            snprintf(path, sizeof(path), "cameras[%d].%s", c, keys[i].path + 10);
            key_where(L, cfg, path, where, sizeof(where));
            if ((keys[i].type == RTV_CFG_STRING) && !memchr((const char *)&tmp + keys[i].offset, 0, keys[i].size))
                return rtv_fail(RTV_E_ARG, "%s: string is not terminated", where);
            value_text(&keys[i], &cfg->cameras[c], got, sizeof(got));
            int st = apply_text(&keys[i], &tmp, got, where);
            if (st) return st;
        }
        for (int d = 0; d < c; d++)
            if (!strcmp(cfg->cameras[d].name, cfg->cameras[c].name)) {
                char path[64];
                snprintf(path, sizeof(path), "cameras[%d].name", c);
                key_where(L, cfg, path, where, sizeof(where));
                return rtv_fail(RTV_E_ARG, "%s: '%s' is also the name of cameras[%d]; view names must differ",
                                where, cfg->cameras[c].name, d);
            }
    }
    const rtv_model_cfg *m = &cfg->model.m;
    if (m->n_views != cfg->n_cameras) {
        key_where(L, cfg, blame(L, "model.views", "cameras"), where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: model.views is %d, but %d camera%s configured; set model.views: %d "
                        "or change the cameras list", where, m->n_views, cfg->n_cameras,
                        cfg->n_cameras == 1 ? " is" : "s are", cfg->n_cameras);
    }
    if (m->robot_dof != 0 && m->robot_dof != cfg->robot.n_motors) {
        key_where(L, cfg, blame(L, "model.robot_dof", "robot.ids"), where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: model.robot_dof is %d, but robot.ids lists %d servos", where, m->robot_dof,
                        cfg->robot.n_motors);
    }
    if (cfg->robot.n_motors > m->action_dim) {
        key_where(L, cfg, "robot.ids", where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: %d servos, but the model's action_dim is %d", where,
                        cfg->robot.n_motors, m->action_dim);
    }
    if (cfg->robot.control_hz < cfg->runtime.action_hz) {
        key_where(L, cfg, blame(L, "robot.control_hz", "runtime.action_hz"), where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: robot.control_hz (%d Hz) must be >= runtime.action_hz (%d Hz): "
                        "the control thread executes every chunk", where, cfg->robot.control_hz, cfg->runtime.action_hz);
    }
    if (strcmp(cfg->robot.port, "sim") && !cfg->robot.calibration[0]) {
        key_where(L, cfg, blame(L, "robot.calibration", "robot.port"), where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: required for the real port %s: give LeRobot's calibration JSON "
                        "(e.g. ~/.cache/huggingface/lerobot/calibration/robots/%s_follower/<id>.json)",
                        where, cfg->robot.port, cfg->robot.type);
    }
    if (cfg->gpu.split_mode != RTV_SPLIT_OFF && strcmp(cfg->model.backend, "cuda")) {
        key_where(L, cfg, blame(L, "gpu.split.mode", "model.backend"), where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: %s needs model.backend: cuda (got %s)", where,
                        split_c[cfg->gpu.split_mode], cfg->model.backend);
    }
    if ((cfg->gpu.split_mode == RTV_SPLIT_GREEN || cfg->gpu.split_mode == RTV_SPLIT_MPS) &&
        cfg->gpu.action_sms < 1) {
        key_where(L, cfg, "gpu.split.action_sms", where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: 0, expected >= 1 with gpu.split.mode %s (the GPU's SM count is "
                        "checked at GPU init)", where, split_c[cfg->gpu.split_mode]);
    }
    if (cfg->runtime.history != m->history) {
        key_where(L, cfg, "model.history", where, sizeof(where));
        return rtv_fail(RTV_E_ARG, "%s: runtime.history (%d) must equal model.history (%d)", where,
                        cfg->runtime.history, m->history);
    }
    int st = rtv_model_cfg_validate(m);
    if (st) return rtv_fail_prefix(st, "%s", cfg->path);
    return RTV_OK;
}

int rtv_config_validate(const rtv_config *cfg)
{
    return validate(cfg, NULL);
}

int rtv_config_load(rtv_config *cfg, const char *path, const char *const *sets, int n_sets)
{
    load_ctx *L = calloc(1, sizeof(*L));
    raw_node *raw = NULL;
    char *text = NULL;
    cyaml_config_t cy = { .log_fn = log_capture, .mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR,
                          .flags = CYAML_CFG_DEFAULT };
    int st = RTV_OK;
    if (!L) return rtv_fail(RTV_E_NOMEM, "config: out of memory");
    pthread_once(&schema_once, schema_build);
    rtv_config_defaults(cfg);
    L->file = path ? path : cfg->path;
    cy.log_ctx = L;

    if (path) {
        snprintf(cfg->path, sizeof(cfg->path), "%s", path);
        if ((st = read_file(path, &text, &L->len))) goto out;
        L->text = text;
        cyaml_err_t err = cyaml_load_data((const uint8_t *)text, L->len, &cy, &top_schema,
                                          (cyaml_data_t **)&raw, NULL);
        if (err != CYAML_OK) {
            if (err == CYAML_ERR_OOM) st = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
            else st = yaml_error(L, err);
            raw = NULL;
            goto out;
        }
    }
    /* preset first (file, then --set), then every other key (file, then --set in order) */
    if (raw && (st = apply_raw(L, cfg, raw, 1))) goto out;
    for (int i = 0; i < n_sets; i++)
        if ((st = set_one(cfg, sets[i], 0, 1))) goto out;
    if (raw && (st = apply_raw(L, cfg, raw, 0))) goto out;
    for (int i = 0; i < n_sets; i++) {
        if ((st = set_one(cfg, sets[i], 1, 0))) goto out;
        char key[128];
        const char *eq = strchr(sets[i], '=');
        snprintf(key, sizeof(key), "%.*s", (int)(eq - sets[i]), sets[i]);
        int cam, k = find_key(key, &cam);
        if (k >= 0 && cam < 0) L->origin[k] = 2;
    }
    cfg->runtime.history = cfg->model.m.history;
    st = validate(cfg, L);
out:
    if (raw) cyaml_free(&cy, &top_schema, raw, 0);
    free(text);
    free(L);
    return st;
}

int rtv_cfg_action_prio(const rtv_config *cfg)
{
    if (cfg->runtime.prio_action >= 0) return cfg->runtime.prio_action;
    return strcmp(cfg->model.backend, "cpu") ? 70 : 0;
}

/* ---- printing: rtvla config, configs/README.md ----------------------------------------- */

static void default_text(const rtv_cfg_key *k, char *buf, size_t n)
{
    if (k->flags & RTV_CFG_FROM_PRESET) snprintf(buf, n, "preset");
    else if (!k->def) snprintf(buf, n, "(required)");
    else if (!k->def[0]) snprintf(buf, n, "\"\"");
    else snprintf(buf, n, "%s", k->def);
}

static void print_row(FILE *f, const char *path, const char *val, const rtv_cfg_key *k)
{
    char e[320];
    expect_text(k, e, sizeof(e));
    fprintf(f, "%-32s = %-20s # %s%s%s; %s\n", path, val[0] ? val : "\"\"", e, k->unit[0] ? ", " : "",
            k->unit, k->doc);
}

void rtv_config_print(const rtv_config *cfg, FILE *f)
{
    char val[RTV_PATH_MAX + 8];
    fprintf(f, "# rtvla config: %s\n", cfg->path);
    for (int i = 0; i < N_KEYS; i++) {
        const rtv_cfg_key *k = &keys[i];
        if (k->flags & RTV_CFG_CAMERA) {
            if (i > 0 && (keys[i - 1].flags & RTV_CFG_CAMERA)) continue;
            for (int c = 0; c < cfg->n_cameras; c++)
                for (int j = i; j < N_KEYS && (keys[j].flags & RTV_CFG_CAMERA); j++) {
                    char path[96];
                    snprintf(path, sizeof(path), "cameras[%d].%s", c, keys[j].path + 10);
                    value_text(&keys[j], &cfg->cameras[c], val, sizeof(val));
                    print_row(f, path, val, &keys[j]);
                }
            continue;
        }
        value_text(k, cfg, val, sizeof(val));
        print_row(f, k->path, val, k);
    }
}

void rtv_config_doc(FILE *f)
{
    pthread_once(&schema_once, schema_build);
    fprintf(f, "# Configuration keys\n\n"
               "<!-- Generated by `rtvla config --doc > configs/README.md` from the key table in "
               "runtime/config.c; tests/config checks it is current. Do not edit. -->\n\n"
               "A config file is YAML with the sections below. Every key is optional and takes its "
               "default when absent; unknown keys are errors, and every error names the file, the "
               "line and the key path. The defaults are the embedded default config, which "
               "[sim.yaml](sim.yaml) spells out in full: `rtvla run` without `-c` uses it.\n\n"
               "Any key can be overridden from the command line, after the file: "
               "`--set runtime.max_reuse=5`, lists as `--set robot.ids=1,2,3,4,5,6`, camera fields "
               "as `--set cameras[0].source=/dev/video2`. `rtvla config -c FILE [--set ...]` prints "
               "every key with its value. In `model.checkpoint`, `robot.calibration` and `log.dir` a "
               "leading `~/` stands for `$HOME/`.\n\n"
               "Examples: [sim.yaml](sim.yaml) (no hardware: CPU, tiny model, synthetic cameras, "
               "simulated bus), [so101.yaml](so101.yaml) (SO-101 arm, two USB cameras, pi0 on CUDA), "
               "[koch.yaml](koch.yaml) (Koch arm).\n");
    for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
        size_t sl = strlen(sections[s].name);
        fprintf(f, "\n## %s\n\n%s\n\n", sections[s].name, sections[s].doc);
        fprintf(f, "| key | default | accepts | unit | description |\n|---|---|---|---|---|\n");
        for (int i = 0; i < N_KEYS; i++) {
            const rtv_cfg_key *k = &keys[i];
            if (strncmp(k->path, sections[s].name, sl) || (k->path[sl] != '.' && k->path[sl] != '['))
                continue;
            char d[80], e[320];
            default_text(k, d, sizeof(d));
            expect_text(k, e, sizeof(e));
            fprintf(f, "| `%s` | `%s` | %s | %s | %s |\n", k->flags & RTV_CFG_CAMERA ? k->path + 10 : k->path,
                    d, e, k->unit, k->doc);
        }
        if (!strcmp(sections[s].name, "model")) {
            rtv_model_cfg p[2];
            rtv_model_cfg_preset(&p[0], "pi0");
            rtv_model_cfg_preset(&p[1], "pi0-tiny");
            fprintf(f, "\nPreset values:\n\n"
                       "| | pi0 | pi0-tiny |\n|---|---|---|\n");
#define ROW(name, field) fprintf(f, "| %s | %d | %d |\n", name, p[0].field, p[1].field)
            fprintf(f, "| `model.head` | %s | %s |\n", heads_c[p[0].head], heads_c[p[1].head]);
            ROW("`model.chunk`", chunk);
            ROW("`model.steps`", steps);
            ROW("`model.views`", n_views);
            ROW("`model.max_prompt`", max_prompt);
            ROW("`model.history`", history);
            ROW("`model.robot_dof`", robot_dof);
            fprintf(f, "| image size / patch | %d / %d | %d / %d |\n", p[0].image_size, p[0].patch,
                    p[1].image_size, p[1].patch);
            ROW("SigLIP width", vis_width);
            ROW("SigLIP layers", vis_depth);
            ROW("SigLIP heads", vis_heads);
            ROW("SigLIP MLP", vis_mlp);
            ROW("Gemma width", llm_width);
            ROW("Gemma layers", llm_depth);
            ROW("Gemma MLP", llm_mlp);
            ROW("vocabulary", vocab);
            ROW("attention heads (query)", n_heads);
            ROW("KV heads", n_kv_heads);
            ROW("head dim", head_dim);
            ROW("expert width", exp_width);
            ROW("expert MLP", exp_mlp);
            ROW("regression hidden", reg_hidden);
            ROW("action_dim (padded)", action_dim);
#undef ROW
        }
        if (!strcmp(sections[s].name, "cameras")) {
            fprintf(f, "\nDefault list:");
            for (size_t c = 0; c < sizeof(default_cameras) / sizeof(default_cameras[0]); c++)
                fprintf(f, "%s `%s` (%s %dx%d at %d fps)", c ? "," : "", default_cameras[c].name,
                        default_cameras[c].source, default_cameras[c].width, default_cameras[c].height,
                        default_cameras[c].fps);
            fprintf(f, ". A list in a file replaces it.\n");
        }
    }
    fprintf(f, "\n## Checks across keys\n\n"
               "- `model.views` equals the number of cameras.\n"
               "- `model.robot_dof`, when not 0, equals the number of `robot.ids`; the ids are distinct "
               "and fit the model's action_dim.\n"
               "- `robot.control_hz` >= `runtime.action_hz`.\n"
               "- `robot.calibration` is required when `robot.port` is not `sim`.\n"
               "- `gpu.split.mode` other than `off` needs `model.backend: cuda`; `green` and `mps` need "
               "`gpu.split.action_sms` >= 1 (checked against the GPU's SM count at GPU init).\n"
               "- camera names are distinct.\n"
               "- the model dimensions are consistent (widths divisible by heads, even head_dim, "
               "image size a multiple of the patch).\n");
}

/* ---- rtvla config ---------------------------------------------------------------------- */

static void config_usage(FILE *f)
{
    fprintf(f, "usage: rtvla config [-c FILE] [--set key.path=value]... [--doc]\n"
               "  prints every config key with its value (no -c: the embedded default, configs/sim.yaml)\n"
               "  --doc  writes the key reference as markdown (configs/README.md)\n");
}

int rtv_cmd_config(int argc, char **argv)
{
    const char *path = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof(*sets));
    int n_sets = 0, doc = 0, rc = 0;
    if (!sets) { fprintf(stderr, "rtvla config: out of memory\n"); return 1; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && i + 1 < argc) path = argv[++i];
        else if (!strcmp(a, "--set") && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (!strncmp(a, "--set=", 6)) sets[n_sets++] = a + 6;
        else if (!strcmp(a, "--doc")) doc = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { config_usage(stdout); goto out; }
        else {
            fprintf(stderr, "rtvla config: unexpected argument '%s'%s\n", a,
                    (!strcmp(a, "-c") || !strcmp(a, "--set")) ? " (needs a value)" : "");
            config_usage(stderr);
            rc = 2;
            goto out;
        }
    }
    if (doc) {
        rtv_config_doc(stdout);
        goto out;
    }
    rtv_config cfg;
    if (rtv_config_load(&cfg, path, sets, n_sets)) {
        fprintf(stderr, "rtvla config: %s\n", rtv_last_error());
        rc = 1;
        goto out;
    }
    rtv_config_print(&cfg, stdout);
out:
    free(sets);
    return rc;
}
