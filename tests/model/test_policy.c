/* tests/model/test_policy.c — the policy end to end on pi0-tiny, from generated checkpoint
 * directories (f32 and bf16) and from seeded weights: identical values across the three,
 * determinism, sensitivity to image / task / state / seed, both heads, 1 and 3 views, prompt
 * length 0 and > 0, truncation, sensor history, load errors (missing tensor, wrong shape,
 * a flow-only file asked for the regression head, config.json mismatch, "model." names and
 * the tied lm_head embedding), and the expert_layers op's contract with the model.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "encoder/tokenizer.h"
#include "runtime/policy_impl.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

#define H 50
#define DOF 6
static const rtv_backend *B;
static char root[256];

/* Deterministic test images: a gradient with a pattern depending on k. */
typedef struct img {
    uint8_t *px;
    rtv_frame f;
} img;

static img make_img(int w, int h, int k)
{
    img m;
    m.px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                m.px[((size_t)y * w + x) * 3 + c] =
                    (uint8_t)((x * (c + 1) * 7 + y * 3 * (k + 1) + ((x / 16 + y / 16 + k) % 2) * 90) & 255);
    m.f = (rtv_frame){.rgb = m.px, .w = w, .h = h, .stride = 3 * w};
    return m;
}

typedef struct run_out {
    float chunk[H * DOF];
    int n_prefix, trunc, st;
} run_out;

static run_out run(rtv_policy *p, const rtv_frame *views, int nv, const char *task,
                   const float *state, const float *hist, uint64_t seed)
{
    run_out r = {{0}, 0, 0, 0};
    rtv_vl_ctx *vl = NULL;
    rtv_act_ctx *ac = NULL;
    rtv_features *f = NULL;
    if ((r.st = rtv_vl_ctx_new(p, &vl)) || (r.st = rtv_act_ctx_new(p, &ac)) ||
        (r.st = rtv_features_new(p, &f)))
        goto out;
    r.trunc = rtv_vl_set_task(vl, task);
    if (r.trunc < 0) {
        r.st = r.trunc;
        goto out;
    }
    if ((r.st = rtv_policy_encode(vl, views, nv, f)))
        goto out;
    r.n_prefix = f->n_prefix;
    r.st = rtv_policy_act_rt(ac, f, state, hist, seed, r.chunk);
out:
    if (r.st)
        fprintf(stderr, "run: %s\n", rtv_last_error());
    rtv_features_free(p, f);
    rtv_act_ctx_free(ac);
    rtv_vl_ctx_free(vl);
    return r;
}

/* Concurrency: a VL thread encodes while the action thread acts (own contexts, one policy). */
typedef struct enc_job {
    rtv_policy *p;
    const rtv_frame *views;
    int n, fails;
    int n_prefix;
} enc_job;

static void *enc_main(void *a)
{
    enc_job *j = a;
    rtv_vl_ctx *vl = NULL;
    rtv_features *f = NULL;
    if (rtv_vl_ctx_new(j->p, &vl) || rtv_features_new(j->p, &f) ||
        rtv_vl_set_task(vl, "stack the cups") < 0)
        j->fails++;
    for (int i = 0; i < j->n && !j->fails; i++) {
        if (rtv_policy_encode(vl, j->views, 1, f))
            j->fails++;
        j->n_prefix = f->n_prefix;
    }
    rtv_features_free(j->p, f);
    rtv_vl_ctx_free(vl);
    return NULL;
}

