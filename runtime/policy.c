/* runtime/policy.c — runtime/policy.h: checkpoint loading, seeded policies, the two thread
 * contexts, encode (VL thread) and act_rt (action thread).
 *
 * Memory: the policy owns one weight arena (runtime/weights.c); each features object, VL
 * context and action context owns one activation arena sized at creation for the worst case
 * (cfg.n_views views, max_prompt task tokens), plus host buffers allocated with it. encode and
 * act_rt allocate nothing; act_rt takes no lock and does no file I/O.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "encoder/tokenizer.h"
#include "runtime/config.h"
#include "runtime/policy_impl.h"
#include "runtime/status.h"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- seeded stats ---- */

static double stat_u(uint64_t seed, uint64_t i)
{
    uint64_t z = seed * 0xD1B54A32D192ED03ull + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53; /* [0, 1) */
}

void rtv_policy_random_stats(rtv_norm_stats *s, int dof, uint64_t seed)
{
    rtv_normstats_identity(s, dof);
    s->mode = RTV_NORM_MEAN_STD;
    s->src = RTV_NORM_SRC_OPENPI;
    s->eps = 1e-6f;
    /* joint-angle-like stats (degrees): mean in [-30, 30), std in [10, 40) */
    for (int d = 0; d < dof; d++) {
        s->state_mean[d] = (float)(60.0 * stat_u(seed, 4 * d) - 30.0);
        s->state_std[d] = (float)(10.0 + 30.0 * stat_u(seed, 4 * d + 1));
        s->action_mean[d] = (float)(60.0 * stat_u(seed, 4 * d + 2) - 30.0);
        s->action_std[d] = (float)(10.0 + 30.0 * stat_u(seed, 4 * d + 3));
        s->state_q01[d] = s->state_mean[d] - 2.0f * s->state_std[d];
        s->state_q99[d] = s->state_mean[d] + 2.0f * s->state_std[d];
        s->action_q01[d] = s->action_mean[d] - 2.0f * s->action_std[d];
        s->action_q99[d] = s->action_mean[d] + 2.0f * s->action_std[d];
    }
    snprintf(s->source, sizeof(s->source), "seeded stats (seed %llu)", (unsigned long long)seed);
}

/* ---- prompt ---- */

/* Length of a Python str.isspace() character at s (UTF-8), 0 if s is not whitespace. */
static int space_len(const unsigned char *s)
{
    if (*s == ' ' || (*s >= 0x09 && *s <= 0x0d) || (*s >= 0x1c && *s <= 0x1f))
        return 1;
    if (s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
        return 2;
    if (s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80)
        return 3; /* U+1680 */
    if (s[0] == 0xe2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 ||
                                         s[2] == 0xa9 || s[2] == 0xaf))
        return 3; /* U+2000..200A, 2028, 2029, 202F */
    if (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f)
        return 3; /* U+205F */
    if (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)
        return 3; /* U+3000 */
    return 0;
}

int rtv_policy_tokenize(const rtv_tokenizer *t, const char *task, int32_t *ids, int max, int *n,
                        int *n_needed)
{
    static __thread char clean[RTV_TOKENIZER_MAX_TEXT + 1];
    *n = 0;
    if (n_needed)
        *n_needed = 0;
    if (!task[0])
        return RTV_OK; /* empty task: a vision-only prefix */
    /* openpi: strip(), then '_' -> ' ' and '\n' -> ' ' */
    const unsigned char *b = (const unsigned char *)task, *e = b + strlen(task);
    for (int k; b < e && (k = space_len(b)); b += k)
        ;
    const unsigned char *end = b; /* one past the last non-space byte */
    for (const unsigned char *q = b; q < e;) {
        int k = space_len(q);
        if (k)
            q += k;
        else
            end = ++q;
    }
    e = end;
    size_t len = (size_t)(e - b);
    if (len > RTV_TOKENIZER_MAX_TEXT)
        return rtv_fail(RTV_E_ARG, "task: %zu bytes, expected at most %d", len,
                        RTV_TOKENIZER_MAX_TEXT);
    for (size_t i = 0; i < len; i++)
        clean[i] = (b[i] == '_' || b[i] == '\n') ? ' ' : (char)b[i];
    clean[len] = 0;

    int bos = rtv_tokenizer_bos(t);
    if (bos < 0)
        return rtv_fail(RTV_E_INPUT, "tokenizer: the model has no BOS piece");
    int32_t nl[16];
    int n_text = 0, need_text = 0, n_nl = 0, need_nl = 0, st;
    if (max > 1 &&
        (st = rtv_tokenizer_encode(t, clean, 0, ids + 1, max - 1, &n_text, &need_text)))
        return st;
    if (max <= 1 && (st = rtv_tokenizer_encode(t, clean, 0, nl, 0, &n_text, &need_text)))
        return st;
    if ((st = rtv_tokenizer_encode(t, "\n", 0, nl, 16, &n_nl, &need_nl)))
        return st;
    int total = 1 + need_text + need_nl;
    if (max > 0)
        ids[0] = bos;
    int w = max > 0 ? 1 + n_text : 0;
    for (int i = 0; i < n_nl && w < max; i++)
        ids[w++] = nl[i];
    *n = w;
    if (n_needed)
        *n_needed = total;
    return RTV_OK;
}

