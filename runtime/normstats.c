/* runtime/normstats.c — normalization statistics: openpi norm_stats.json, LeRobot processor
 * files, the search over a checkpoint directory, and the real-time (un)normalization.
 */
#include "runtime/normstats.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

#define MAX_JSON_BYTES (64u << 20)

enum { ST_MEAN, ST_STD, ST_Q01, ST_Q99, N_STAT };
static const char *const stat_names[N_STAT] = {"mean", "std", "q01", "q99"};

static const char *mode_name(rtv_norm_mode m)
{
    switch (m) {
    case RTV_NORM_MEAN_STD: return "MEAN_STD";
    case RTV_NORM_QUANTILE: return "QUANTILES";
    case RTV_NORM_IDENTITY: return "IDENTITY";
    }
    return "?";
}

/* Which statistics a mode needs. */
static int mode_needs(rtv_norm_mode m, int stat)
{
    if (m == RTV_NORM_MEAN_STD) return stat == ST_MEAN || stat == ST_STD;
    if (m == RTV_NORM_QUANTILE) return stat == ST_Q01 || stat == ST_Q99;
    return 0;
}

static float *stat_ptr(rtv_norm_stats *s, int is_state, int stat)
{
    switch (stat) {
    case ST_MEAN: return is_state ? s->state_mean : s->action_mean;
    case ST_STD: return is_state ? s->state_std : s->action_std;
    case ST_Q01: return is_state ? s->state_q01 : s->action_q01;
    default: return is_state ? s->state_q99 : s->action_q99;
    }
}

/* Stats tensors are F32 in LeRobot files; BF16/F16 are converted here (exactly; local so that
 * this file needs nothing from kernels/). */
static float half_to_f32(uint16_t h, rtv_dtype dt)
{
    uint32_t u;
    float f;
    if (dt == RTV_DT_BF16) {
        u = (uint32_t)h << 16;
    } else {
        uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 0x1f) {
            u = sign | 0x7f800000u | m << 13;
        } else if (e) {
            u = sign | (e + 112) << 23 | m << 13;
        } else { /* zero or subnormal: m * 2^-24 */
            f = ldexpf((float)m, -24);
            return sign ? -f : f;
        }
    }
    memcpy(&f, &u, 4);
    return f;
}

/* dst = a + "/" + b; RTV_E_ARG when it does not fit. */
static int join(char *dst, size_t cap, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb + 1 > cap)
        return rtv_fail(RTV_E_ARG, "%.200s/%.200s: path longer than %zu bytes", a, b, cap - 1);
    memcpy(dst, a, la);
    dst[la] = '/';
    memcpy(dst + la + 1, b, lb + 1);
    return RTV_OK;
}

