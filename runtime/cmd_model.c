/* runtime/cmd_model.c — `rtvla model init` (the seeded checkpoint generator) and
 * `rtvla model table` (the weight table for a preset).
 *
 *   rtvla model init --preset NAME --seed N -o DIR [--dtype bf16|f16|f32] [--robot-dof N]
 *                    [--history N]
 * writes DIR/model.safetensors (every tensor of both heads; sensor_history_proj when
 * --history > 0), DIR/tokenizer.model (synthetic SentencePiece BPE, cfg.vocab pieces),
 * DIR/norm_stats.json (seeded, openpi format) and DIR/config.json (the dims). The weights are
 * the values rtv_policy_random gives for the same preset and seed (bf16-representable, so
 * every dtype holds the same numbers).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "encoder/tokenizer.h"
#include "runtime/cli.h"
#include "runtime/policy_impl.h"
#include "runtime/status.h"

static int mkdir_p(const char *dir)
{
    char buf[512];
    if (snprintf(buf, sizeof(buf), "%s", dir) >= (int)sizeof(buf))
        return rtv_fail(RTV_E_ARG, "-o: path longer than %zu bytes", sizeof(buf) - 1);
    for (char *q = buf + 1;; q++) {
        if (*q == '/' || !*q) {
            char c = *q;
            *q = 0;
            if (mkdir(buf, 0755) && errno != EEXIST)
                return rtv_fail(RTV_E_OS, "%s: cannot create directory: %s", buf, strerror(errno));
            *q = c;
            if (!c)
                break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
        return rtv_fail(RTV_E_OS, "%s: not a directory", dir);
    return RTV_OK;
}

static int write_config_json(const rtv_model_cfg *c, uint64_t seed, rtv_dtype dt, const char *path)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    cJSON_AddStringToObject(j, "preset", c->preset);
#define I(k) cJSON_AddNumberToObject(j, #k, c->k)
    I(image_size); I(patch); I(vis_width); I(vis_depth); I(vis_heads); I(vis_mlp);
    cJSON_AddNumberToObject(j, "vis_ln_eps", (double)c->vis_ln_eps);
    I(llm_width); I(llm_depth); I(llm_mlp); I(vocab); I(n_heads); I(n_kv_heads); I(head_dim);
    cJSON_AddNumberToObject(j, "rope_theta", (double)c->rope_theta);
    cJSON_AddNumberToObject(j, "rms_eps", (double)c->rms_eps);
    I(exp_width); I(exp_mlp); I(reg_hidden); I(action_dim); I(robot_dof); I(chunk); I(steps);
    I(max_prompt); I(history);
#undef I
    cJSON_AddStringToObject(j, "dtype", rtv_dtype_name(dt));
    cJSON_AddNumberToObject(j, "seed", (double)seed);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        return rtv_fail(RTV_E_NOMEM, "%s: out of memory", path);
    FILE *f = fopen(path, "w");
    int bad = !f;
    if (f) {
        bad |= fputs(text, f) < 0 || fputc('\n', f) < 0;
        bad |= fclose(f) != 0;
    }
    free(text);
    return bad ? rtv_fail(RTV_E_OS, "%s: cannot write: %s", path, strerror(errno)) : RTV_OK;
}

int rtv_model_init_dir(const rtv_model_cfg *cfg, uint64_t seed, rtv_dtype dt, const char *dir)
{
    char path[600];
    rtv_norm_stats ns;
    int st = rtv_model_cfg_validate(cfg);
    if (st)
        return st;
    if (cfg->robot_dof < 1)
        return rtv_fail(RTV_E_ARG, "model init: robot_dof must be >= 1 (got %d)", cfg->robot_dof);
    if ((st = mkdir_p(dir)))
        return st;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if ((st = rtv_weights_write_random(cfg, seed, dt, path)))
        return st;
    snprintf(path, sizeof(path), "%s/tokenizer.model", dir);
    if ((st = rtv_tokenizer_write_synthetic(path, cfg->vocab)))
        return st;
    rtv_policy_random_stats(&ns, cfg->robot_dof, seed);
    snprintf(path, sizeof(path), "%s/norm_stats.json", dir);
    if ((st = rtv_normstats_write_openpi(&ns, path)))
        return st;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    return write_config_json(cfg, seed, dt, path);
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "rtvla model: %s: expected an integer in [%ld, %ld], got '%s'\n", flag, lo,
                hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: rtvla model init --preset NAME --seed N -o DIR [--dtype bf16|f16|f32]\n"
            "                        [--robot-dof N] [--history N]\n"
            "       rtvla model table [--preset NAME] [--head flow|regression] [--history N]\n");
    return 2;
}

int rtv_cmd_model(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1], *preset = "pi0-tiny", *out = NULL, *head = NULL;
    int init = !strcmp(sub, "init"), table = !strcmp(sub, "table");
    if (!init && !table) {
        fprintf(stderr, "rtvla model: unknown subcommand '%s'\n", sub);
        return usage();
    }
    unsigned long long seed = 0;
    int have_seed = 0;
    long dof = -1, history = -1;
    rtv_dtype dt = RTV_DT_BF16;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            fprintf(stderr, "rtvla model %s: %s needs a value\n", sub, a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--preset")) {
            preset = v;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            out = v;
        } else if (!strcmp(a, "--head")) {
            head = v;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 0);
            if (!*v || *end || errno || *v == '-') {
                fprintf(stderr, "rtvla model: --seed: expected an unsigned integer, got '%s'\n", v);
                return 2;
            }
            have_seed = 1;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "bf16")) dt = RTV_DT_BF16;
            else if (!strcmp(v, "f16")) dt = RTV_DT_F16;
            else if (!strcmp(v, "f32")) dt = RTV_DT_F32;
            else {
                fprintf(stderr, "rtvla model: --dtype: expected bf16, f16 or f32, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--robot-dof")) {
            if (parse_int(a, v, 1, RTV_MAX_DOF, &dof))
                return 2;
        } else if (!strcmp(a, "--history")) {
            if (parse_int(a, v, 0, 64, &history))
                return 2;
        } else {
            fprintf(stderr, "rtvla model %s: unknown option '%s'\n", sub, a);
            return usage();
        }
    }
    rtv_model_cfg cfg;
    if (rtv_model_cfg_preset(&cfg, preset)) {
        fprintf(stderr, "rtvla model: --preset: %s\n", rtv_last_error());
        return 2;
    }
    if (dof > 0)
        cfg.robot_dof = (int)dof;
    if (history >= 0)
        cfg.history = (int)history;
    if (head) {
        if (!strcmp(head, "flow")) cfg.head = RTV_HEAD_FLOW;
        else if (!strcmp(head, "regression")) cfg.head = RTV_HEAD_REGRESSION;
        else {
            fprintf(stderr, "rtvla model: --head: expected flow or regression, got '%s'\n", head);
            return 2;
        }
    }
    if (cfg.robot_dof > cfg.action_dim) {
        fprintf(stderr, "rtvla model: --robot-dof %d exceeds action_dim %d\n", cfg.robot_dof,
                cfg.action_dim);
        return 2;
    }
    if (table) {
        rtv_weights_print_table(&cfg, stdout);
        return 0;
    }
    if (!out || !have_seed) {
        fprintf(stderr, "rtvla model init: %s is required\n", !out ? "-o DIR" : "--seed N");
        return usage();
    }
    if (rtv_model_init_dir(&cfg, seed, dt, out)) {
        fprintf(stderr, "rtvla model init: %s\n", rtv_last_error());
        return 1;
    }
    printf("wrote %s (preset %s, seed %llu, %s, robot_dof %d, history %d)\n", out, cfg.preset,
           seed, rtv_dtype_name(dt), cfg.robot_dof, cfg.history);
    return 0;
}