/* ---- config.json ---- */

static int check_config_json(const rtv_model_cfg *c, const char *dir)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return RTV_OK; /* optional: every tensor shape is checked anyway */
    char *buf = NULL;
    long len = -1;
    if (!fseek(f, 0, SEEK_END) && (len = ftell(f)) >= 0 && len < (1 << 24) && !fseek(f, 0, SEEK_SET)
        && (buf = malloc((size_t)len + 1)) && fread(buf, 1, (size_t)len, f) == (size_t)len)
        buf[len] = 0;
    else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf)
        return rtv_fail(RTV_E_INPUT, "%s: cannot read (or larger than 16 MiB)", path);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return rtv_fail(RTV_E_INPUT, "%s: not a JSON object", path);
    }
    static const struct { const char *key; size_t off; int is_float, reg_only; } keys[] = {
#define KI(k) {#k, offsetof(rtv_model_cfg, k), 0, 0}
#define KF(k) {#k, offsetof(rtv_model_cfg, k), 1, 0}
        KI(image_size), KI(patch), KI(vis_width), KI(vis_depth), KI(vis_heads), KI(vis_mlp),
        KF(vis_ln_eps), KI(llm_width), KI(llm_depth), KI(llm_mlp), KI(vocab), KI(n_heads),
        KI(n_kv_heads), KI(head_dim), KF(rope_theta), KF(rms_eps), KI(exp_width), KI(exp_mlp),
        KI(reg_hidden), KI(action_dim), KI(history),
        {"chunk", offsetof(rtv_model_cfg, chunk), 0, 1},
#undef KI
#undef KF
    };
    int ret = RTV_OK;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !ret; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i].key);
        if (!v)
            continue;
        if (keys[i].reg_only && c->head != RTV_HEAD_REGRESSION)
            continue;
        if (!cJSON_IsNumber(v)) {
            ret = rtv_fail(RTV_E_INPUT, "%s: '%s' is not a number", path, keys[i].key);
            break;
        }
        const char *field = (const char *)c + keys[i].off;
        if (keys[i].is_float) {
            float want;
            memcpy(&want, field, sizeof(want));
            if (fabs(v->valuedouble - want) > 1e-6 * fabs(want) + 1e-12)
                ret = rtv_fail(RTV_E_INPUT, "%s: %s is %g, but the config (model '%s') has %g",
                               path, keys[i].key, v->valuedouble, c->preset, (double)want);
        } else {
            int want;
            memcpy(&want, field, sizeof(want));
            if (v->valuedouble != (double)want)
                ret = rtv_fail(RTV_E_INPUT, "%s: %s is %g, but the config (model '%s') has %d",
                               path, keys[i].key, v->valuedouble, c->preset, want);
        }
    }
    cJSON_Delete(j);
    return ret;
}

/* ---- policy ---- */

static int policy_new(rtv_policy **out, const rtv_model_cfg *cfg, const rtv_backend *b)
{
    *out = NULL;
    int st = rtv_model_cfg_validate(cfg);
    if (st)
        return st;
    if (!b)
        return rtv_fail(RTV_E_ARG, "policy: no backend");
    rtv_policy *p = calloc(1, sizeof(*p));
    if (!p)
        return rtv_fail(RTV_E_NOMEM, "policy: out of memory");
    p->cfg = *cfg;
    p->b = b;
    *out = p;
    return RTV_OK;
}

void rtv_policy_free(rtv_policy *p)
{
    if (!p)
        return;
    rtv_arena_free(&p->w_arena);
    free(p->vis_layers);
    free(p->llm_layers);
    free(p->exp_layers);
    if (p->st)
        rtv_st_close(p->st);
    rtv_tokenizer_free(p->tok);
    free(p);
}

static int check_tokenizer(const rtv_policy *p, const char *what)
{
    int nv = rtv_tokenizer_vocab_size(p->tok);
    if (nv > p->cfg.vocab)
        return rtv_fail(RTV_E_INPUT, "%s: %d pieces, but the embedding table has %d rows (vocab)",
                        what, nv, p->cfg.vocab);
    if (rtv_tokenizer_bos(p->tok) < 0)
        return rtv_fail(RTV_E_INPUT, "%s: the model has no BOS piece", what);
    return RTV_OK;
}

