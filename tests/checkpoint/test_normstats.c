/* tests/checkpoint/test_normstats.c — openpi norm_stats.json and LeRobot processor files
 * (written here in the formats those projects save), the directory search, the formulas of
 * shared/specs/pi0.md 4.3 for both sources, and every malformed-file message.
 *
 * Env: RTV_TEST_DIR (scratch folder).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "runtime/normstats.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

static char root[1024];

static void mkdirs(const char *p)
{
    char tmp[1200];
    snprintf(tmp, sizeof(tmp), "%s", p);
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') { *s = 0; mkdir(tmp, 0755); *s = '/'; }
    mkdir(tmp, 0755);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static const float S_MEAN[6] = {0.1f, -0.2f, 0.3f, 1.0f, 2.0f, -3.0f};
static const float S_STD[6] = {1.0f, 0.5f, 2.0f, 0.25f, 0.0f, 4.0f};
static const float S_Q01[6] = {-1.0f, -2.0f, 0.0f, 0.5f, 2.0f, -9.0f};
static const float S_Q99[6] = {1.0f, 2.0f, 4.0f, 1.5f, 2.0f, 3.0f};
static const float A_MEAN[7] = {1, 2, 3, 4, 5, 6, 7};
static const float A_STD[7] = {0.5f, 0.5f, 1, 1, 2, 2, 3};
static const float A_Q01[7] = {0, 0, 0, 0, 0, 0, 0};
static const float A_Q99[7] = {1, 2, 3, 4, 5, 6, 0};

static void vec(char *out, size_t cap, const float *v, int n)
{
    int k = snprintf(out, cap, "[");
    for (int i = 0; i < n; i++) k += snprintf(out + k, cap - (size_t)k, "%s%.9g", i ? ", " : "", (double)v[i]);
    snprintf(out + k, cap - (size_t)k, "]");
}

static void write_openpi(const char *path, int with_q, int with_std)
{
    char sm[256], ss[256], sq1[256], sq9[256], am[256], as[256], aq1[256], aq9[256], txt[4096];
    vec(sm, sizeof(sm), S_MEAN, 6);
    vec(ss, sizeof(ss), S_STD, 6);
    vec(sq1, sizeof(sq1), S_Q01, 6);
    vec(sq9, sizeof(sq9), S_Q99, 6);
    vec(am, sizeof(am), A_MEAN, 7);
    vec(as, sizeof(as), A_STD, 7);
    vec(aq1, sizeof(aq1), A_Q01, 7);
    vec(aq9, sizeof(aq9), A_Q99, 7);
    snprintf(txt, sizeof(txt),
             "{\n  \"norm_stats\": {\n    \"state\": {\"mean\": %s, %s%s%s \"q01\": %s, \"q99\": %s},\n"
             "    \"actions\": {\"mean\": %s, \"std\": %s, \"q01\": %s, \"q99\": %s}\n  }\n}\n",
             sm, with_std ? "\"std\": " : "", with_std ? ss : "", with_std ? "," : "",
             with_q ? sq1 : "null", sq9, am, as, aq1, aq9);
    put(path, txt);
}

static void expect_err(int rc, int code, const char *needle)
{
    CHECK_MSG(rc == code, "got %d (%s), expected %d", rc, rtv_last_error(), code);
    CHECK_MSG(strstr(rtv_last_error(), needle) != NULL, "message '%s' lacks '%s'",
              rtv_last_error(), needle);
}

static void openpi(void)
{
    char dir[1200], p[1300];
    snprintf(dir, sizeof(dir), "%s/openpi", root);
    mkdirs(dir);
    snprintf(p, sizeof(p), "%s/norm_stats.json", dir);
    write_openpi(p, 1, 1);
    rtv_norm_stats s;
    int rc = rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD);
    CHECK_MSG(rc == RTV_OK, "%s", rtv_last_error());
    CHECK(s.dof == 7 && s.state_dof == 6 && s.src == RTV_NORM_SRC_OPENPI && s.eps == 1e-6f);
    CHECK(!strcmp(s.source, p));
    CHECK(!memcmp(s.state_std, S_STD, sizeof(S_STD)) && !memcmp(s.action_q99, A_Q99, sizeof(A_Q99)));
    CHECK(rtv_normstats_check(&s, 7, 32, "robot") == RTV_OK);
    expect_err(rtv_normstats_check(&s, 6, 32, "robot"), RTV_E_INPUT,
               "robot: stats (");
    CHECK(strstr(rtv_last_error(), "have 7 action dims, the robot has 6") != NULL);
    expect_err(rtv_normstats_check(&s, 7, 4, "robot"), RTV_E_ARG, "action_dim 4");

    /* z-score with std + 1e-6 (openpi), zero padding, inverse for actions. */
    float raw[6] = {1, 2, 3, 4, 5, 6}, out[32], ref[32] = {0};
    for (int i = 0; i < 6; i++) ref[i] = (raw[i] - S_MEAN[i]) / (S_STD[i] + 1e-6f);
    for (int i = 0; i < 32; i++) out[i] = NAN;
    rtv_normstats_state(&s, raw, out, 32);
    CHECK_CLOSE(out, ref, 32, 1e-6f);
    float chunk[3][32], got[3][7], want[3][7];
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 32; i++) chunk[t][i] = (float)(t - i) * 0.1f;
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 7; i++) want[t][i] = chunk[t][i] * (A_STD[i] + 1e-6f) + A_MEAN[i];
    rtv_normstats_unnorm_actions(&s, &chunk[0][0], 32, 3, &got[0][0]);
    CHECK_CLOSE(&got[0][0], &want[0][0], 21, 1e-6f);

    /* Quantile mode: (x - q01) / (q99 - q01 + 1e-6) * 2 - 1, and back. */
    CHECK(rtv_normstats_load_openpi(&s, p, RTV_NORM_QUANTILE) == RTV_OK);
    for (int i = 0; i < 6; i++) ref[i] = (raw[i] - S_Q01[i]) / (S_Q99[i] - S_Q01[i] + 1e-6f) * 2 - 1;
    rtv_normstats_state(&s, raw, out, 32);
    CHECK_CLOSE(out, ref, 32, 1e-6f);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 7; i++)
            want[t][i] = (chunk[t][i] + 1) / 2 * (A_Q99[i] - A_Q01[i] + 1e-6f) + A_Q01[i];
    rtv_normstats_unnorm_actions(&s, &chunk[0][0], 32, 3, &got[0][0]);
    CHECK_CLOSE(&got[0][0], &want[0][0], 21, 1e-6f);

    /* Writer round trip. */
    snprintf(p, sizeof(p), "%s/written.json", dir);
    CHECK(rtv_normstats_write_openpi(&s, p) == RTV_OK);
    rtv_norm_stats s2;
    CHECK(rtv_normstats_load_openpi(&s2, p, RTV_NORM_QUANTILE) == RTV_OK);
    CHECK(s2.dof == 7 && s2.state_dof == 6);
    CHECK(!memcmp(s.state_mean, s2.state_mean, sizeof(s.state_mean)) &&
          !memcmp(s.action_std, s2.action_std, sizeof(s.action_std)) &&
          !memcmp(s.state_q01, s2.state_q01, sizeof(s.state_q01)));

    /* Missing fields are named; null counts as missing. */
    snprintf(p, sizeof(p), "%s/noq.json", dir);
    write_openpi(p, 0, 1);
    CHECK(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD) == RTV_OK);
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_QUANTILE), RTV_E_INPUT,
               "norm_stats.state.q01 is missing; QUANTILES normalization needs it");
    snprintf(p, sizeof(p), "%s/nostd.json", dir);
    write_openpi(p, 1, 0);
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "norm_stats.state.std is missing; MEAN_STD");
    CHECK(strstr(rtv_last_error(), p) != NULL);
    snprintf(p, sizeof(p), "%s/lens.json", dir);
    put(p, "{\"norm_stats\": {\"state\": {\"mean\": [1, 2], \"std\": [1, 2, 3]}, "
           "\"actions\": {\"mean\": [1], \"std\": [1]}}}");
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "norm_stats.state.std has 3 values but mean has 2");
    put(p, "{\"norm_stats\": {\"state\": {\"mean\": [1, \"x\"], \"std\": [1, 2]}, "
           "\"actions\": {\"mean\": [1], \"std\": [1]}}}");
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "norm_stats.state.mean[1] is not a finite number");
    put(p, "{\"norm_stats\": {\"state\": {\"mean\": [1], \"std\": [-1]}, "
           "\"actions\": {\"mean\": [1], \"std\": [1]}}}");
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "std[0] = -1, expected >= 0");
    put(p, "{\"norm_stats\": {\"state\": {\"mean\": [1], \"std\": [1]}}}");
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "missing object norm_stats.actions");
    put(p, "{\"state\": {}}");
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "no \"norm_stats\" object");
    put(p, "{\"norm_stats\": ");
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "not valid JSON");
    char big[2048] = "{\"norm_stats\": {\"state\": {\"mean\": [0";
    for (int i = 1; i < 40; i++) strcat(big, ", 0");
    strcat(big, "], \"std\": [1]}, \"actions\": {\"mean\": [1], \"std\": [1]}}}");
    put(p, big);
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_UNSUPPORTED,
               "has 40 values, rtvla supports at most 32");
    snprintf(p, sizeof(p), "%s/absent.json", dir);
    expect_err(rtv_normstats_load_openpi(&s, p, RTV_NORM_MEAN_STD), RTV_E_INPUT, p);

    rtv_normstats_identity(&s, 5);
    CHECK(s.mode == RTV_NORM_IDENTITY && s.dof == 5 && s.state_dof == 5);
    rtv_normstats_state(&s, raw, out, 8);
    CHECK(out[4] == raw[4] && out[5] == 0.0f && out[7] == 0.0f);
}

