/* tests/config/test_config.c — the config table, YAML loading, --set, validation, docs.
 * Env RTV_SRC: the source root (configs/ lives there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "runtime/config.h"
#include "runtime/status.h"

static char src[1024], tmpdir[256];

static const char *src_path(const char *rel)
{
    static char buf[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", src, rel);
    return buf[k];
}

/* Writes text to tmpdir/t.yaml and returns the path. */
static const char *yaml_file(const char *text)
{
    static char path[300];
    snprintf(path, sizeof(path), "%s/t.yaml", tmpdir);
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return path;
}

/* Loads text (with optional sets); expects failure with every needle in the message. */
static void expect_error(int line, const char *text, const char *set, const char *n1, const char *n2)
{
    rtv_config cfg;
    const char *sets[1] = { set };
    int st = rtv_config_load(&cfg, text ? yaml_file(text) : NULL, sets, set ? 1 : 0);
    const char *msg = rtv_last_error();
    CHECK_MSG(st == RTV_E_ARG || st == RTV_E_INPUT, "line %d: status %d", line, st);
    CHECK_MSG(!text || strstr(msg, "t.yaml"), "line %d: message does not name the file: %s", line, msg);
    CHECK_MSG(!n1 || strstr(msg, n1), "line %d: '%s' not in: %s", line, n1, msg);
    CHECK_MSG(!n2 || strstr(msg, n2), "line %d: '%s' not in: %s", line, n2, msg);
}
#define ERR(text, n1, n2) expect_error(__LINE__, text, NULL, n1, n2)
#define SET_ERR(set, n1, n2) expect_error(__LINE__, NULL, set, n1, n2)

static int same_config(const rtv_config *a, const rtv_config *b)
{
    rtv_config x = *a, y = *b;
    memset(x.path, 0, sizeof(x.path));
    memset(y.path, 0, sizeof(y.path));
    return !memcmp(&x, &y, sizeof(x));
}