static void set_source(rtv_norm_stats *s, const char *p)
{
    size_t n = strlen(p);
    if (n >= sizeof(s->source)) p += n - (sizeof(s->source) - 1); /* keep the tail */
    memcpy(s->source, p, strlen(p) + 1);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int read_text(const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rtv_fail(errno == ENOENT ? RTV_E_INPUT : RTV_E_OS, "%s: cannot open: %s", path,
                        strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = RTV_OK;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 65536 + 1;
            char *p = realloc(buf, cap);
            if (!p) { rc = rtv_fail(RTV_E_NOMEM, "%s: out of memory", path); break; }
            buf = p;
        }
        size_t r = fread(buf + n, 1, 65536, f);
        n += r;
        if (n > MAX_JSON_BYTES) {
            rc = rtv_fail(RTV_E_INPUT, "%s: larger than %u bytes; not a stats file?", path,
                          MAX_JSON_BYTES);
            break;
        }
        if (r < 65536) {
            if (ferror(f)) rc = rtv_fail(RTV_E_OS, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (rc) { free(buf); return rc; }
    buf[n] = 0;
    *out = buf;
    return RTV_OK;
}

static int parse_json_file(const char *path, cJSON **out)
{
    char *txt;
    int rc = read_text(path, &txt);
    *out = NULL;
    if (rc) return rc;
    cJSON *root = cJSON_Parse(txt);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t at = ep && ep >= txt ? (size_t)(ep - txt) : 0;
        free(txt);
        return rtv_fail(RTV_E_INPUT, "%s: not valid JSON (error near byte %zu)", path, at);
    }
    free(txt);
    *out = root;
    return RTV_OK;
}

/* ---- shared checks after loading ---- */

static int check_vectors(rtv_norm_stats *s, const char *path, const char *state_name,
                         const char *action_name)
{
    for (int is_state = 0; is_state < 2; is_state++) {
        int n = is_state ? s->state_dof : s->dof;
        const char *key = is_state ? state_name : action_name;
        const float *sd = stat_ptr(s, is_state, ST_STD);
        const float *lo = stat_ptr(s, is_state, ST_Q01), *hi = stat_ptr(s, is_state, ST_Q99);
        for (int i = 0; i < n; i++) {
            if (s->mode == RTV_NORM_MEAN_STD && !(sd[i] >= 0.0f))
                return rtv_fail(RTV_E_INPUT, "%s: %s.std[%d] = %g, expected >= 0", path, key, i,
                                (double)sd[i]);
            if (s->mode == RTV_NORM_QUANTILE && !(hi[i] >= lo[i]))
                return rtv_fail(RTV_E_INPUT, "%s: %s.q99[%d] = %g is below q01[%d] = %g", path,
                                key, i, (double)hi[i], i, (double)lo[i]);
        }
    }
    return RTV_OK;
}

static void fill_defaults(rtv_norm_stats *s, int is_state, const int *have)
{
    static const float def[N_STAT] = {0.0f, 1.0f, -1.0f, 1.0f};
    for (int k = 0; k < N_STAT; k++)
        if (!have[k])
            for (int i = 0; i < RTV_MAX_DOF; i++) stat_ptr(s, is_state, k)[i] = def[k];
}

void rtv_normstats_identity(rtv_norm_stats *s, int dof)
{
    static const int none[N_STAT];
    memset(s, 0, sizeof(*s));
    s->mode = RTV_NORM_IDENTITY;
    s->src = RTV_NORM_SRC_OPENPI;
    s->eps = 1e-6f;
    s->dof = s->state_dof = dof;
    fill_defaults(s, 0, none);
    fill_defaults(s, 1, none);
    snprintf(s->source, sizeof(s->source), "identity");
}

/* ---- openpi norm_stats.json ---- */

/* Reads obj[field] as a float vector. Returns 0 absent (or null), 1 read, <0 error. */
static int json_vec(const cJSON *obj, const char *key, const char *field, float *out, int *n,
                    const char *path)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!a || cJSON_IsNull(a)) return 0;
    if (!cJSON_IsArray(a))
        return rtv_fail(RTV_E_INPUT, "%s: norm_stats.%s.%s is not an array of numbers", path,
                        key, field);
    int len = cJSON_GetArraySize(a);
    if (len < 1)
        return rtv_fail(RTV_E_INPUT, "%s: norm_stats.%s.%s is empty", path, key, field);
    if (len > RTV_MAX_DOF)
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: norm_stats.%s.%s has %d values, rtvla "
                        "supports at most %d dims", path, key, field, len, RTV_MAX_DOF);
    int i = 0;
    for (const cJSON *v = a->child; v; v = v->next, i++) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return rtv_fail(RTV_E_INPUT, "%s: norm_stats.%s.%s[%d] is not a finite number",
                            path, key, field, i);
        out[i] = (float)v->valuedouble;
    }
    *n = len;
    return 1;
}