static float maxdiff(const float *a, const float *b, int n)
{
    float m = 0;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static int finite_all(const float *a, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return 0;
    return 1;
}

/* expert_layers (kernels/backend.h), the contract the CUDA backend's persistent kernel relies
 * on: a CPU backend whose expert_layers runs the call's layers op by op from the call's fields
 * alone (as the op's comment defines them), declines, or fails, depending on xl_mode; it records
 * what each call asked for. Taken, the chunk must equal the model's own layer loop bit for bit;
 * declined, the model must run its loop; failed, the error must reach the caller. */
enum { XL_TAKE, XL_DECLINE, XL_FAIL };
static int xl_mode, xl_calls, xl_rows[64], xl_kv_row[64], xl_limit[64][2];

static int xl_expert_layers(rtv_stream *s, const rtv_expert_step *e)
{
    const int n = xl_calls++;
    if (n < 64) {
        xl_rows[n] = e->rows;
        xl_kv_row[n] = e->kv_row;
        xl_limit[n][0] = e->limit_rows;
        xl_limit[n][1] = e->limit_keys;
    }
    if (xl_mode == XL_DECLINE)
        return RTV_E_UNSUPPORTED;
    if (xl_mode == XL_FAIL)
        return rtv_fail(RTV_E_DEVICE, "test expert_layers: failing on purpose");
    const int hd = e->head_dim, Q = e->heads * hd, KV = e->kv_heads * hd, QKV = Q + 2 * KV;
    const int rows = e->rows, W = e->dim, F = e->mlp;
    float *att = malloc(sizeof(float) * rows * Q), *gu = malloc(sizeof(float) * rows * 2 * F);
    float *ff = malloc(sizeof(float) * rows * F);
    int st = 0;
    for (int l = 0; l < e->layers && !st; l++) {
        float *lq = e->lq[l], *y = lq + (size_t)e->kv_row * QKV;
        st = B->matmul(s, y, QKV, e->x, W, e->w_qkv[l], NULL, rows, QKV, W, 0);
        st = st ? st : B->rms_rope(s, y, QKV, QKV, e->x, W, e->eps, rows,
                                   e->heads + e->kv_heads, hd, e->kv_row, e->theta);
        st = st ? st : B->attention(s, att, Q, y, QKV, lq + Q, lq + Q + KV, QKV,
                                    e->kv_row + rows, NULL, NULL, 0, 0, rows, e->heads,
                                    e->kv_heads, hd, (float)(1.0 / sqrt((double)hd)),
                                    e->limit_rows, e->limit_keys);
        st = st ? st : B->matmul(s, e->x, W, att, Q, e->w_o[l], NULL, rows, W, Q, RTV_MM_ACCUM);
        st = st ? st : B->matmul(s, gu, 2 * F, e->x, W, e->w_gu[l], NULL, rows, 2 * F, W, 0);
        st = st ? st : B->rms_geglu(s, ff, gu, e->x, W, e->eps, rows, F);
        st = st ? st : B->matmul(s, e->x, W, ff, F, e->w_down[l], NULL, rows, W, F,
                                 RTV_MM_ACCUM);
    }
    free(att);
    free(gu);
    free(ff);
    return st;
}

/* One flow cycle on a policy loaded on backend b (seeded weights 7): its chunk, status and
 * whether the expert ran as one call. */
static run_out run_xl(const rtv_backend *b, const rtv_model_cfg *c, const rtv_frame *views,
                      const char *task, const float *state, int *fused)
{
    run_out r = {{0}, 0, 0, 0};
    rtv_policy *p = NULL;
    rtv_vl_ctx *vl = NULL;
    rtv_act_ctx *ac = NULL;
    rtv_features *f = NULL;
    if ((r.st = rtv_policy_random(&p, c, b, 7)) || (r.st = rtv_vl_ctx_new(p, &vl)) ||
        (r.st = rtv_act_ctx_new(p, &ac)) || (r.st = rtv_features_new(p, &f)) ||
        (r.st = rtv_vl_set_task(vl, task)) < 0 || (r.st = rtv_policy_encode(vl, views, 1, f)))
        goto out;
    r.n_prefix = f->n_prefix;
    r.st = rtv_policy_act_rt(ac, f, state, NULL, 1, r.chunk);
    *fused = rtv_act_expert_fused(ac);
out:
    rtv_features_free(p, f);
    rtv_act_ctx_free(ac);
    rtv_vl_ctx_free(vl);
    rtv_policy_free(p);
    return r;
}

static void check_expert_layers(const rtv_model_cfg *c, const rtv_frame *views, const char *task,
                                const float *state)
{
    rtv_backend xb = *B;
    xb.expert_layers = xl_expert_layers;
    int fused = -1;
    run_out ref = run_xl(B, c, views, task, state, &fused);
    CHECK(ref.st == 0 && fused == 0);
    xl_mode = XL_TAKE;
    xl_calls = 0;
    run_out got = run_xl(&xb, c, views, task, state, &fused);
    CHECK_MSG(got.st == 0 && fused == 1, "st %d fused %d", got.st, fused);
    CHECK_MSG(maxdiff(got.chunk, ref.chunk, H * DOF) == 0.0f, "expert_layers taken: %g",
              maxdiff(got.chunk, ref.chunk, H * DOF));
    /* one call per Euler step: step 0 with the state token (row 0 sees the prefix and itself),
     * then the action rows after it */
    CHECK_MSG(xl_calls == c->steps, "%d calls for %d steps", xl_calls, c->steps);
    CHECK(xl_rows[0] == 1 + c->chunk && xl_kv_row[0] == ref.n_prefix &&
          xl_limit[0][0] == 1 && xl_limit[0][1] == ref.n_prefix + 1);
    CHECK(xl_rows[1] == c->chunk && xl_kv_row[1] == ref.n_prefix + 1 && xl_limit[1][0] == 0);
    xl_mode = XL_DECLINE;
    xl_calls = 0;
    got = run_xl(&xb, c, views, task, state, &fused);
    CHECK(got.st == 0 && fused == 0 && xl_calls == c->steps);
    CHECK_MSG(maxdiff(got.chunk, ref.chunk, H * DOF) == 0.0f, "expert_layers declined: %g",
              maxdiff(got.chunk, ref.chunk, H * DOF));
    xl_mode = XL_FAIL;
    got = run_xl(&xb, c, views, task, state, &fused);
    CHECK(got.st == RTV_E_DEVICE && strstr(rtv_last_error(), "failing on purpose"));
}

static rtv_model_cfg tiny(rtv_head head, int views)
{
    rtv_model_cfg c;
    rtv_model_cfg_preset(&c, "pi0-tiny");
    c.head = head;
    c.n_views = views;
    c.robot_dof = DOF;
    return c;
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof(buf), a)) > 0)
        fwrite(buf, 1, n, b);
    if (a) fclose(a);
    if (b) fclose(b);
}