static void test_examples(void)
{
    rtv_config def, cfg;
    rtv_config_defaults(&def);
    CHECK(rtv_config_validate(&def) == RTV_OK);
    CHECK(rtv_config_load(&cfg, NULL, NULL, 0) == RTV_OK);
    CHECK(same_config(&cfg, &def));
    CHECK(!strcmp(cfg.path, "<embedded default>"));

    /* configs/sim.yaml is exactly the embedded default, and spells out every key */
    int st = rtv_config_load(&cfg, src_path("configs/sim.yaml"), NULL, 0);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    CHECK_MSG(same_config(&cfg, &def), "configs/sim.yaml differs from the embedded default");
    CHECK(!strcmp(def.model.preset, "pi0-tiny") && !strcmp(def.model.checkpoint, "random"));
    CHECK(!strcmp(def.model.backend, "cpu") && !strcmp(def.robot.type, "so101"));
    CHECK(!strcmp(def.robot.port, "sim") && def.n_cameras == 2);
    CHECK(!strcmp(def.cameras[0].name, "base_0_rgb") && !strcmp(def.cameras[1].name, "left_wrist_0_rgb"));
    CHECK(def.cameras[1].width == 320 && def.cameras[1].height == 240 && def.cameras[1].fps == 30);
    CHECK(def.runtime.action_hz == 10 && def.robot.control_hz == 50 && def.runtime.max_reuse == 10);
    CHECK(def.runtime.stale_policy == RTV_STALE_HOLD && !strcmp(def.log.dir, "runs"));
    FILE *f = fopen(src_path("configs/sim.yaml"), "rb");
    char text[16384] = "";
    CHECK(f && fread(text, 1, sizeof(text) - 1, f) > 0);
    if (f) fclose(f);
    int n;
    const rtv_cfg_key *keys = rtv_config_keys(&n);
    for (int i = 0; i < n; i++) {
        char needle[80];
        const char *last = strrchr(keys[i].path, '.') + 1;
        snprintf(needle, sizeof(needle), "%s%s:", keys[i].flags & RTV_CFG_CAMERA ? "" : " ", last);
        CHECK_MSG(strstr(text, needle), "configs/sim.yaml does not set %s", keys[i].path);
    }

    st = rtv_config_load(&cfg, src_path("configs/so101.yaml"), NULL, 0);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    CHECK(!strcmp(cfg.model.preset, "pi0") && cfg.model.m.vis_width == 1152 && !strcmp(cfg.model.backend, "cuda"));
    CHECK(!strcmp(cfg.robot.port, "/dev/ttyACM0") && cfg.robot.n_motors == 6);
    CHECK(!strcmp(cfg.cameras[1].source, "/dev/video2") && cfg.gpu.split_mode == RTV_SPLIT_GREEN);
    st = rtv_config_load(&cfg, src_path("configs/koch.yaml"), NULL, 0);
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    CHECK(!strcmp(cfg.robot.type, "koch") && cfg.cameras[0].width == 640); /* entry default */

    /* the action thread's priority: -1 (default) is SCHED_OTHER on the CPU backend, FIFO 70 on a
     * GPU; an explicit value is kept either way; below -1 is refused */
    CHECK(def.runtime.prio_action == -1 && rtv_cfg_action_prio(&def) == 0);
    CHECK(rtv_cfg_action_prio(&cfg) == 70); /* koch.yaml: backend cuda */
    CHECK(rtv_config_set(&cfg, "runtime.priorities.action=55") == RTV_OK && rtv_cfg_action_prio(&cfg) == 55);
    CHECK(rtv_config_set(&cfg, "runtime.priorities.action=0") == RTV_OK && rtv_cfg_action_prio(&cfg) == 0);
    rtv_config_defaults(&cfg);
    CHECK(rtv_config_set(&cfg, "runtime.priorities.action=40") == RTV_OK && rtv_cfg_action_prio(&cfg) == 40);
    CHECK(rtv_config_set(&cfg, "runtime.priorities.action=-2") != RTV_OK);
    CHECK(strstr(rtv_last_error(), "runtime.priorities.action"));

    /* an empty file and a comment-only file are the defaults */
    CHECK(rtv_config_load(&cfg, yaml_file(""), NULL, 0) == RTV_OK && same_config(&cfg, &def));
    CHECK(rtv_config_load(&cfg, yaml_file("# nothing\n"), NULL, 0) == RTV_OK && same_config(&cfg, &def));
}