/* LeRobot processor files, as lerobot's DataProcessorPipeline.save_pretrained lays them out. */
static void write_lerobot(const char *dir, const char *state_mode, const char *action_mode,
                          int drop_state_std, rtv_dtype dt)
{
    char p[1300], txt[4096];
    mkdirs(dir);
    snprintf(txt, sizeof(txt),
             "{\n  \"name\": \"policy_preprocessor\",\n  \"steps\": [\n"
             "    {\"registry_name\": \"rename_observations_processor\", \"config\": "
             "{\"rename_map\": {}}},\n"
             "    {\"registry_name\": \"to_batch_processor\", \"config\": {}},\n"
             "    {\"registry_name\": \"normalizer_processor\", \"config\": {\"eps\": 1e-08, "
             "\"features\": {\"observation.state\": {\"type\": \"STATE\", \"shape\": [6]}, "
             "\"observation.images.top\": {\"type\": \"VISUAL\", \"shape\": [3, 224, 224]}, "
             "\"action\": {\"type\": \"ACTION\", \"shape\": [7]}}, \"norm_map\": {\"VISUAL\": "
             "\"IDENTITY\", \"STATE\": \"%s\", \"ACTION\": \"%s\"}}, \"state_file\": "
             "\"policy_preprocessor_step_2_normalizer_processor.safetensors\"},\n"
             "    {\"registry_name\": \"device_processor\", \"config\": {\"device\": \"cpu\"}}\n"
             "  ]\n}\n", state_mode, action_mode);
    snprintf(p, sizeof(p), "%s/policy_preprocessor.json", dir);
    put(p, txt);
    snprintf(txt, sizeof(txt),
             "{\n  \"name\": \"policy_postprocessor\",\n  \"steps\": [\n"
             "    {\"registry_name\": \"unnormalizer_processor\", \"config\": {\"eps\": 1e-08, "
             "\"features\": {\"action\": {\"type\": \"ACTION\", \"shape\": [7]}}, \"norm_map\": "
             "{\"VISUAL\": \"IDENTITY\", \"STATE\": \"%s\", \"ACTION\": \"%s\"}}, \"state_file\": "
             "\"policy_postprocessor_step_0_unnormalizer_processor.safetensors\"},\n"
             "    {\"registry_name\": \"device_processor\", \"config\": {\"device\": \"cpu\"}}\n"
             "  ]\n}\n", state_mode, action_mode);
    snprintf(p, sizeof(p), "%s/policy_postprocessor.json", dir);
    put(p, txt);

    static uint16_t half[4][7];
    const float *sv[4] = {S_MEAN, S_STD, S_Q01, S_Q99}, *av[4] = {A_MEAN, A_STD, A_Q01, A_Q99};
    const char *stat[4] = {"mean", "std", "q01", "q99"};
    for (int file = 0; file < 2; file++) {
        rtv_st_writer *w;
        rtv_st_writer_new(&w);
        char name[64];
        for (int k = 0; k < 4; k++) {
            if (file == 0 && !(drop_state_std && k == 1)) {
                snprintf(name, sizeof(name), "observation.state.%s", stat[k]);
                const void *data = sv[k];
                if (dt == RTV_DT_BF16) {
                    for (int i = 0; i < 6; i++) {
                        uint32_t u;
                        memcpy(&u, &sv[k][i], 4);
                        half[k][i] = (uint16_t)(u >> 16); /* values here are exact in bf16 */
                    }
                    data = half[k];
                }
                rtv_st_writer_add(w, name, dt, 1, (int64_t[]){6}, data);
            }
            snprintf(name, sizeof(name), "action.%s", stat[k]);
            rtv_st_writer_add(w, name, RTV_DT_F32, 1, (int64_t[]){7}, av[k]);
        }
        snprintf(p, sizeof(p), "%s/%s", dir,
                 file == 0 ? "policy_preprocessor_step_2_normalizer_processor.safetensors"
                           : "policy_postprocessor_step_0_unnormalizer_processor.safetensors");
        CHECK(rtv_st_writer_finish(w, p) == RTV_OK);
    }
}

