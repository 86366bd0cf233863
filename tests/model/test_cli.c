/* tests/model/test_cli.c — `rtvla model init` and `rtvla infer` as a user runs them: the
 * generated directory loads, infer prints the documented JSON (chunk x robot_dof, n_prefix,
 * timings), the seed and the task change the chunk, and bad input gives exit status 2 with the
 * flag or file named on stderr.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "runtime/cli.h"

static char dir[256], out_path[300], err_path[300];

/* Runs a subcommand with stdout and stderr captured; returns its exit status. */
static int run(int (*fn)(int, char **), const char *const *args)
{
    char *argv[32];
    int argc = 0;
    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    FILE *fo = freopen(out_path, "w", stdout), *fe = freopen(err_path, "w", stderr);
    int rc = (fo && fe) ? fn(argc, argv) : -1;
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    return rc;
}

static char *slurp(const char *path)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

/* Parses infer's JSON; returns the chunk's first value (NAN on a malformed document). */
static double check_json(int chunk, int dof, int n_prefix)
{
    cJSON *j = cJSON_Parse(slurp(out_path));
    CHECK(j != NULL);
    if (!j)
        return NAN;
    const cJSON *c = cJSON_GetObjectItem(j, "chunk");
    CHECK(cJSON_GetArraySize(c) == chunk);
    int ok = 1;
    const cJSON *row;
    cJSON_ArrayForEach(row, c) ok &= cJSON_GetArraySize(row) == dof;
    CHECK(ok);
    CHECK(cJSON_GetObjectItem(j, "n_prefix")->valueint == n_prefix);
    const cJSON *t = cJSON_GetObjectItem(j, "timing_ms");
    CHECK(t && cJSON_IsNumber(cJSON_GetObjectItem(t, "encode")) &&
          cJSON_IsNumber(cJSON_GetObjectItem(t, "act")));
    double v = cJSON_GetArrayItem(cJSON_GetArrayItem(c, 0), 0)->valuedouble;
    cJSON_Delete(j);
    return v;
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *src = getenv("RTV_SRC");
    CHECK_MSG(src != NULL, "RTV_SRC must name the source root");
    if (!src)
        return check_report(argv[0]);
    snprintf(dir, sizeof(dir), "/tmp/rtvla-test-cli-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(out_path, sizeof(out_path), "%s/stdout", dir);
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    char ck[300], cfg[300], img1[300], img2[300], ckset[400], im1[400], im2[400];
    snprintf(ck, sizeof(ck), "%s/ck", dir);
    snprintf(cfg, sizeof(cfg), "%s/configs/sim.yaml", src);
    snprintf(img1, sizeof(img1), "%s/tests/golden/view_land_240x100.ppm", src);
    snprintf(img2, sizeof(img2), "%s/tests/golden/view_port_97x160.ppm", src);
    snprintf(ckset, sizeof(ckset), "model.checkpoint=%s", ck);
    snprintf(im1, sizeof(im1), "base_0_rgb=%s", img1);
    snprintf(im2, sizeof(im2), "left_wrist_0_rgb=%s", img2);

    CHECK(run(rtv_cmd_model, (const char *[]){"model", "init", "--preset", "pi0-tiny", "--seed",
                                              "3", "-o", ck, "--dtype", "bf16", NULL}) == 0);
    CHECK(strstr(slurp(out_path), "wrote") != NULL);
    CHECK(run(rtv_cmd_model, (const char *[]){"model", "init", "--preset", "pi0-huge", "--seed",
                                              "3", "-o", ck, NULL}) == 2);
    CHECK(strstr(slurp(err_path), "--preset") && strstr(slurp(err_path), "pi0-tiny"));
    CHECK(run(rtv_cmd_model, (const char *[]){"model", "init", "--seed", "x", "-o", ck, NULL}) == 2);
    CHECK(strstr(slurp(err_path), "--seed") != NULL);

    const char *base[] = {"infer", "-c", cfg, "--set", ckset, "--image", im1, "--image", im2,
                          "--state", "1,2,3,4,5,6", "--task", "pick up the red cube", "--seed",
                          "5", NULL};
    CHECK(run(rtv_cmd_infer, base) == 0);
    double v0 = check_json(50, 6, 512 + 7);
    CHECK(run(rtv_cmd_infer, base) == 0);
    CHECK(check_json(50, 6, 512 + 7) == v0); /* deterministic */
    const char *seed6[] = {"infer", "-c", cfg, "--set", ckset, "--image", im1, "--image", im2,
                           "--state", "1,2,3,4,5,6", "--task", "pick up the red cube", "--seed",
                           "6", NULL};
    CHECK(run(rtv_cmd_infer, seed6) == 0);
    CHECK(check_json(50, 6, 512 + 7) != v0);
    const char *notask[] = {"infer", "-c", cfg, "--set", ckset, "--image", im1, "--image", im2,
                            "--state", "1,2,3,4,5,6", NULL};
    CHECK(run(rtv_cmd_infer, notask) == 0);
    check_json(50, 6, 512);
    /* seeded weights (model.checkpoint: random in sim.yaml), regression head, chunk 10 */
    const char *rnd[] = {"infer", "-c", cfg, "--set", "model.head=regression", "--set",
                         "model.chunk=10", "--image", im1, "--image", im2, "--state",
                         "0,0,0,0,0,0", NULL};
    CHECK(run(rtv_cmd_infer, rnd) == 0);
    check_json(10, 6, 512);

    /* bad input: exit 2 (usage) or 1 (runtime), the culprit named */
    const char *missing_img[] = {"infer", "-c", cfg, "--image", im1, "--state", "1,2,3,4,5,6", NULL};
    CHECK(run(rtv_cmd_infer, missing_img) == 2 && strstr(slurp(err_path), "left_wrist_0_rgb"));
    const char *bad_state[] = {"infer", "-c", cfg, "--image", im1, "--image", im2, "--state",
                               "1,2,x", NULL};
    CHECK(run(rtv_cmd_infer, bad_state) == 2 && strstr(slurp(err_path), "--state"));
    const char *short_state[] = {"infer", "-c", cfg, "--image", im1, "--image", im2, "--state",
                                 "1,2", NULL};
    CHECK(run(rtv_cmd_infer, short_state) == 2 && strstr(slurp(err_path), "robot has 6"));
    const char *bad_cam[] = {"infer", "-c", cfg, "--image", "front=x.ppm", "--state", "1", NULL};
    CHECK(run(rtv_cmd_infer, bad_cam) == 2 && strstr(slurp(err_path), "no camera named 'front'"));
    const char *bad_file[] = {"infer", "-c", cfg, "--image", "base_0_rgb=/nonexistent.ppm",
                              "--image", im2, "--state", "1,2,3,4,5,6", NULL};
    CHECK(run(rtv_cmd_infer, bad_file) == 2 && strstr(slurp(err_path), "/nonexistent.ppm"));
    const char *bad_ck[] = {"infer", "-c", cfg, "--set", "model.checkpoint=/nonexistent-ck",
                            "--image", im1, "--image", im2, "--state", "1,2,3,4,5,6", NULL};
    CHECK(run(rtv_cmd_infer, bad_ck) == 1 && strstr(slurp(err_path), "/nonexistent-ck"));
    const char *bad_set[] = {"infer", "-c", cfg, "--set", "model.chunkk=3", "--state", "1", NULL};
    CHECK(run(rtv_cmd_infer, bad_set) == 2 && strstr(slurp(err_path), "model.chunkk"));

    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_report(argv[0]);
}