static void test_errors(void)
{
    /* unknown keys, at the top level, nested, deeper, in a list entry */
    ERR("model:\n  preset: pi0\nfoo: 1\n", "t.yaml:3: foo: unknown key", "keys of the top level: model, robot");
    ERR("robot:\n  prot: /dev/x\n", "t.yaml:2: robot.prot: unknown key; did you mean robot.port?", NULL);
    ERR("robot:\n  sim:\n    tau: 3\n", "t.yaml:3: robot.sim.tau: unknown key", "robot.sim.tau_ms");
    ERR("cameras:\n  - name: a\n  - name: b\n    colour: red\n", "t.yaml:4: cameras[1].colour: unknown key",
        "name, source, width");
    /* wrong types */
    ERR("runtime:\n  max_reuse: abc\n", "t.yaml:2: runtime.max_reuse: expected an integer in [1, 100], got 'abc'", NULL);
    ERR("runtime:\n  max_reuse: [1, 2]\n", "t.yaml:2: runtime.max_reuse: expected a single value", NULL);
    ERR("runtime: 5\n", "t.yaml:1: runtime: expected a section", "max_reuse");
    ERR("robot:\n  ids: 5\n", "t.yaml:2: robot.ids: expected a list of integers", NULL);
    ERR("robot:\n  ids: [1, x, 3]\n", "t.yaml:2: robot.ids[1]: expected an integer in [0, 252], got 'x'", NULL);
    ERR("robot:\n  ids: []\n", "t.yaml:2: robot.ids: expected at least one entry", NULL);
    ERR("runtime:\n  ensemble_decay: fast\n", "runtime.ensemble_decay: expected a number in [0, 1], got 'fast'", NULL);
    ERR("log:\n  status_line: maybe\n", "t.yaml:2: log.status_line: expected true or false, got 'maybe'", NULL);
    ERR("model:\n  seed: -1\n", "model.seed: expected an unsigned 64-bit integer", NULL);
    ERR("cameras: 3\n", "t.yaml:1: cameras: expected a list of camera entries", NULL);
    ERR("cameras:\n  - 3\n", "cameras[0]: expected a camera entry", NULL);
    /* out of range: the example, float, list item, string length, camera field */
    ERR("runtime:\n  max_reuse: 0\n", "t.yaml:2: runtime.max_reuse: expected an integer in [1, 100], got 0", NULL);
    ERR("robot:\n  sim:\n    tau_ms: 0\n", "t.yaml:3: robot.sim.tau_ms: expected a number in [0.1, 10000], got 0", NULL);
    ERR("robot:\n  ids: [1, 300]\n", "robot.ids[1]: expected an integer in [0, 252], got 300", NULL);
    ERR("robot:\n  ids: [1, 2, 1]\n", "robot.ids: id 1 is listed twice", NULL);
    ERR("cameras:\n  - name: a\n    width: 5\n", "t.yaml:3: cameras[0].width: expected an integer in [16, 4096], got 5", NULL);
    ERR("cameras:\n  - name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", "cameras[0].name: expected a non-empty string of at most 31 bytes", NULL);
    ERR("model:\n  checkpoint: \"\"\n", "model.checkpoint: expected a non-empty string", NULL);
    /* bad enum / choice: the choices are listed */
    ERR("runtime:\n  stale_policy: pause\n", "t.yaml:2: runtime.stale_policy: expected one of hold, continue, stop, got 'pause'", NULL);
    ERR("model:\n  preset: pi1\n", "t.yaml:2: model.preset: expected one of pi0, pi0-tiny, got 'pi1'", NULL);
    ERR("gpu:\n  split:\n    mode: half\n", "t.yaml:3: gpu.split.mode: expected one of off, streams, green, mps", NULL);
    /* YAML syntax errors, with the line */
    ERR("model:\n  preset: pi0\n   bad: indent\n", "t.yaml: YAML syntax error at line 3", NULL);
    ERR("model: {preset: pi0\n", "YAML syntax error at line 2", NULL);
    ERR("model:\n  preset: pi0\n  preset: pi0\n", "model.preset: key given twice", NULL);
    ERR("- a\n- b\n", "expected a section", NULL);
    /* camera entries */
    ERR("cameras:\n  - name: a\n  - source: synthetic\n", "t.yaml:3: cameras[1]: missing key 'name'", NULL);
    ERR("cameras:\n  - name: a\n  - name: b\n  - name: a\n", "cameras[2].name: 'a' is also the name of cameras[0]", NULL);
    /* cross-field checks name the key the user wrote */
    ERR("model:\n  views: 3\n", "t.yaml:2: model.views: model.views is 3, but 2 cameras are configured", NULL);
    ERR("cameras:\n  - name: a\n", "t.yaml:1: cameras: model.views is 2, but 1 camera is configured", NULL);
    ERR("runtime:\n  action_hz: 100\n", "t.yaml:2: runtime.action_hz: robot.control_hz (50 Hz) must be >= runtime.action_hz (100 Hz)", NULL);
    ERR("robot:\n  port: /dev/ttyACM0\n", "t.yaml:2: robot.port: required for the real port /dev/ttyACM0", "calibration JSON");
    ERR("gpu:\n  split:\n    mode: green\n", "t.yaml:3: gpu.split.mode: green needs model.backend: cuda", NULL);
    ERR("model:\n  backend: cuda\ngpu:\n  split:\n    mode: mps\n    action_sms: 0\n", "t.yaml:6: gpu.split.action_sms: 0, expected >= 1", NULL);
    ERR("model:\n  robot_dof: 5\n", "t.yaml:2: model.robot_dof: model.robot_dof is 5, but robot.ids lists 6 servos", NULL);

    /* files */
    rtv_config cfg;
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing.yaml", tmpdir);
    CHECK(rtv_config_load(&cfg, missing, NULL, 0) == RTV_E_INPUT);
    CHECK(strstr(rtv_last_error(), "missing.yaml: cannot open config file"));
    char nul[300];
    snprintf(nul, sizeof(nul), "%s/nul.yaml", tmpdir);
    FILE *f = fopen(nul, "wb");
    fwrite("model:\0\n", 1, 8, f);
    fclose(f);
    CHECK(rtv_config_load(&cfg, nul, NULL, 0) == RTV_E_INPUT && strstr(rtv_last_error(), "nul.yaml: contains NUL"));
    unlink(nul);
    ERR("model:\n", "t.yaml:1: model: expected a section", NULL); /* an empty section is null */

    /* a programmatic config is checked too */
    rtv_config_defaults(&cfg);
    cfg.runtime.max_reuse = 0;
    CHECK(rtv_config_validate(&cfg) == RTV_E_ARG);
    CHECK(strstr(rtv_last_error(), "<embedded default>: runtime.max_reuse: expected an integer in [1, 100], got 0"));
}