static int resolve_dof(rtv_policy *p, const char *what)
{
    rtv_model_cfg *c = &p->cfg;
    if (c->robot_dof == 0)
        c->robot_dof = p->stats.dof;
    int st = rtv_normstats_check(&p->stats, c->robot_dof, c->action_dim, what);
    if (st)
        return st;
    if (p->stats.state_dof && p->stats.state_dof != p->stats.dof)
        return rtv_fail(RTV_E_INPUT, "%s: stats (%s) have %d state dims and %d action dims; "
                        "rtvla needs them equal (robot_dof)", what, p->stats.source,
                        p->stats.state_dof, p->stats.dof);
    return RTV_OK;
}

int rtv_policy_load(rtv_policy **out, const rtv_model_cfg *cfg, const rtv_backend *b,
                    const char *dir)
{
    rtv_policy *p;
    char path[600];
    int st = policy_new(&p, cfg, b);
    if (st)
        return st;
    snprintf(p->ckpt_dir, sizeof(p->ckpt_dir), "%s", dir);
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        st = rtv_fail(RTV_E_INPUT, "checkpoint '%s': %s", dir,
                      errno == ENOENT ? "no such directory" : "not a directory");
        goto fail;
    }
    if ((st = check_config_json(&p->cfg, dir)))
        goto fail;
    if ((st = rtv_normstats_load_dir(&p->stats, dir, RTV_NORM_MEAN_STD)))
        goto fail;
    if ((st = resolve_dof(p, dir)))
        goto fail;
    snprintf(path, sizeof(path), "%s/tokenizer.model", dir);
    if ((st = rtv_tokenizer_load(&p->tok, path)) || (st = check_tokenizer(p, path)))
        goto fail;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if ((st = rtv_st_open(&p->st, path, RTV_ST_MMAP)))
        goto fail;
    if ((st = rtv_weights_load(p, p->st)))
        goto fail;
    *out = p;
    return RTV_OK;
fail:
    rtv_policy_free(p);
    return st;
}

int rtv_policy_random(rtv_policy **out, const rtv_model_cfg *cfg, const rtv_backend *b,
                      uint64_t seed)
{
    rtv_policy *p;
    int st = policy_new(&p, cfg, b);
    if (st)
        return st;
    snprintf(p->ckpt_dir, sizeof(p->ckpt_dir), "random (seed %llu)", (unsigned long long)seed);
    if (p->cfg.robot_dof == 0)
        p->cfg.robot_dof = p->cfg.action_dim < 6 ? p->cfg.action_dim : 6;
    rtv_policy_random_stats(&p->stats, p->cfg.robot_dof, seed);
    if ((st = resolve_dof(p, "random policy")))
        goto fail;
    /* The same synthetic tokenizer `rtvla model init` writes, through a temporary file. */
    char tmp[] = "/tmp/rtvla-tokenizer-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = rtv_fail(RTV_E_OS, "random policy: mkstemp(%s): %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    st = rtv_tokenizer_write_synthetic(tmp, p->cfg.vocab);
    if (!st)
        st = rtv_tokenizer_load(&p->tok, tmp);
    unlink(tmp);
    if (st || (st = check_tokenizer(p, "synthetic tokenizer")))
        goto fail;
    if ((st = rtv_weights_random(p, seed)))
        goto fail;
    *out = p;
    return RTV_OK;
fail:
    rtv_policy_free(p);
    return st;
}

int rtv_policy_from_config(rtv_policy **out, const rtv_config *cfg)
{
    const rtv_backend *b;
    int st = rtv_backend_by_name(cfg->model.backend, &b);
    *out = NULL;
    if (st)
        return rtv_fail_prefix(st, "%s: model.backend", cfg->path);
    if (!strcmp(cfg->model.checkpoint, "random"))
        st = rtv_policy_random(out, &cfg->model.m, b, cfg->model.seed);
    else
        st = rtv_policy_load(out, &cfg->model.m, b, cfg->model.checkpoint);
    return st ? rtv_fail_prefix(st, "%s: model", cfg->path) : RTV_OK;
}

const rtv_model_cfg *rtv_policy_cfg(const rtv_policy *p) { return &p->cfg; }
const rtv_norm_stats *rtv_policy_stats(const rtv_policy *p) { return &p->stats; }

/* ---- features ---- */

typedef struct features_box {
    rtv_features f; /* first: rtv_features_free casts back */
    rtv_arena a;
} features_box;