int rtv_normstats_load_openpi(rtv_norm_stats *s, const char *json_path, rtv_norm_mode mode)
{
    cJSON *root;
    memset(s, 0, sizeof(*s));
    int rc = parse_json_file(json_path, &root);
    if (rc) return rc;
    s->mode = mode;
    s->src = RTV_NORM_SRC_OPENPI;
    s->eps = 1e-6f;
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(root, "norm_stats");
    if (!cJSON_IsObject(ns)) {
        rc = rtv_fail(RTV_E_INPUT, "%s: no \"norm_stats\" object (openpi format: "
                      "{\"norm_stats\": {\"state\": {...}, \"actions\": {...}}})", json_path);
        goto out;
    }
    for (int is_state = 1; is_state >= 0; is_state--) {
        const char *key = is_state ? "state" : "actions";
        const cJSON *obj = cJSON_GetObjectItemCaseSensitive(ns, key);
        if (!cJSON_IsObject(obj)) {
            rc = rtv_fail(RTV_E_INPUT, "%s: missing object norm_stats.%s", json_path, key);
            goto out;
        }
        int have[N_STAT] = {0}, dims = 0, first = -1;
        for (int k = 0; k < N_STAT; k++) {
            int n = 0;
            int r = json_vec(obj, key, stat_names[k], stat_ptr(s, is_state, k), &n, json_path);
            if (r < 0) { rc = r; goto out; }
            if (!r) {
                if (mode_needs(mode, k)) {
                    rc = rtv_fail(RTV_E_INPUT, "%s: norm_stats.%s.%s is missing; %s "
                                  "normalization needs it", json_path, key, stat_names[k],
                                  mode_name(mode));
                    goto out;
                }
                continue;
            }
            have[k] = 1;
            if (first < 0) {
                first = k;
                dims = n;
            } else if (n != dims) {
                rc = rtv_fail(RTV_E_INPUT, "%s: norm_stats.%s.%s has %d values but %s has %d",
                              json_path, key, stat_names[k], n, stat_names[first], dims);
                goto out;
            }
        }
        if (first < 0) {
            rc = rtv_fail(RTV_E_INPUT, "%s: norm_stats.%s has none of mean, std, q01, q99",
                          json_path, key);
            goto out;
        }
        fill_defaults(s, is_state, have);
        if (is_state) s->state_dof = dims;
        else s->dof = dims;
    }
    if ((rc = check_vectors(s, json_path, "norm_stats.state", "norm_stats.actions"))) goto out;
    set_source(s, json_path);
out:
    cJSON_Delete(root);
    return rc;
}