static void lerobot(void)
{
    char dir[1200];
    rtv_norm_stats s;
    snprintf(dir, sizeof(dir), "%s/lerobot", root);
    write_lerobot(dir, "MEAN_STD", "MEAN_STD", 0, RTV_DT_F32);
    int rc = rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD);
    CHECK_MSG(rc == RTV_OK, "%s", rtv_last_error());
    CHECK(s.src == RTV_NORM_SRC_LEROBOT && s.eps == 1e-8f && s.dof == 7 && s.state_dof == 6);
    CHECK(!memcmp(s.state_mean, S_MEAN, sizeof(S_MEAN)) && !memcmp(s.action_std, A_STD, sizeof(A_STD)));
    CHECK(strstr(s.source, "policy_preprocessor.json") != NULL);
    /* LeRobot formulas: (x - mean) / (std + 1e-8); inverse x * std + mean (no eps). */
    float raw[6] = {1, 2, 3, 4, 5, 6}, out[8], ref[8] = {0};
    for (int i = 0; i < 6; i++) ref[i] = (raw[i] - S_MEAN[i]) / (S_STD[i] + 1e-8f);
    rtv_normstats_state(&s, raw, out, 8);
    CHECK_CLOSE(out, ref, 8, 1e-6f);
    float chunk[2][8] = {{0.5f, -1, 2, 0, 1, 1, 1, 9}, {1, 1, 1, 1, 1, 1, 1, 9}}, got[2][7], want[2][7];
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 7; i++) want[t][i] = chunk[t][i] * A_STD[i] + A_MEAN[i];
    rtv_normstats_unnorm_actions(&s, &chunk[0][0], 8, 2, &got[0][0]);
    CHECK_CLOSE(&got[0][0], &want[0][0], 14, 1e-7f);

    /* QUANTILES: 2 (x - q01) / (q99 - q01) - 1, eps only where q99 == q01. */
    snprintf(dir, sizeof(dir), "%s/lerobot_q", root);
    write_lerobot(dir, "QUANTILES", "QUANTILES", 1, RTV_DT_BF16);
    rc = rtv_normstats_load_lerobot(&s, dir, RTV_NORM_QUANTILE);
    CHECK_MSG(rc == RTV_OK, "%s", rtv_last_error());
    for (int i = 0; i < 6; i++) {
        float dd = S_Q99[i] - S_Q01[i];
        ref[i] = 2 * (raw[i] - S_Q01[i]) / (dd == 0 ? 1e-8f : dd) - 1;
    }
    rtv_normstats_state(&s, raw, out, 8);
    CHECK_CLOSE(out, ref, 8, 1e-6f);
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 7; i++) {
            float dd = A_Q99[i] - A_Q01[i];
            want[t][i] = (chunk[t][i] + 1) * (dd == 0 ? 1e-8f : dd) / 2 + A_Q01[i];
        }
    rtv_normstats_unnorm_actions(&s, &chunk[0][0], 8, 2, &got[0][0]);
    CHECK_CLOSE(&got[0][0], &want[0][0], 14, 1e-6f);

    /* Mode disagreement, unsupported modes, missing tensors and files are named. */
    expect_err(rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "steps[2].config.norm_map.STATE is QUANTILES but the model is configured for "
               "MEAN_STD");
    snprintf(dir, sizeof(dir), "%s/lerobot_nostd", root);
    write_lerobot(dir, "MEAN_STD", "MEAN_STD", 1, RTV_DT_F32);
    expect_err(rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "no tensor 'observation.state.std'; MEAN_STD normalization needs it");
    snprintf(dir, sizeof(dir), "%s/lerobot_minmax", root);
    write_lerobot(dir, "MIN_MAX", "MEAN_STD", 0, RTV_DT_F32);
    expect_err(rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD), RTV_E_UNSUPPORTED,
               "norm_map.STATE is MIN_MAX");
    char p[1300];
    snprintf(p, sizeof(p), "%s/policy_postprocessor_step_0_unnormalizer_processor.safetensors",
             dir);
    snprintf(dir, sizeof(dir), "%s/lerobot", root);
    snprintf(p, sizeof(p), "%s/policy_postprocessor_step_0_unnormalizer_processor.safetensors",
             dir);
    remove(p);
    expect_err(rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "policy_postprocessor.json: steps[0].state_file");
    CHECK(strstr(rtv_last_error(), "cannot open") != NULL);
    snprintf(p, sizeof(p), "%s/policy_postprocessor.json", dir);
    put(p, "{\"steps\": [{\"registry_name\": \"device_processor\"}]}");
    expect_err(rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "no \"unnormalizer_processor\" step");
    /* Dims that disagree with the processor JSON. */
    snprintf(dir, sizeof(dir), "%s/lerobot_dims", root);
    write_lerobot(dir, "MEAN_STD", "MEAN_STD", 0, RTV_DT_F32);
    snprintf(p, sizeof(p), "%s/policy_preprocessor.json", dir);
    FILE *f = fopen(p, "r");
    char txt[4096];
    size_t n = fread(txt, 1, sizeof(txt) - 1, f);
    fclose(f);
    txt[n] = 0;
    char *at = strstr(txt, "\"shape\": [6]");
    at[10] = '5';
    put(p, txt);
    expect_err(rtv_normstats_load_lerobot(&s, dir, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "tensor 'observation.state.mean' has 6 values, expected 5");
}