int rtv_features_new(rtv_policy *p, rtv_features **out)
{
    const rtv_model_cfg *c = &p->cfg;
    const size_t L = (size_t)c->llm_depth, ab = (size_t)p->b->act_bytes;
    /* rows past max_prefix: the attention op may read up to RTV_ATTN_KEY_PAD(n) key rows;
     * K and V of a layer interleaved by row (rtv_features.k) */
    const size_t kv = (size_t)RTV_ATTN_KEY_PAD(rtv_model_max_prefix(c)) * 2 * c->n_kv_heads *
                      c->head_dim * ab;
    const size_t kv_al = (kv + 255) & ~(size_t)255;
    /* pooled features only where a head reads them (the regression head) */
    const size_t pooled = c->head == RTV_HEAD_REGRESSION
                              ? ((size_t)c->llm_width * ab + 255) & ~(size_t)255
                              : 0;
    *out = NULL;
    features_box *fb = calloc(1, sizeof(*fb));
    void **ptrs = calloc(2 * L, sizeof(void *));
    int st;
    if (!fb || !ptrs) {
        free(fb);
        free(ptrs);
        return rtv_fail(RTV_E_NOMEM, "features: out of memory");
    }
    fb->f.k = ptrs;
    fb->f.v = ptrs + L;
    if ((st = rtv_arena_init(&fb->a, p->b, L * kv_al + pooled))) {
        rtv_features_free(p, &fb->f);
        return rtv_fail_prefix(st, "features");
    }
    for (size_t l = 0; l < L; l++) {
        fb->f.k[l] = rtv_arena_take(&fb->a, kv);
        fb->f.v[l] = rtv_act_at(p->b, fb->f.k[l], (size_t)c->n_kv_heads * c->head_dim);
    }
    fb->f.pooled = pooled ? rtv_arena_take(&fb->a, (size_t)c->llm_width * ab) : NULL;
    *out = &fb->f;
    return RTV_OK;
}

void rtv_features_free(rtv_policy *p, rtv_features *f)
{
    (void)p;
    if (!f)
        return;
    features_box *fb = (features_box *)f;
    rtv_arena_free(&fb->a);
    free(fb->f.k);
    free(fb);
}

/* ---- CUDA graphs ----
 * On a backend with graph capture, the device work of one encode (vision tower + prefix) and
 * of one action cycle (sensor encoding + head) is captured once and replayed. Inputs (frames,
 * task tokens, state, noise) are uploaded before the replay into fixed workspace buffers, so a
 * graph depends only on the feature object it reads or writes and on the prefix length: those
 * are the cache key. The mailbox has three slots, so a cache of four graphs per context never
 * recaptures in steady state. RTV_GRAPHS=0 turns graphs off (eager launches, same results);
 * a stage profile (bench model's per-stage figures) also runs eager, as it syncs per stage. */
#define RTV_GRAPH_SLOTS 4
typedef struct graph_entry {
    const void *f;
    int n_prefix;
    void *g;
    uint64_t used;
} graph_entry;
typedef struct graph_cache {
    graph_entry e[RTV_GRAPH_SLOTS];
    uint64_t tick;
    int captures; /* graphs captured so far (tests and bench read it) */
} graph_cache;

static int graphs_enabled(const rtv_backend *b)
{
    const char *e = getenv("RTV_GRAPHS");
    return b->capture_begin && !(e && e[0] == '0');
}

static void graph_cache_free(const rtv_backend *b, graph_cache *gc)
{
    for (int i = 0; i < RTV_GRAPH_SLOTS; i++)
        if (gc->e[i].g) {
            b->graph_free(gc->e[i].g);
            gc->e[i].g = NULL;
        }
}

/* Runs body(arg) on stream s: replayed from the cache entry for (f, n_prefix), captured first
 * when there is none (the least recently used entry makes room). */
static int run_graphed(const rtv_backend *b, rtv_stream *s, graph_cache *gc, const void *f,
                       int n_prefix, int (*body)(void *), void *arg)
{
    graph_entry *hit = NULL, *victim = &gc->e[0];
    for (int i = 0; i < RTV_GRAPH_SLOTS; i++) {
        graph_entry *e = &gc->e[i];
        if (e->g && e->f == f && e->n_prefix == n_prefix) {
            hit = e;
            break;
        }
        if (!e->g ? victim->g != NULL : (victim->g && e->used < victim->used))
            victim = e;
    }
    if (!hit) {
        if (victim->g) {
            b->graph_free(victim->g);
            victim->g = NULL;
        }
        /* The first call runs eagerly (lazily made backend state, such as GEMM plans that
         * time their candidates, cannot be made inside a capture) and gives this call's
         * result; the capture after it only records the same launches for later calls. */
        int st = body(arg);
        if (st)
            return st;
        if ((st = b->capture_begin(s)))
            return rtv_fail_prefix(st, "graph capture");
        int body_st = body(arg);
        void *g = NULL;
        st = b->capture_end(s, &g);
        if (body_st || st) {
            if (g)
                b->graph_free(g);
            return body_st ? body_st : rtv_fail_prefix(st, "graph capture");
        }
        victim->f = f;
        victim->n_prefix = n_prefix;
        victim->g = g;
        victim->used = ++gc->tick;
        gc->captures++;
        return RTV_OK;
    }
    hit->used = ++gc->tick;
    return b->graph_launch(s, hit->g);
}