int rtv_normstats_write_openpi(const rtv_norm_stats *s, const char *json_path)
{
    if (s->dof < 1 || s->dof > RTV_MAX_DOF || s->state_dof < 0 || s->state_dof > RTV_MAX_DOF)
        return rtv_fail(RTV_E_ARG, "%s: stats have dof %d / state_dof %d (1..%d)", json_path,
                        s->dof, s->state_dof, RTV_MAX_DOF);
    size_t pl = strlen(json_path);
    char *tmp = malloc(pl + 5);
    if (!tmp) return rtv_fail(RTV_E_NOMEM, "%s: out of memory", json_path);
    memcpy(tmp, json_path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = rtv_fail(RTV_E_OS, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    fprintf(f, "{\n  \"norm_stats\": {");
    for (int is_state = 1; is_state >= 0; is_state--) {
        int n = is_state ? (s->state_dof ? s->state_dof : s->dof) : s->dof;
        fprintf(f, "%s\n    \"%s\": {", is_state ? "" : ",", is_state ? "state" : "actions");
        for (int k = 0; k < N_STAT; k++) {
            const float *v = stat_ptr((rtv_norm_stats *)s, is_state, k);
            fprintf(f, "%s\n      \"%s\": [", k ? "," : "", stat_names[k]);
            for (int i = 0; i < n; i++) fprintf(f, "%s%.9g", i ? ", " : "", (double)v[i]);
            fprintf(f, "]");
        }
        fprintf(f, "\n    }");
    }
    fprintf(f, "\n  }\n}\n");
    int bad = ferror(f);
    bad |= fclose(f);
    int rc = RTV_OK;
    if (bad) {
        rc = rtv_fail(RTV_E_OS, "%s: write failed", tmp);
        unlink(tmp);
    } else if (rename(tmp, json_path)) {
        rc = rtv_fail(RTV_E_OS, "%s: cannot rename %s into place: %s", json_path, tmp,
                      strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* ---- LeRobot processor files ---- */

typedef struct lr_step {
    int index;         /* position in "steps" */
    char state_file[512];
    char feature[256]; /* "observation.state" / "action" */
    int feature_dims;  /* from config.features[feature].shape[0], 0 if absent */
    int has_mode;
    rtv_norm_mode mode;
    float eps;
} lr_step;

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Finds the (un)normalizer step in a processor JSON and reads what rtvla needs from it. */
static int lr_find_step(const char *path, const char *registry, const char *cls,
                        const char *ftype, const char *default_feature, lr_step *out)
{
    cJSON *root;
    int rc = parse_json_file(path, &root);
    if (rc) return rc;
    memset(out, 0, sizeof(*out));
    out->eps = 1e-8f;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    const cJSON *step = NULL;
    if (!cJSON_IsArray(steps)) {
        rc = rtv_fail(RTV_E_INPUT, "%s: no \"steps\" array (LeRobot processor file)", path);
        goto out;
    }
    int k = 0;
    for (const cJSON *e = steps->child; e; e = e->next, k++) {
        const cJSON *rn = cJSON_GetObjectItemCaseSensitive(e, "registry_name");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(e, "class");
        if ((cJSON_IsString(rn) && !strcmp(rn->valuestring, registry)) ||
            (cJSON_IsString(cl) && ends_with(cl->valuestring, cls))) {
            step = e;
            out->index = k;
            break;
        }
    }
    if (!step) {
        rc = rtv_fail(RTV_E_INPUT, "%s: no \"%s\" step in \"steps\" (%d steps)", path, registry,
                      k);
        goto out;
    }
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(step, "state_file");
    if (!cJSON_IsString(sf) || !*sf->valuestring || strchr(sf->valuestring, '/') ||
        strlen(sf->valuestring) >= sizeof(out->state_file)) {
        rc = rtv_fail(RTV_E_INPUT, "%s: steps[%d].state_file is missing or not a plain file "
                      "name", path, k);
        goto out;
    }
    snprintf(out->state_file, sizeof(out->state_file), "%s", sf->valuestring);
    snprintf(out->feature, sizeof(out->feature), "%s", default_feature);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(step, "config");
    if (cfg && !cJSON_IsObject(cfg)) {
        rc = rtv_fail(RTV_E_INPUT, "%s: steps[%d].config is not an object", path, k);
        goto out;
    }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(cfg, "eps");
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble >= 0.0) || eps->valuedouble > 1.0) {
            rc = rtv_fail(RTV_E_INPUT, "%s: steps[%d].config.eps is not a number in [0, 1]", path,
                          k);
            goto out;
        }
        out->eps = (float)eps->valuedouble;
    }
    /* The feature of type ftype; "observation.state"/"action" preferred if several. */
    const cJSON *feats = cJSON_GetObjectItemCaseSensitive(cfg, "features");
    int found = 0;
    for (const cJSON *f = feats ? feats->child : NULL; f; f = f->next) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(f, "type");
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, ftype)) continue;
        if (found && strcmp(f->string, default_feature)) continue;
        if (strlen(f->string) >= sizeof(out->feature)) continue;
        snprintf(out->feature, sizeof(out->feature), "%s", f->string);
        found = 1;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(f, "shape");
        out->feature_dims = 0;
        if (cJSON_IsArray(shape) && cJSON_GetArraySize(shape) == 1 &&
            cJSON_IsNumber(shape->child))
            out->feature_dims = (int)shape->child->valuedouble;
    }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cfg, "norm_map");
    const cJSON *m = nm ? cJSON_GetObjectItemCaseSensitive(nm, ftype) : NULL;
    if (m) {
        if (!cJSON_IsString(m)) {
            rc = rtv_fail(RTV_E_INPUT, "%s: steps[%d].config.norm_map.%s is not a string", path,
                          k, ftype);
            goto out;
        }
        out->has_mode = 1;
        if (!strcmp(m->valuestring, "MEAN_STD")) out->mode = RTV_NORM_MEAN_STD;
        else if (!strcmp(m->valuestring, "QUANTILES")) out->mode = RTV_NORM_QUANTILE;
        else if (!strcmp(m->valuestring, "IDENTITY")) out->mode = RTV_NORM_IDENTITY;
        else {
            rc = rtv_fail(RTV_E_UNSUPPORTED, "%s: steps[%d].config.norm_map.%s is %.40s; rtvla "
                          "supports MEAN_STD, QUANTILES and IDENTITY", path, k, ftype,
                          m->valuestring);
            goto out;
        }
    }