static void test_set(void)
{
    /* bad syntax, unknown keys with the closest one */
    SET_ERR("runtime.max_reuse", "--set 'runtime.max_reuse': expected key.path=value", NULL);
    SET_ERR("=3", "--set '=3': expected key.path=value", NULL);
    SET_ERR("cameras[x].width=3", "--set cameras[x].width: expected cameras[N].field", NULL);
    SET_ERR("cameras[5].width=320", "--set cameras[5].width: there are 2 cameras", NULL);
    SET_ERR("runtime.max_reus=3", "--set runtime.max_reus: unknown key; did you mean runtime.max_reuse?", NULL);
    SET_ERR("max_reuse=3", "did you mean runtime.max_reuse?", NULL);
    SET_ERR("robot.sim.tau=3", "did you mean robot.sim.tau_ms?", NULL);
    SET_ERR("zzzzzzzz=1", "--set zzzzzzzz: unknown key (`rtvla config` lists every key)", NULL);
    SET_ERR("runtime.max_reuse=0", "--set runtime.max_reuse: expected an integer in [1, 100], got 0", NULL);
    SET_ERR("robot.ids=1,,2", "--set robot.ids[1]: expected an integer", NULL);
    SET_ERR("robot.ids=", "--set robot.ids: expected a list of 1 to 16", NULL);
    SET_ERR("robot.ids=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "expected a list of 1 to 16", NULL);
    SET_ERR("runtime.stale_policy=pause", "--set runtime.stale_policy: expected one of hold, continue, stop", NULL);
    SET_ERR("model.views=3", "--set model.views: model.views is 3", NULL);

    /* one override of each type; later --set wins */
    const char *sets[] = {
        "runtime.max_reuse=3", "runtime.max_reuse=4",       /* int */
        "model.seed=18446744073709551615",                 /* u64 */
        "runtime.ensemble_decay=0.25",                     /* float */
        "log.status_line=off",                             /* bool */
        "log.dir=/tmp/a=b",                                /* string, '=' in the value */
        "robot.type=koch",                                 /* choice */
        "runtime.aggregate=ensemble",                      /* enum */
        "robot.ids=11,12,13,14,15,16",                     /* int list */
        "cameras[1].source=/dev/video4",                   /* camera field */
        "model.head=regression", "model.chunk=20",         /* model overrides */
        "runtime.cpus.vl=-1",
    };
    rtv_config cfg;
    int st = rtv_config_load(&cfg, src_path("configs/sim.yaml"), sets, (int)(sizeof(sets) / sizeof(sets[0])));
    CHECK_MSG(st == RTV_OK, "%s", rtv_last_error());
    CHECK(cfg.runtime.max_reuse == 4);
    CHECK(cfg.model.seed == UINT64_MAX);
    CHECK(cfg.runtime.ensemble_decay == 0.25f);
    CHECK(cfg.log.status_line == 0);
    CHECK(!strcmp(cfg.log.dir, "/tmp/a=b"));
    CHECK(!strcmp(cfg.robot.type, "koch"));
    CHECK(cfg.runtime.aggregate == RTV_AGG_ENSEMBLE);
    CHECK(cfg.robot.n_motors == 6 && cfg.robot.ids[0] == 11 && cfg.robot.ids[5] == 16);
    CHECK(!strcmp(cfg.cameras[1].source, "/dev/video4") && !strcmp(cfg.cameras[0].source, "synthetic"));
    CHECK(cfg.model.m.head == RTV_HEAD_REGRESSION && cfg.model.m.chunk == 20);

    /* the preset is resolved first: overrides survive a later preset, wherever written */
    const char *p1[] = { "model.chunk=20", "model.preset=pi0" };
    CHECK(rtv_config_load(&cfg, NULL, p1, 2) == RTV_OK);
    CHECK(cfg.model.m.chunk == 20 && cfg.model.m.vis_width == 1152 && cfg.model.m.llm_depth == 18);
    const char *p2[] = { "model.preset=pi0" };
    CHECK(rtv_config_load(&cfg, yaml_file("model:\n  steps: 3\n  history: 2\n"), p2, 1) == RTV_OK);
    CHECK(cfg.model.m.steps == 3 && cfg.model.m.chunk == 50 && cfg.model.m.vocab == 257152);
    CHECK(cfg.model.m.history == 2 && cfg.runtime.history == 2);
    CHECK(rtv_config_load(&cfg, yaml_file("model:\n  preset: pi0\n"), NULL, 0) == RTV_OK);
    CHECK(cfg.model.m.n_heads == 8 && cfg.model.m.head_dim == 256 && cfg.model.m.exp_width == 1024);

    /* ~/ in path keys */
    setenv("HOME", "/home/tester", 1);
    const char *p3[] = { "robot.calibration=~/cal.json", "cameras[0].source=~/x" };
    CHECK(rtv_config_load(&cfg, NULL, p3, 2) == RTV_OK);
    CHECK(!strcmp(cfg.robot.calibration, "/home/tester/cal.json"));
    CHECK(!strcmp(cfg.cameras[0].source, "~/x")); /* not a path key: kept as written */
}

/* Every row: a non-default value written with rtv_config_set changes only that row's bytes,
 * reads back with rtv_config_get, and the default reads back to the same bytes. */
static void test_table(void)
{
    int n;
    const rtv_cfg_key *keys = rtv_config_keys(&n);
    CHECK(n >= 45);
    for (int i = 0; i < n; i++) {
        const rtv_cfg_key *k = &keys[i];
        rtv_config a, b;
        rtv_config_defaults(&a);
        b = a;
        char path[96], val[600], assign[700], back[600];
        if (k->flags & RTV_CFG_CAMERA) snprintf(path, sizeof(path), "cameras[1].%s", k->path + 10);
        else snprintf(path, sizeof(path), "%s", k->path);
        CHECK_MSG(rtv_config_get(&a, path, val, sizeof(val)) == RTV_OK, "%s", path);
        /* a valid value different from the current one */
        switch (k->type) {
        case RTV_CFG_INT: snprintf(val, sizeof(val), "%d", atoi(val) == (int)k->max ? (int)k->min : (int)k->max); break;
        case RTV_CFG_U64: snprintf(val, sizeof(val), "12345"); break;
        case RTV_CFG_FLOAT: snprintf(val, sizeof(val), "%g", atof(val) == k->max ? k->min : k->max); break;
        case RTV_CFG_BOOL: snprintf(val, sizeof(val), "%s", !strcmp(val, "true") ? "false" : "true"); break;
        case RTV_CFG_STRING: {
            char old[32];
            snprintf(old, sizeof(old), "%.20s", val);
            snprintf(val, sizeof(val), "x%s", old);
            break;
        }
        case RTV_CFG_CHOICE:
        case RTV_CFG_ENUM: snprintf(val, sizeof(val), "%s", !strcmp(val, k->choices[0]) ? k->choices[1] : k->choices[0]); break;
        case RTV_CFG_INT_LIST: snprintf(val, sizeof(val), "7,8,9"); break;
        }
        snprintf(assign, sizeof(assign), "%s=%s", path, val);
        int st = rtv_config_set(&b, assign);
        CHECK_MSG(st == RTV_OK, "%s: %s", assign, rtv_last_error());
        CHECK(rtv_config_get(&b, path, back, sizeof(back)) == RTV_OK);
        CHECK_MSG(!strcmp(back, val), "%s: read back '%s'", assign, back);
        size_t lo = k->offset + ((k->flags & RTV_CFG_CAMERA) ? offsetof(rtv_config, cameras[1]) : 0);
        size_t hi = lo + k->size;
        int changed = 0, outside = 0;
        for (size_t j = 0; j < sizeof(a); j++) {
            if (((const char *)&a)[j] == ((const char *)&b)[j]) continue;
            changed++;
            int in = j >= lo && j < hi;
            if (k->type == RTV_CFG_INT_LIST) in |= j >= k->count_offset && j < k->count_offset + sizeof(int);
            if (!strcmp(k->path, "model.preset")) in |= j >= offsetof(rtv_config, model.m) &&
                                                        j < offsetof(rtv_config, model.m) + sizeof(rtv_model_cfg);
            if (!strcmp(k->path, "model.history")) in |= j >= offsetof(rtv_config, runtime.history) &&
                                                         j < offsetof(rtv_config, runtime.history) + sizeof(int);
            outside += !in;
        }
        CHECK_MSG(changed > 0 && outside == 0, "%s: %d bytes changed, %d outside the field", assign, changed, outside);
    }
    rtv_config a;
    char buf[8];
    rtv_config_defaults(&a);
    CHECK(rtv_config_get(&a, "runtime.nope", buf, sizeof(buf)) == RTV_E_ARG && buf[0] == 0);
    CHECK(rtv_config_get(&a, "cameras[2].name", buf, sizeof(buf)) == RTV_E_ARG);
    /* rtvla config's listing has every key */
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    rtv_config_print(&a, f);
    fclose(f);
    for (int i = 0; i < n; i++) {
        char needle[100];
        if (keys[i].flags & RTV_CFG_CAMERA) snprintf(needle, sizeof(needle), "\ncameras[1].%s ", keys[i].path + 10);
        else snprintf(needle, sizeof(needle), "\n%s ", keys[i].path);
        CHECK_MSG(strstr(out, needle), "rtv_config_print lacks %s", needle + 1);
    }
    CHECK(strstr(out, "runtime.max_reuse                = 10 "));
    free(out);
}

static void test_readme_current(void)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&doc, &len);
    rtv_config_doc(m);
    fclose(m);
    FILE *f = fopen(src_path("configs/README.md"), "rb");
    char *file = calloc(1, len + 2);
    size_t got = f ? fread(file, 1, len + 1, f) : 0;
    if (f) fclose(f);
    CHECK_MSG(got == len && !memcmp(file, doc, len),
              "configs/README.md is out of date: run `rtvla config --doc > configs/README.md`");
    CHECK(strstr(doc, "`runtime.max_reuse` | `10` | an integer in [1, 100] | cycles |"));
    free(file);
    free(doc);
}