/* ---- contexts ---- */

/* Takes `elems` activations from arena a (dry: adds their bytes to *sum). */
static void *take(rtv_arena *a, const rtv_backend *b, size_t elems, int dry, size_t *sum)
{
    size_t bytes = ((elems * (size_t)b->act_bytes) + 255) & ~(size_t)255;
    *sum += bytes;
    return dry ? NULL : rtv_arena_take(a, bytes);
}

struct rtv_vl_ctx {
    rtv_policy *p;
    rtv_stream *s;
    rtv_arena a;
    rtv_vl_ws ws;
    int32_t *tokens;   /* [max_prompt] */
    int n_tokens;
    float *emb;        /* host (max_prompt, D): task token embeddings x sqrt(D) */
    uint32_t task_id;
    rtv_stage_prof *prof;
    graph_cache graphs;
};

static size_t vl_layout(rtv_vl_ctx *c, int dry)
{
    const rtv_model_cfg *m = &c->p->cfg;
    const rtv_backend *b = c->p->b;
    rtv_vl_ws *w = &c->ws;
    const size_t V = (size_t)m->n_views, T = (size_t)rtv_model_tokens_per_view(m);
    const size_t S = (size_t)m->image_size, P = (size_t)rtv_model_max_prefix(m);
    const size_t Wv = (size_t)m->vis_width, D = (size_t)m->llm_width;
    size_t sum = 0;
    w->img = take(&c->a, b, V * S * S * 3, dry, &sum);
    w->patches = take(&c->a, b, V * T * 3 * m->patch * m->patch, dry, &sum);
    w->vh = take(&c->a, b, V * T * Wv, dry, &sum);
    w->vn = take(&c->a, b, V * T * Wv, dry, &sum);
    w->vqkv = take(&c->a, b, V * T * 3 * Wv, dry, &sum);
    w->vatt = take(&c->a, b, V * T * Wv, dry, &sum);
    w->vmlp = take(&c->a, b, V * T * m->vis_mlp, dry, &sum);
    w->x = take(&c->a, b, P * D, dry, &sum);
    w->xn = take(&c->a, b, P * D, dry, &sum);
    w->qkv = take(&c->a, b, P * rtv_model_qkv_dim(m), dry, &sum);
    w->att = take(&c->a, b, P * m->n_heads * m->head_dim, dry, &sum);
    w->gu = take(&c->a, b, P * 2 * m->llm_mlp, dry, &sum);
    w->ff = take(&c->a, b, P * m->llm_mlp, dry, &sum);
    return sum;
}

int rtv_vl_ctx_new(rtv_policy *p, rtv_vl_ctx **out)
{
    const rtv_model_cfg *m = &p->cfg;
    int st;
    *out = NULL;
    rtv_vl_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return rtv_fail(RTV_E_NOMEM, "VL context: out of memory");
    c->p = p;
    c->tokens = calloc((size_t)m->max_prompt, sizeof(*c->tokens));
    c->emb = calloc((size_t)m->max_prompt * m->llm_width, sizeof(*c->emb));
    if (!c->tokens || !c->emb) {
        st = rtv_fail(RTV_E_NOMEM, "VL context: out of memory");
        goto fail;
    }
    if ((st = p->b->stream_new(&c->s)))
        goto fail;
    if ((st = rtv_arena_init(&c->a, p->b, vl_layout(c, 1))))
        goto fail;
    vl_layout(c, 0);
    *out = c;
    return RTV_OK;
fail:
    rtv_vl_ctx_free(c);
    return rtv_fail_prefix(st, "VL context");
}

void rtv_vl_ctx_free(rtv_vl_ctx *c)
{
    if (!c)
        return;
    graph_cache_free(c->p->b, &c->graphs);
    rtv_arena_free(&c->a);
    if (c->s)
        c->p->b->stream_free(c->s);
    free(c->tokens);
    free(c->emb);
    free(c);
}