out:
    cJSON_Delete(root);
    return rc;
}

/* Reads "<feature>.<stat>" vectors from a processor state file. */
static int lr_read_stats(rtv_norm_stats *s, int is_state, const char *dir, const lr_step *st,
                         const char *json_path, rtv_norm_mode mode)
{
    char path[4096], name[300];
    int rc = join(path, sizeof(path), dir, st->state_file);
    if (rc) return rc;
    rtv_safetensors *sf;
    rc = rtv_st_open(&sf, path, RTV_ST_MMAP);
    if (rc) return rtv_fail_prefix(rc, "%s: steps[%d].state_file", json_path, st->index);
    int have[N_STAT] = {0}, dims = st->feature_dims, first = -1;
    for (int k = 0; k < N_STAT; k++) {
        snprintf(name, sizeof(name), "%s.%s", st->feature, stat_names[k]);
        const rtv_st_tensor *t = rtv_st_find(sf, name);
        if (!t) {
            if (mode_needs(mode, k)) {
                rc = rtv_fail(RTV_E_INPUT, "%s: no tensor '%s'; %s normalization needs it",
                              path, name, mode_name(mode));
                goto out;
            }
            continue;
        }
        const void *d = rtv_st_data(sf, t);
        if (!d) { rc = RTV_E_UNSUPPORTED; goto out; }
        int64_t n = rtv_st_numel(t);
        if (t->ndim != 1 || n < 1) {
            rc = rtv_fail(RTV_E_INPUT, "%s: tensor '%s' has %d dims, expected a vector", path,
                          name, t->ndim);
            goto out;
        }
        if (n > RTV_MAX_DOF) {
            rc = rtv_fail(RTV_E_UNSUPPORTED, "%s: tensor '%s' has %lld values, rtvla supports "
                          "at most %d dims", path, name, (long long)n, RTV_MAX_DOF);
            goto out;
        }
        if (dims && n != dims) {
            rc = rtv_fail(RTV_E_INPUT, "%s: tensor '%s' has %lld values, expected %d (%s)",
                          path, name, (long long)n, dims,
                          first >= 0 ? stat_names[first] : "shape in the processor JSON");
            goto out;
        }
        dims = (int)n;
        if (first < 0) first = k;
        float *v = stat_ptr(s, is_state, k);
        for (int i = 0; i < n; i++) {
            float x;
            if (t->dt == RTV_DT_F32) memcpy(&x, (const char *)d + 4 * i, 4);
            else {
                uint16_t h;
                memcpy(&h, (const char *)d + 2 * i, 2);
                x = half_to_f32(h, t->dt);
            }
            if (!isfinite(x)) {
                rc = rtv_fail(RTV_E_INPUT, "%s: tensor '%s'[%d] is %g", path, name, i, (double)x);
                goto out;
            }
            v[i] = x;
        }
        have[k] = 1;
    }
    if (!dims) {
        rc = rtv_fail(RTV_E_INPUT, "%s: no tensor '%s.*' and no shape for '%s' in %s", path,
                      st->feature, st->feature, json_path);
        goto out;
    }
    fill_defaults(s, is_state, have);
    if (is_state) s->state_dof = dims;
    else s->dof = dims;
out:
    rtv_st_close(sf);
    return rc;
}