static void test_model_cfg(void)
{
    rtv_model_cfg c;
    CHECK(rtv_model_cfg_preset(&c, "pi0") == RTV_OK && rtv_model_cfg_validate(&c) == RTV_OK);
    CHECK(c.vis_width == 1152 && c.vis_depth == 27 && c.vis_mlp == 4304 && c.llm_mlp == 16384);
    CHECK(c.vocab == 257152 && c.exp_mlp == 4096 && c.n_kv_heads == 1 && rtv_model_tokens_per_view(&c) == 256);
    CHECK(rtv_model_cfg_preset(&c, "pi0-tiny") == RTV_OK && rtv_model_cfg_validate(&c) == RTV_OK);
    CHECK(c.vis_width == 64 && c.llm_width == 128 && c.head_dim == 32 && c.exp_width == 64 && c.vocab == 1024);
    CHECK(rtv_model_cfg_preset(&c, "pi05") == RTV_E_ARG && strstr(rtv_last_error(), "pi0, pi0-tiny"));
    struct { const char *field; int delta_off; int value; const char *needle; } bad[] = {
        { "vis_width", offsetof(rtv_model_cfg, vis_width), 1150, "vis_width (1150) is not divisible by vis_heads (4)" },
        { "head_dim", offsetof(rtv_model_cfg, head_dim), 33, "head_dim is 33, expected even" },
        { "patch", offsetof(rtv_model_cfg, patch), 15, "image_size (224) is not divisible by patch (15)" },
        { "n_views", offsetof(rtv_model_cfg, n_views), 9, "n_views is 9, expected [1, 8]" },
        { "robot_dof", offsetof(rtv_model_cfg, robot_dof), 33, "robot_dof is 33, expected [0, 32]" },
        { "n_heads", offsetof(rtv_model_cfg, n_heads), 3, "not divisible by n_heads (3)" },
        { "n_kv_heads", offsetof(rtv_model_cfg, n_kv_heads), 3, "n_heads (4) is not divisible by n_kv_heads (3)" },
        { "exp_width", offsetof(rtv_model_cfg, exp_width), 66, "exp_width (66) is not divisible by n_heads (4)" },
        { "chunk", offsetof(rtv_model_cfg, chunk), 0, "chunk is 0" },
        { "steps", offsetof(rtv_model_cfg, steps), 101, "steps is 101" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rtv_model_cfg_preset(&c, "pi0-tiny");
        *(int *)((char *)&c + bad[i].delta_off) = bad[i].value;
        CHECK_MSG(rtv_model_cfg_validate(&c) == RTV_E_ARG && strstr(rtv_last_error(), bad[i].needle),
                  "%s: %s", bad[i].field, rtv_last_error());
    }
    rtv_model_cfg_preset(&c, "pi0");
    c.action_dim = 4; /* robot_dof 6 > action_dim */
    CHECK(rtv_model_cfg_validate(&c) == RTV_E_ARG && strstr(rtv_last_error(), "robot_dof is 6, expected [0, 4]"));
    rtv_model_cfg_preset(&c, "pi0");
    c.rms_eps = 0;
    CHECK(rtv_model_cfg_validate(&c) == RTV_E_ARG && strstr(rtv_last_error(), "rms_eps"));
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *s = getenv("RTV_SRC");
    snprintf(src, sizeof(src), "%s", s ? s : ".");
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rtv_test_config_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_examples();
    test_errors();
    test_set();
    test_table();
    test_readme_current();
    test_model_cfg();
    char p[300];
    snprintf(p, sizeof(p), "%s/t.yaml", tmpdir);
    unlink(p);
    rmdir(tmpdir);
    return check_report(argv[0]);
}