void rtv_vl_ctx_set_profile(rtv_vl_ctx *c, rtv_stage_prof *p) { c->prof = p; }
const rtv_vl_ws *rtv_vl_ctx_ws(const rtv_vl_ctx *c) { return &c->ws; }

int rtv_vl_set_task(rtv_vl_ctx *c, const char *task)
{
    const rtv_policy *p = c->p;
    const int D = p->cfg.llm_width, max = p->cfg.max_prompt;
    int n, needed, st;
    if (!task)
        return rtv_fail(RTV_E_ARG, "task: NULL");
    if ((st = rtv_policy_tokenize(p->tok, task, c->tokens, max, &n, &needed)))
        return rtv_fail_prefix(st, "task '%.40s'", task);
    for (int i = 0; i < n; i++)
        if ((st = rtv_weights_embed_row(p, c->tokens[i], c->emb + (size_t)i * D)))
            return rtv_fail_prefix(st, "task '%.40s' (tokenizer %s)", task, p->ckpt_dir);
    c->n_tokens = n;
    c->task_id++;
    return needed > n ? needed - n : RTV_OK;
}

static void stage_end(rtv_stage_prof *prof, const rtv_backend *b, rtv_stream *s, int stage,
                      int64_t *t0)
{
    if (!prof)
        return;
    b->sync(s);
    int64_t t = now_ns();
    prof->t_ns[stage] += t - *t0;
    *t0 = t;
}

typedef struct encode_args {
    rtv_vl_ctx *c;
    int n_views, n_prefix;
    rtv_features *f;
    int64_t *prof_t0; /* eager with a stage profile: vision's time ends here */
} encode_args;

static int encode_body(void *arg)
{
    encode_args *a = arg;
    rtv_vl_ctx *c = a->c;
    int st;
    if ((st = rtv_siglip_forward(c->p, c->s, &c->ws, a->n_views)))
        return rtv_fail_prefix(st, "encode: vision tower");
    if (a->prof_t0)
        stage_end(c->prof, c->p->b, c->s, RTV_STAGE_VISION, a->prof_t0);
    if ((st = rtv_gemma_prefix(c->p, c->s, &c->ws, a->n_prefix, a->f)))
        return rtv_fail_prefix(st, "encode: prefix");
    return RTV_OK;
}

int rtv_vl_graph_captures(const rtv_vl_ctx *c) { return c->graphs.captures; }

int rtv_policy_encode(rtv_vl_ctx *c, const rtv_frame *views, int n_views, rtv_features *f)
{
    const rtv_policy *p = c->p;
    const rtv_backend *b = p->b;
    const rtv_model_cfg *m = &p->cfg;
    const int S = m->image_size, T = rtv_model_tokens_per_view(m), D = m->llm_width;
    int st;
    if (n_views != m->n_views)
        return rtv_fail(RTV_E_ARG, "encode: %d views given, the model is configured for %d "
                        "(model.views)", n_views, m->n_views);
    for (int v = 0; v < n_views; v++)
        if (!views[v].rgb || views[v].w < 1 || views[v].h < 1 || views[v].stride < 3 * views[v].w)
            return rtv_fail(RTV_E_ARG, "encode: view %d is empty or malformed (%dx%d, stride %d)",
                            v, views[v].w, views[v].h, views[v].stride);
    int64_t t0 = now_ns();
    f->t_encode_start_ns = t0;
    /* inputs: frames (uploaded and preprocessed), task token embeddings */
    for (int v = 0; v < n_views; v++)
        if ((st = b->preprocess(c->s, rtv_act_at(b, c->ws.img, (size_t)v * S * S * 3),
                                views[v].rgb, views[v].w, views[v].h, views[v].stride, S)))
            return rtv_fail_prefix(st, "encode: view %d", v);
    const int n_img = n_views * T, n_prefix = n_img + c->n_tokens;
    if (c->n_tokens &&
        (st = b->upload(c->s, rtv_act_at(b, c->ws.x, (size_t)n_img * D), c->emb,
                        (size_t)c->n_tokens * D)))
        return rtv_fail_prefix(st, "encode: task tokens");
    stage_end(c->prof, b, c->s, RTV_STAGE_PREPROCESS, &t0);
    /* device work: vision tower, projector, prefix LLM */
    encode_args ea = { c, n_views, n_prefix, f, 0 };
    if (c->prof || !graphs_enabled(b)) {
        ea.prof_t0 = &t0;
        st = encode_body(&ea);
    } else {
        st = run_graphed(b, c->s, &c->graphs, f, n_prefix, encode_body, &ea);
    }
    if (st)
        return st;
    if ((st = b->sync(c->s)))
        return rtv_fail_prefix(st, "encode");
    stage_end(c->prof, b, c->s, RTV_STAGE_PREFIX, &t0);
    f->n_prefix = n_prefix;
    f->task_id = c->task_id;
    for (int v = 0; v < n_views && v < 8; v++)
        f->t_capture_ns[v] = views[v].t_capture_ns;
    f->t_encode_end_ns = now_ns();
    return RTV_OK;
}