int rtv_normstats_load_lerobot(rtv_norm_stats *s, const char *dir, rtv_norm_mode mode)
{
    char pre[4096], post[4096];
    lr_step ps, as;
    memset(s, 0, sizeof(*s));
    int rc = join(pre, sizeof(pre), dir, "policy_preprocessor.json");
    if (!rc) rc = join(post, sizeof(post), dir, "policy_postprocessor.json");
    if (rc) return rc;
    rc = lr_find_step(pre, "normalizer_processor", ".NormalizerProcessorStep", "STATE",
                          "observation.state", &ps);
    if (rc) return rc;
    rc = lr_find_step(post, "unnormalizer_processor", ".UnnormalizerProcessorStep", "ACTION",
                      "action", &as);
    if (rc) return rc;
    const lr_step *st2[2] = {&as, &ps};
    for (int is_state = 1; is_state >= 0; is_state--) {
        const lr_step *st = st2[is_state];
        if (st->has_mode && st->mode != mode)
            return rtv_fail(RTV_E_INPUT, "%s: steps[%d].config.norm_map.%s is %s but the model "
                            "is configured for %s", is_state ? pre : post, st->index,
                            is_state ? "STATE" : "ACTION", mode_name(st->mode),
                            mode_name(mode));
    }
    s->mode = mode;
    s->src = RTV_NORM_SRC_LEROBOT;
    s->eps = ps.eps;
    if ((rc = lr_read_stats(s, 1, dir, &ps, pre, mode))) return rc;
    if ((rc = lr_read_stats(s, 0, dir, &as, post, mode))) return rc;
    char sp[4096];
    if ((rc = join(sp, sizeof(sp), dir, ps.state_file))) return rc;
    if ((rc = check_vectors(s, sp, ps.feature, as.feature))) return rc;
    set_source(s, pre);
    return RTV_OK;
}

/* ---- search ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int rtv_normstats_load_dir(rtv_norm_stats *s, const char *dir, rtv_norm_mode mode)
{
    char p[4096], adir[4096], sub[4096];
    int rc;
    if ((rc = join(p, sizeof(p), dir, "policy_preprocessor.json"))) return rc;
    if (file_exists(p)) return rtv_normstats_load_lerobot(s, dir, mode);
    if ((rc = join(p, sizeof(p), dir, "norm_stats.json"))) return rc;
    if (file_exists(p)) return rtv_normstats_load_openpi(s, p, mode);

    if ((rc = join(adir, sizeof(adir), dir, "assets"))) return rc;
    DIR *d = opendir(adir);
    char *found[16];
    int nfound = 0, nassets = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            struct stat sb;
            if (e->d_name[0] == '.') continue;
            if (join(sub, sizeof(sub), adir, e->d_name) || stat(sub, &sb) || !S_ISDIR(sb.st_mode))
                continue;
            nassets++;
            if (join(p, sizeof(p), sub, "norm_stats.json")) continue;
            if (file_exists(p) && nfound < 16) found[nfound++] = strdup(p);
        }
        closedir(d);
    }
    for (int i = 0; i < nfound; i++)
        if (!found[i]) {
            for (int j = 0; j < nfound; j++) free(found[j]);
            return rtv_fail(RTV_E_NOMEM, "%s: out of memory", dir);
        }
    qsort(found, (size_t)nfound, sizeof(found[0]), cmp_str);
    if (nfound == 1) {
        rc = rtv_normstats_load_openpi(s, found[0], mode);
    } else if (nfound > 1) {
        char list[600];
        int k = 0;
        for (int i = 0; i < nfound && k < (int)sizeof(list) - 1; i++)
            k += snprintf(list + k, sizeof(list) - (size_t)k, "%s%s", i ? ", " : "", found[i]);
        rc = rtv_fail(RTV_E_INPUT, "%s: %d openpi asset stats found (%s); name the one for "
                      "this robot explicitly", dir, nfound, list);
    } else {
        rc = rtv_fail(RTV_E_INPUT, "%s: no normalization stats found; searched %s/"
                      "policy_preprocessor.json (LeRobot), %s/norm_stats.json (openpi), "
                      "%s/assets/*/norm_stats.json (openpi; %d asset dirs%s)", dir, dir, dir, dir,
                      nassets, d ? "" : ", no assets dir");
    }
    for (int i = 0; i < nfound; i++) free(found[i]);
    return rc;
}