static void search(void)
{
    char dir[1200], p[1300], q[1300];
    rtv_norm_stats s;
    snprintf(dir, sizeof(dir), "%s/search", root);
    mkdirs(dir);
    int rc = rtv_normstats_load_dir(&s, dir, RTV_NORM_MEAN_STD);
    expect_err(rc, RTV_E_INPUT, "no normalization stats found; searched");
    CHECK(strstr(rtv_last_error(), "policy_preprocessor.json (LeRobot)") &&
          strstr(rtv_last_error(), "norm_stats.json (openpi)") &&
          strstr(rtv_last_error(), "assets/*/norm_stats.json"));
    snprintf(p, sizeof(p), "%s/assets/trossen", dir);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/assets/trossen/norm_stats.json", dir);
    write_openpi(p, 1, 1);
    CHECK(rtv_normstats_load_dir(&s, dir, RTV_NORM_MEAN_STD) == RTV_OK && !strcmp(s.source, p));
    snprintf(q, sizeof(q), "%s/assets/droid", dir);
    mkdirs(q);
    snprintf(q, sizeof(q), "%s/assets/droid/norm_stats.json", dir);
    write_openpi(q, 1, 1);
    expect_err(rtv_normstats_load_dir(&s, dir, RTV_NORM_MEAN_STD), RTV_E_INPUT,
               "2 openpi asset stats found");
    CHECK(strstr(rtv_last_error(), "droid") && strstr(rtv_last_error(), "trossen"));
    snprintf(p, sizeof(p), "%s/norm_stats.json", dir); /* the top-level file wins */
    write_openpi(p, 1, 1);
    CHECK(rtv_normstats_load_dir(&s, dir, RTV_NORM_MEAN_STD) == RTV_OK && !strcmp(s.source, p));
    write_lerobot(dir, "MEAN_STD", "MEAN_STD", 0, RTV_DT_F32); /* LeRobot wins over openpi */
    CHECK(rtv_normstats_load_dir(&s, dir, RTV_NORM_MEAN_STD) == RTV_OK &&
          s.src == RTV_NORM_SRC_LEROBOT);
}

int main(int argc, char **argv)
{
    const char *d = getenv("RTV_TEST_DIR");
    snprintf(root, sizeof(root), "%s/ns_work", d ? d : ".");
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root); /* results of an earlier run */
    CHECK(system(cmd) == 0);
    mkdirs(root);
    openpi();
    lerobot();
    search();
    return check_report(argv[0]);
}