struct rtv_act_ctx {
    rtv_policy *p;
    rtv_stream *s;
    rtv_arena a;
    rtv_act_ws ws;
    void **kv_ptrs;     /* [L] behind ws.lq */
    float *state_norm;  /* host (A) */
    float *hist;        /* host (history * 3 * dof) scaled, or NULL */
    float *noise;       /* host (H, A) */
    float *out;         /* host (H, A) normalized chunk */
    rtv_stage_prof *prof;
    graph_cache graphs;
};

static size_t act_layout(rtv_act_ctx *c, int dry)
{
    const rtv_model_cfg *m = &c->p->cfg;
    const rtv_backend *b = c->p->b;
    rtv_act_ws *w = &c->ws;
    const size_t H = (size_t)m->chunk, A = (size_t)m->action_dim, We = (size_t)m->exp_width;
    const size_t R = (size_t)m->reg_hidden;
    size_t sum = 0;
    w->state = take(&c->a, b, A, dry, &sum);
    w->hist = m->history ? take(&c->a, b, 3 * (size_t)m->history * m->robot_dof, dry, &sum)
                         : NULL;
    w->sens = take(&c->a, b, (size_t)rtv_weights_head_width(m), dry, &sum);
    w->xt = take(&c->a, b, H * A, dry, &sum);
    if (m->head == RTV_HEAD_FLOW) {
        w->v = take(&c->a, b, H * A, dry, &sum);
        w->aemb = take(&c->a, b, H * We, dry, &sum);
        w->sx = take(&c->a, b, (1 + H) * We, dry, &sum);
        w->sxn = take(&c->a, b, (1 + H) * We, dry, &sum);
        w->qkv = take(&c->a, b, (1 + H) * rtv_model_qkv_dim(m), dry, &sum);
        w->att = take(&c->a, b, (1 + H) * m->n_heads * m->head_dim, dry, &sum);
        w->gu = take(&c->a, b, (1 + H) * 2 * m->exp_mlp, dry, &sum);
        w->ff = take(&c->a, b, (1 + H) * m->exp_mlp, dry, &sum);
        const size_t P = (size_t)rtv_model_max_prefix(m), QKV = (size_t)rtv_model_qkv_dim(m);
        for (int l = 0; l < m->llm_depth; l++) {
            void *q = take(&c->a, b, RTV_ATTN_KEY_PAD(P + 1 + H) * QKV, dry, &sum);
            if (!dry)
                w->lq[l] = q;
        }
    } else {
        w->rgu = take(&c->a, b, 2 * R, dry, &sum);
        w->rh1 = take(&c->a, b, R, dry, &sum);
        w->rh2 = take(&c->a, b, R, dry, &sum);
    }
    return sum;
}