int rtv_normstats_check(const rtv_norm_stats *s, int dof, int action_dim, const char *what)
{
    if (dof < 1 || dof > action_dim || action_dim > RTV_MAX_DOF)
        return rtv_fail(RTV_E_ARG, "%s: robot dof %d must be in 1..action_dim %d (<= %d)", what,
                        dof, action_dim, RTV_MAX_DOF);
    if (s->dof != dof)
        return rtv_fail(RTV_E_INPUT, "%s: stats (%s) have %d action dims, the robot has %d",
                        what, s->source, s->dof, dof);
    int sd = s->state_dof ? s->state_dof : s->dof;
    if (sd > action_dim)
        return rtv_fail(RTV_E_INPUT, "%s: stats (%s) have %d state dims, the model takes at most "
                        "%d", what, s->source, sd, action_dim);
    return RTV_OK;
}

/* ---- real-time paths ---- */

void rtv_normstats_state(const rtv_norm_stats *s, const float *raw, float *out, int padded)
{
    int n = s->state_dof ? s->state_dof : s->dof;
    if (n > padded) n = padded;
    for (int i = 0; i < n; i++) {
        float x = raw[i];
        switch (s->mode) {
        case RTV_NORM_MEAN_STD:
            x = (x - s->state_mean[i]) / (s->state_std[i] + s->eps);
            break;
        case RTV_NORM_QUANTILE: {
            float d = s->state_q99[i] - s->state_q01[i];
            if (s->src == RTV_NORM_SRC_OPENPI) x = (x - s->state_q01[i]) / (d + s->eps) * 2.0f - 1.0f;
            else x = 2.0f * (x - s->state_q01[i]) / (d == 0.0f ? s->eps : d) - 1.0f;
            break;
        }
        case RTV_NORM_IDENTITY: break;
        }
        out[i] = x;
    }
    for (int i = n; i < padded; i++) out[i] = 0.0f;
}

void rtv_normstats_unnorm_actions(const rtv_norm_stats *s, const float *in, int padded,
                                  int n_steps, float *out)
{
    int dof = s->dof;
    for (int t = 0; t < n_steps; t++)
        for (int i = 0; i < dof; i++) {
            float x = in[(size_t)t * (size_t)padded + (size_t)i];
            switch (s->mode) {
            case RTV_NORM_MEAN_STD:
                if (s->src == RTV_NORM_SRC_OPENPI)
                    x = x * (s->action_std[i] + s->eps) + s->action_mean[i];
                else
                    x = x * s->action_std[i] + s->action_mean[i];
                break;
            case RTV_NORM_QUANTILE: {
                float d = s->action_q99[i] - s->action_q01[i];
                if (s->src == RTV_NORM_SRC_OPENPI)
                    x = (x + 1.0f) / 2.0f * (d + s->eps) + s->action_q01[i];
                else
                    x = (x + 1.0f) * (d == 0.0f ? s->eps : d) / 2.0f + s->action_q01[i];
                break;
            }
            case RTV_NORM_IDENTITY: break;
            }
            out[(size_t)t * (size_t)dof + (size_t)i] = x;
        }
}