/* Makes dir DST from SRC's checkpoint with model.safetensors rewritten: tensors whose name
 * contains `drop` are left out, `reshape` gets shape (2, n/2), every name gets `prefix`,
 * and `rename_from` is written as `rename_to`. */
static void derive(const char *src, const char *dst, const char *drop, const char *reshape,
                   const char *prefix, const char *rename_from, const char *rename_to)
{
    char a[512], b[512], name[300];
    snprintf(a, sizeof(a), "mkdir -p %s", dst);
    CHECK(system(a) == 0);
    const char *files[] = {"tokenizer.model", "norm_stats.json", "config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof(a), "%s/%s", src, files[i]);
        snprintf(b, sizeof(b), "%s/%s", dst, files[i]);
        copy_file(a, b);
    }
    rtv_safetensors *st;
    rtv_st_writer *w;
    snprintf(a, sizeof(a), "%s/model.safetensors", src);
    CHECK(rtv_st_open(&st, a, RTV_ST_MMAP) == 0);
    CHECK(rtv_st_writer_new(&w) == 0);
    for (int i = 0; i < rtv_st_count(st); i++) {
        const rtv_st_tensor *t = rtv_st_at(st, i);
        if (drop && strstr(t->name, drop))
            continue;
        int64_t shape[RTV_ST_MAX_DIMS];
        int nd = t->ndim;
        memcpy(shape, t->shape, sizeof(shape));
        if (reshape && !strcmp(t->name, reshape)) {
            int64_t n = rtv_st_numel(t);
            nd = 2;
            shape[0] = 2;
            shape[1] = n / 2;
        }
        const char *nm = t->name;
        if (rename_from && !strcmp(nm, rename_from))
            nm = rename_to;
        snprintf(name, sizeof(name), "%s%s", prefix ? prefix : "", nm);
        CHECK(rtv_st_writer_add(w, name, t->dt, nd, shape, rtv_st_data(st, t)) == 0);
    }
    snprintf(b, sizeof(b), "%s/model.safetensors", dst);
    CHECK(rtv_st_writer_finish(w, b) == 0);
    rtv_st_close(st);
}