int rtv_act_ctx_new(rtv_policy *p, rtv_act_ctx **out)
{
    const rtv_model_cfg *m = &p->cfg;
    const size_t HA = (size_t)m->chunk * m->action_dim;
    int st;
    *out = NULL;
    rtv_act_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return rtv_fail(RTV_E_NOMEM, "action context: out of memory");
    c->p = p;
    c->kv_ptrs = calloc((size_t)m->llm_depth, sizeof(void *));
    c->state_norm = calloc((size_t)m->action_dim, sizeof(float));
    c->noise = calloc(HA, sizeof(float));
    c->out = calloc(HA, sizeof(float));
    c->hist = m->history ? calloc(3 * (size_t)m->history * m->robot_dof, sizeof(float)) : NULL;
    if (!c->kv_ptrs || !c->state_norm || !c->noise || !c->out || (m->history && !c->hist)) {
        st = rtv_fail(RTV_E_NOMEM, "out of memory");
        goto fail;
    }
    c->ws.lq = c->kv_ptrs;
    if ((st = p->b->stream_new(&c->s)))
        goto fail;
    if ((st = rtv_arena_init(&c->a, p->b, act_layout(c, 1))))
        goto fail;
    act_layout(c, 0);
    if (m->head == RTV_HEAD_REGRESSION) {
        /* second half of rgu = 1.0: geglu(rgu) = gelu(h0) (action/regression.c) */
        const int R = m->reg_hidden;
        float *ones = malloc((size_t)R * sizeof(float));
        if (!ones) {
            st = rtv_fail(RTV_E_NOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < R; i++)
            ones[i] = 1.0f;
        st = p->b->upload(c->s, rtv_act_at(p->b, c->ws.rgu, (size_t)R), ones, (size_t)R);
        if (!st)
            st = p->b->sync(c->s);
        free(ones);
        if (st)
            goto fail;
    }
    *out = c;
    return RTV_OK;
fail:
    rtv_act_ctx_free(c);
    return rtv_fail_prefix(st, "action context");
}

void rtv_act_ctx_free(rtv_act_ctx *c)
{
    if (!c)
        return;
    graph_cache_free(c->p->b, &c->graphs);
    rtv_arena_free(&c->a);
    if (c->s)
        c->p->b->stream_free(c->s);
    free(c->kv_ptrs);
    free(c->state_norm);
    free(c->noise);
    free(c->out);
    free(c->hist);
    free(c);
}

void rtv_act_ctx_set_profile(rtv_act_ctx *c, rtv_stage_prof *p) { c->prof = p; }
const float *rtv_act_ctx_normalized(const rtv_act_ctx *c) { return c->out; }

typedef struct act_args {
    rtv_act_ctx *c;
    const rtv_features *f;
    int64_t *prof_t0; /* eager with a stage profile: the sensor stage's time ends here */
} act_args;

static int act_body(void *arg)
{
    act_args *a = arg;
    rtv_act_ctx *c = a->c;
    const rtv_policy *p = c->p;
    int st;
    if ((st = rtv_sensor_encode(p, c->s, &c->ws)))
        return st;
    if (a->prof_t0)
        stage_end(c->prof, p->b, c->s, RTV_STAGE_SENSOR, a->prof_t0);
    if (p->cfg.head == RTV_HEAD_FLOW)
        return rtv_flow_sample(p, c->s, &c->ws, a->f);
    return rtv_regression_forward(p, c->s, &c->ws, a->f);
}

int rtv_act_graph_captures(const rtv_act_ctx *c) { return c->graphs.captures; }
int rtv_act_expert_fused(const rtv_act_ctx *c) { return c->ws.expert_fused; }

int rtv_policy_act_rt(rtv_act_ctx *c, const rtv_features *f, const float *state_raw,
                      const float *history, uint64_t seed, float *chunk)
{
    const rtv_policy *p = c->p;
    const rtv_backend *b = p->b;
    const rtv_model_cfg *m = &p->cfg;
    const int HA = m->chunk * m->action_dim;
    int st;
    if (!f || f->n_prefix < 1 || f->n_prefix > rtv_model_max_prefix(m))
        return rtv_fail(RTV_E_ARG, "act: features hold no encoding (n_prefix %d)",
                        f ? f->n_prefix : -1);
    if (!state_raw || !chunk || (m->history && !history))
        return rtv_fail(RTV_E_ARG, "act: state, chunk%s must not be NULL",
                        m->history ? " and history" : "");
    int64_t t0 = now_ns();
    /* inputs: normalized state, scaled history, noise */
    rtv_normstats_state(&p->stats, state_raw, c->state_norm, m->action_dim);
    if ((st = b->upload(c->s, c->ws.state, c->state_norm, (size_t)m->action_dim)))
        return rtv_fail_prefix(st, "act: state");
    if (m->history) {
        rtv_sensor_scale_history(p, history, c->hist);
        if ((st = b->upload(c->s, c->ws.hist, c->hist, 3 * (size_t)m->history * m->robot_dof)))
            return rtv_fail_prefix(st, "act: history");
    }
    if (m->head == RTV_HEAD_FLOW) {
        rtv_flow_noise(seed, c->noise, HA);
        if ((st = b->upload(c->s, c->ws.xt, c->noise, (size_t)HA)))
            return rtv_fail_prefix(st, "act: noise");
    }
    /* device work: sensor encoding and head */
    act_args aa = { c, f, NULL };
    if (c->prof || !graphs_enabled(b)) {
        aa.prof_t0 = &t0;
        st = act_body(&aa);
    } else {
        st = run_graphed(b, c->s, &c->graphs, f, f->n_prefix, act_body, &aa);
    }
    if (st || (st = b->download(c->s, c->out, c->ws.xt, (size_t)HA)) || (st = b->sync(c->s)))
        return st;
    stage_end(c->prof, b, c->s, RTV_STAGE_HEAD, &t0);
    for (int i = 0; i < HA; i++)
        if (!isfinite(c->out[i]))
            return rtv_fail(RTV_E_DEVICE, "act: the head produced a non-finite action "
                            "(element %d)", i);
    rtv_normstats_unnorm_actions(&p->stats, c->out, m->action_dim, m->chunk, chunk);
    return RTV_OK;
}