static int load_err(const rtv_model_cfg *c, const char *dir, const char *want1, const char *want2)
{
    rtv_policy *p = NULL;
    int st = rtv_policy_load(&p, c, B, dir);
    const char *e = rtv_last_error();
    int ok = st != 0 && !p && strstr(e, want1) && (!want2 || strstr(e, want2));
    if (!ok)
        fprintf(stderr, "load_err(%s): st %d, message '%s', wanted '%s' / '%s'\n", dir, st, e,
                want1, want2 ? want2 : "");
    rtv_policy_free(p);
    return ok;
}

int main(int argc, char **argv)
{
    (void)argc;
    B = rtv_backend_cpu();
    snprintf(root, sizeof(root), "/tmp/rtvla-test-model-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    char d32[300], d16[300], dir[300];
    snprintf(d32, sizeof(d32), "%s/f32", root);
    snprintf(d16, sizeof(d16), "%s/bf16", root);

    /* noise: first values of the splitmix64 Box-Muller stream (computed in Python) */
    float nz[3];
    rtv_flow_noise(1, nz, 3);
    CHECK(nz[0] == -0.0282497462f && nz[1] == -0.227919519f && nz[2] == 0.103090949f);
    rtv_flow_noise(9007199254740991ull, nz, 2);
    CHECK(nz[0] == 0.719804406f && nz[1] == -0.0398103297f);

    rtv_model_cfg cf1 = tiny(RTV_HEAD_FLOW, 1), cf3 = tiny(RTV_HEAD_FLOW, 3);
    rtv_model_cfg cr1 = tiny(RTV_HEAD_REGRESSION, 1), cr3 = tiny(RTV_HEAD_REGRESSION, 3);
    CHECK(rtv_model_init_dir(&cf1, 7, RTV_DT_F32, d32) == 0);
    CHECK(rtv_model_init_dir(&cf1, 7, RTV_DT_BF16, d16) == 0);

    img im[3] = {make_img(160, 120, 0), make_img(97, 160, 1), make_img(224, 224, 2)};
    img im_b = make_img(160, 120, 5);
    rtv_frame v3[3] = {im[0].f, im[1].f, im[2].f};
    const float s0[DOF] = {10, -20.5f, 35.25f, 80, -3, 15}, s1[DOF] = {10, -20.5f, 35.25f, 60, -3, 15};
    const char *task = "pick up the red cube";

    /* f32 file, bf16 file and seeded weights hold the same numbers: identical chunks */
    rtv_policy *pf = NULL, *pb = NULL, *pr = NULL;
    CHECK(rtv_policy_load(&pf, &cf1, B, d32) == 0);
    CHECK(rtv_policy_load(&pb, &cf1, B, d16) == 0);
    CHECK(rtv_policy_random(&pr, &cf1, B, 7) == 0);
    if (!pf || !pb || !pr) {
        fprintf(stderr, "load failed: %s\n", rtv_last_error());
        return check_report(argv[0]);
    }
    run_out a = run(pf, v3, 1, task, s0, NULL, 1);
    run_out a16 = run(pb, v3, 1, task, s0, NULL, 1);
    run_out ar = run(pr, v3, 1, task, s0, NULL, 1);
    CHECK(a.st == 0 && a16.st == 0 && ar.st == 0);
    CHECK(finite_all(a.chunk, H * DOF));
    CHECK_MSG(maxdiff(a.chunk, a16.chunk, H * DOF) == 0.0f, "f32 vs bf16 file: %g",
              maxdiff(a.chunk, a16.chunk, H * DOF));
    CHECK_MSG(maxdiff(a.chunk, ar.chunk, H * DOF) == 0.0f, "file vs seeded: %g",
              maxdiff(a.chunk, ar.chunk, H * DOF));
    CHECK(a.n_prefix > 256 && a.trunc == 0);
    int n_task = a.n_prefix - 256;
    CHECK(n_task >= 3); /* BOS + text + "\n" */

    /* determinism and sensitivity (flow, 1 view). Chunks are in robot units (std 10..40),
     * so a visible change is > 1e-3. */
    run_out b = run(pf, v3, 1, task, s0, NULL, 1);
    CHECK(maxdiff(a.chunk, b.chunk, H * DOF) == 0.0f);
    run_out c = run(pf, v3, 1, task, s0, NULL, 2);
    CHECK_MSG(maxdiff(a.chunk, c.chunk, H * DOF) > 1e-3f, "seed: %g", maxdiff(a.chunk, c.chunk, H * DOF));
    rtv_frame vb[1] = {im_b.f};
    c = run(pf, vb, 1, task, s0, NULL, 1);
    CHECK_MSG(maxdiff(a.chunk, c.chunk, H * DOF) > 1e-3f, "image: %g", maxdiff(a.chunk, c.chunk, H * DOF));
    c = run(pf, v3, 1, "open the drawer", s0, NULL, 1);
    CHECK_MSG(maxdiff(a.chunk, c.chunk, H * DOF) > 1e-3f, "task: %g", maxdiff(a.chunk, c.chunk, H * DOF));
    c = run(pf, v3, 1, task, s1, NULL, 1);
    CHECK_MSG(maxdiff(a.chunk, c.chunk, H * DOF) > 1e-3f, "state: %g", maxdiff(a.chunk, c.chunk, H * DOF));
    /* the flow head's last prefix layer stops at its K/V (encoder/gemma.c): the same K/V and
     * chunk as running that layer whole, up to the GEMM's blocking over the narrower output
     * (OpenBLAS here: K/V 1.2e-6, chunk 2.3e-5 in robot units; a wrong position, weight slice
     * or scale moves them by > 1e-2), and no pooled features */
    {
        rtv_vl_ctx *vl = NULL;
        rtv_features *f = NULL;
        CHECK(rtv_vl_ctx_new(pf, &vl) == 0 && rtv_features_new(pf, &f) == 0);
        CHECK(f && f->pooled == NULL);
        const int L = cf1.llm_depth, kvw = 2 * cf1.n_kv_heads * cf1.head_dim;
        float *kv[2] = {NULL, NULL};
        size_t n = 0;
        rtv_stream *s = NULL;
        CHECK(B->stream_new(&s) == 0);
        for (int full = 0; full < 2 && vl && f; full++) {
            pf->prefix_full = full;
            CHECK(rtv_vl_set_task(vl, task) == 0 && rtv_policy_encode(vl, v3, 1, f) == 0);
            n = (size_t)f->n_prefix * kvw;
            kv[full] = malloc(n * sizeof(float));
            CHECK(B->download(s, kv[full], f->k[L - 1], n) == 0 && B->sync(s) == 0);
        }
        pf->prefix_full = 0;
        CHECK_MSG(kv[0] && kv[1] && maxdiff(kv[0], kv[1], (int)n) <= 1e-5f,
                  "last layer K/V, K/V only vs whole: %g", kv[0] && kv[1] ? maxdiff(kv[0], kv[1], (int)n) : -1.0f);
        free(kv[0]);
        free(kv[1]);
        B->stream_free(s);
        rtv_features_free(pf, f);
        rtv_vl_ctx_free(vl);
        pf->prefix_full = 1;
        c = run(pf, v3, 1, task, s0, NULL, 1);
        pf->prefix_full = 0;
        CHECK_MSG(c.st == 0 && maxdiff(a.chunk, c.chunk, H * DOF) <= 2e-4f,
                  "chunk, K/V-only last layer vs whole: %g", maxdiff(a.chunk, c.chunk, H * DOF));
    }
    /* prompt length 0: vision-only prefix */
    c = run(pf, v3, 1, "", s0, NULL, 1);
    CHECK(c.st == 0 && c.n_prefix == 256 && finite_all(c.chunk, H * DOF));
    CHECK(maxdiff(a.chunk, c.chunk, H * DOF) > 1e-3f);
    /* openpi cleaning: surrounding whitespace, '_' and '\n' map to the same prompt */
    c = run(pf, v3, 1, "  pick_up the\nred_cube \n", s0, NULL, 1);
    CHECK(c.st == 0 && c.n_prefix == a.n_prefix && maxdiff(a.chunk, c.chunk, H * DOF) == 0.0f);
    /* truncation to max_prompt */
    char longtask[2048] = "";
    for (int i = 0; i < 60; i++)
        strcat(longtask, "grasp the blue block and ");
    c = run(pf, v3, 1, longtask, s0, NULL, 1);
    CHECK(c.st == 0 && c.trunc > 0 && c.n_prefix == 256 + cf1.max_prompt);
    /* wrong view count */
    {
        rtv_vl_ctx *vl = NULL;
        rtv_features *f = NULL;
        CHECK(rtv_vl_ctx_new(pf, &vl) == 0 && rtv_features_new(pf, &f) == 0);
        CHECK(rtv_policy_encode(vl, v3, 2, f) == RTV_E_ARG && strstr(rtv_last_error(), "views"));
        rtv_features_free(pf, f);
        rtv_vl_ctx_free(vl);
    }
    {
        /* encode (thread) and act (here) at once give the sequential result */
        rtv_vl_ctx *vl = NULL;
        rtv_act_ctx *ac = NULL;
        rtv_features *f = NULL;
        float out[H * DOF];
        CHECK(rtv_vl_ctx_new(pf, &vl) == 0 && rtv_act_ctx_new(pf, &ac) == 0 &&
              rtv_features_new(pf, &f) == 0);
        CHECK(rtv_vl_set_task(vl, task) == 0 && rtv_policy_encode(vl, v3, 1, f) == 0);
        enc_job job = {pf, vb, 4, 0, 0};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, enc_main, &job) == 0);
        int same = 1;
        for (int i = 0; i < 4; i++) {
            CHECK(rtv_policy_act_rt(ac, f, s0, NULL, 1, out) == 0);
            same &= maxdiff(out, a.chunk, H * DOF) == 0.0f;
        }
        pthread_join(th, NULL);
        CHECK(same && job.fails == 0 && job.n_prefix > 256);
        rtv_features_free(pf, f);
        rtv_act_ctx_free(ac);
        rtv_vl_ctx_free(vl);
    }
    rtv_policy_free(pb);
    rtv_policy_free(pr);

    /* 3 views, flow */
    rtv_policy *p3 = NULL;
    CHECK(rtv_policy_load(&p3, &cf3, B, d32) == 0);
    if (p3) {
        run_out x = run(p3, v3, 3, task, s0, NULL, 1), y;
        CHECK(x.st == 0 && x.n_prefix == 3 * 256 + n_task && finite_all(x.chunk, H * DOF));
        rtv_frame v3b[3] = {im[0].f, im[1].f, im_b.f};
        y = run(p3, v3b, 3, task, s0, NULL, 1);
        CHECK_MSG(maxdiff(x.chunk, y.chunk, H * DOF) > 1e-3f, "3rd view: %g", maxdiff(x.chunk, y.chunk, H * DOF));
        y = run(p3, v3, 3, "", s0, NULL, 1);
        CHECK(y.st == 0 && y.n_prefix == 768 && maxdiff(x.chunk, y.chunk, H * DOF) > 1e-3f);
    }
    rtv_policy_free(p3);

    /* regression head, 1 and 3 views */
    rtv_policy *r1 = NULL, *r3 = NULL, *rr = NULL;
    CHECK(rtv_policy_load(&r1, &cr1, B, d32) == 0);
    CHECK(rtv_policy_load(&r3, &cr3, B, d16) == 0);
    CHECK(rtv_policy_random(&rr, &cr3, B, 7) == 0);
    if (r1 && r3 && rr) {
        run_out x = run(r1, v3, 1, task, s0, NULL, 1), y;
        CHECK(x.st == 0 && finite_all(x.chunk, H * DOF));
        y = run(r1, v3, 1, task, s0, NULL, 99); /* the seed only drives flow noise */
        CHECK(maxdiff(x.chunk, y.chunk, H * DOF) == 0.0f);
        y = run(r1, vb, 1, task, s0, NULL, 1);
        CHECK_MSG(maxdiff(x.chunk, y.chunk, H * DOF) > 1e-3f, "reg image: %g", maxdiff(x.chunk, y.chunk, H * DOF));
        y = run(r1, v3, 1, "", s0, NULL, 1);
        CHECK(y.st == 0 && y.n_prefix == 256 && maxdiff(x.chunk, y.chunk, H * DOF) > 1e-3f);
        y = run(r1, v3, 1, task, s1, NULL, 1);
        CHECK_MSG(maxdiff(x.chunk, y.chunk, H * DOF) > 1e-3f, "reg state: %g", maxdiff(x.chunk, y.chunk, H * DOF));
        x = run(r3, v3, 3, task, s0, NULL, 1);
        y = run(rr, v3, 3, task, s0, NULL, 1);
        CHECK(x.st == 0 && x.n_prefix == 768 + n_task && maxdiff(x.chunk, y.chunk, H * DOF) == 0.0f);
    }
    rtv_policy_free(r1);
    rtv_policy_free(r3);
    rtv_policy_free(rr);

    /* sensor history changes the chunk (seeded weights: sensor_history_proj present) */
    {
        rtv_model_cfg ch = cf1;
        ch.history = 2;
        rtv_policy *ph = NULL;
        CHECK(rtv_policy_random(&ph, &ch, B, 7) == 0);
        float hist[2 * 3 * DOF], hist2[2 * 3 * DOF];
        for (int i = 0; i < 2 * 3 * DOF; i++) {
            hist[i] = (float)(i % 7) - 3.0f;
            hist2[i] = hist[i] + (i >= DOF && i < 2 * DOF ? 25.0f : 0.0f); /* velocities */
        }
        if (ph) {
            run_out x = run(ph, v3, 1, task, s0, hist, 1), y = run(ph, v3, 1, task, s0, hist2, 1);
            CHECK(x.st == 0 && y.st == 0 && maxdiff(x.chunk, y.chunk, H * DOF) > 1e-3f);
            rtv_act_ctx *ac = NULL;
            rtv_features *f = NULL;
            float out[H * DOF];
            CHECK(rtv_act_ctx_new(ph, &ac) == 0 && rtv_features_new(ph, &f) == 0);
            f->n_prefix = 256;
            CHECK(rtv_policy_act_rt(ac, f, s0, NULL, 1, out) == RTV_E_ARG); /* history missing */
            rtv_features_free(ph, f);
            rtv_act_ctx_free(ac);
        }
        rtv_policy_free(ph);
        /* a checkpoint without sensor_history_proj cannot serve history > 0: config.json
         * says so first; without config.json the weight table does */
        CHECK(load_err(&ch, d32, "config.json: history is 0", "has 2"));
        snprintf(dir, sizeof(dir), "%s/nohist", root);
        derive(d32, dir, NULL, NULL, NULL, NULL, NULL);
        char path[400];
        snprintf(path, sizeof(path), "%s/config.json", dir);
        CHECK(unlink(path) == 0);
        CHECK(load_err(&ch, dir, "missing tensor 'sensor_history_proj.weight'", "expected shape (64, 36)"));
    }

    /* load errors */
    snprintf(dir, sizeof(dir), "%s/nopost", root);
    derive(d32, dir, "post_layernorm.bias", NULL, NULL, NULL, NULL);
    CHECK(load_err(&cf1, dir, "missing tensor 'paligemma_with_expert.paligemma.model.vision_tower."
                   "vision_model.post_layernorm.bias'", "expected shape (64,)"));
    snprintf(dir, sizeof(dir), "%s/shape", root);
    derive(d32, dir, NULL, "paligemma_with_expert.gemma_expert.model.layers.1.mlp.down_proj.weight",
           NULL, NULL, NULL);
    CHECK(load_err(&cf1, dir, "layers.1.mlp.down_proj.weight' is (2, 4096), expected (64, 128)",
                   "model.safetensors"));
    /* the reshaped tensor belongs to the expert: the regression head does not need it */
    rtv_policy *ok = NULL;
    CHECK(rtv_policy_load(&ok, &cr1, B, dir) == 0);
    rtv_policy_free(ok);
    snprintf(dir, sizeof(dir), "%s/flowonly", root);
    derive(d32, dir, "reg_head.", NULL, NULL, NULL, NULL);
    ok = NULL;
    CHECK(rtv_policy_load(&ok, &cf1, B, dir) == 0);
    rtv_policy_free(ok);
    CHECK(load_err(&cr1, dir, "missing tensor 'reg_head.in_proj.weight' (expected shape (64, 128)", NULL));
    /* LeRobot "model." names and the tied lm_head embedding load to the same values */
    snprintf(dir, sizeof(dir), "%s/lerobot", root);
    derive(d32, dir, NULL, NULL, "model.",
           "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight",
           "paligemma_with_expert.paligemma.lm_head.weight");
    ok = NULL;
    CHECK(rtv_policy_load(&ok, &cf1, B, dir) == 0);
    if (ok) {
        run_out x = run(ok, v3, 1, task, s0, NULL, 1);
        CHECK(x.st == 0 && maxdiff(x.chunk, a.chunk, H * DOF) == 0.0f);
    }
    rtv_policy_free(ok);
    /* config.json disagreeing with the config */
    {
        rtv_model_cfg cd = cf1;
        cd.llm_depth = 3;
        snprintf(dir, sizeof(dir), "%s/cfgjson", root);
        CHECK(rtv_model_init_dir(&cd, 7, RTV_DT_BF16, dir) == 0);
        CHECK(load_err(&cf1, dir, "config.json: llm_depth is 3", "has 2"));
        /* without config.json the shapes still catch it: layer 2 is unused, listed at load */
        char path[400];
        snprintf(path, sizeof(path), "%s/config.json", dir);
        unlink(path);
        ok = NULL;
        CHECK(rtv_policy_load(&ok, &cf1, B, dir) == 0);
        rtv_policy_free(ok);
        CHECK(load_err(&cd, d32, "config.json: llm_depth is 2", "has 3"));
        snprintf(dir, sizeof(dir), "%s/nohist", root); /* f32 copy without config.json */
        CHECK(load_err(&cd, dir, "missing tensor", "layers.2."));
    }
    /* stats for another robot */
    {
        rtv_model_cfg c7 = cf1;
        c7.robot_dof = 7;
        CHECK(load_err(&c7, d32, "6 action dims, the robot has 7", NULL));
    }
    check_expert_layers(&cf1, v3, task, s0);
    rtv_policy_free(pf);
    for (int i = 0; i < 3; i++)
        free(im[i].px);
    free(im_b.px);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    return check_report(argv[0]);
}
