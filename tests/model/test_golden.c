/* tests/model/test_golden.c — the C model against goldens from the independent PyTorch
 * reference (tests/reference/pi0_ref.py, float64, transformers' SigLIP/Gemma modules), on the
 * checkpoint `rtvla model init --preset pi0-tiny --seed 1 --dtype f32` (regenerated here).
 *
 * Every case of tests/golden/cases.json: token ids and n_prefix exactly; the preprocessed
 * views' sum; the vision tower output (view 0, first 16), the projector output, layer-0 prefix
 * K row 0, pooled features (regression cases), flow noise (bit-exact, flow cases),
 * the normalized chunk and the full chunk in robot units.
 * Tolerances (max abs error / max(1, max |ref|), see check.h): the C side computes in fp32
 * with fp32 accumulation, the reference in float64. Measured on this preset (CPU backend,
 * OpenBLAS): intermediates <= 1.2e-6, normalized chunk <= 6.5e-7, chunk in robot units
 * <= 4.2e-7; both tolerances are 1e-5, ~8x the worst case, far below any real error (a wrong
 * mask, position or scale moves these values by > 1e-3).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "encoder/tokenizer.h"
#include "runtime/policy_impl.h"
#include "runtime/status.h"

#define TOL_INTER 1e-5f
#define TOL_CHUNK 1e-5f

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    return b;
}

/* JSON number array (flattening one level of nesting) -> out[max]; returns the count. */
static int floats_of(const cJSON *a, float *out, int max)
{
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        if (cJSON_IsArray(e)) {
            const cJSON *x;
            cJSON_ArrayForEach(x, e) if (n < max) out[n++] = (float)x->valuedouble;
        } else if (n < max) {
            out[n++] = (float)e->valuedouble;
        }
    }
    return n;
}

static void download(const rtv_backend *b, rtv_stream *s, float *dst, const void *src, int n)
{
    CHECK(b->download(s, dst, src, (size_t)n) == 0 && b->sync(s) == 0);
}

int main(int argc, char **argv)
{
    const char *src = getenv("RTV_SRC");
    const rtv_backend *b = rtv_backend_cpu();
    char path[1024], ck[256] = "/tmp/rtvla-test-golden-XXXXXX";
    CHECK_MSG(src != NULL, "RTV_SRC must name the source root");
    if (!src)
        return check_report(argv[0]);
    CHECK(mkdtemp(ck) != NULL);
    rtv_model_cfg base;
    rtv_model_cfg_preset(&base, "pi0-tiny");
    base.robot_dof = 6;
    CHECK(rtv_model_init_dir(&base, 1, RTV_DT_F32, ck) == 0);

    snprintf(path, sizeof(path), "%s/tests/golden/cases.json", src);
    char *cases_txt = read_text(path);
    CHECK_MSG(cases_txt != NULL, "cannot read %s", path);
    cJSON *cases = cases_txt ? cJSON_Parse(cases_txt) : NULL;
    CHECK(cJSON_IsArray(cases));
    rtv_stream *s = NULL;
    CHECK(b->stream_new(&s) == 0);
    int n_cases = 0;
    const cJSON *cs;
    cJSON_ArrayForEach(cs, cases) {
        const char *name = cJSON_GetObjectItem(cs, "case")->valuestring;
        snprintf(path, sizeof(path), "%s/tests/golden/%s.json", src, name);
        char *gt = read_text(path);
        CHECK_MSG(gt != NULL, "missing golden %s", path);
        cJSON *g = gt ? cJSON_Parse(gt) : NULL;
        free(gt);
        if (!g)
            continue;
        n_cases++;
        const cJSON *views = cJSON_GetObjectItem(g, "views");
        int nv = cJSON_GetArraySize(views);
        rtv_model_cfg c = base;
        c.n_views = nv;
        c.head = strcmp(cJSON_GetObjectItem(g, "head")->valuestring, "flow") ? RTV_HEAD_REGRESSION
                                                                            : RTV_HEAD_FLOW;
        rtv_policy *p = NULL;
        rtv_vl_ctx *vl = NULL;
        rtv_act_ctx *ac = NULL;
        rtv_features *f = NULL;
        rtv_frame fr[8] = {{0}};
        CHECK(rtv_policy_load(&p, &c, b, ck) == 0);
        CHECK(p && rtv_vl_ctx_new(p, &vl) == 0 && rtv_act_ctx_new(p, &ac) == 0 &&
              rtv_features_new(p, &f) == 0);
        if (!p || !vl || !ac || !f) {
            fprintf(stderr, "%s: %s\n", name, rtv_last_error());
            goto next;
        }
        for (int v = 0; v < nv; v++) {
            snprintf(path, sizeof(path), "%s/tests/golden/%s", src,
                     cJSON_GetArrayItem(views, v)->valuestring);
            CHECK_MSG(rtv_image_load(&fr[v], path) == 0, "%s", rtv_last_error());
        }
        const char *task = cJSON_GetObjectItem(g, "task")->valuestring;
        /* tokens, exactly */
        int32_t ids[64];
        int n_ids = 0, need = 0;
        CHECK(rtv_policy_tokenize(p->tok, task, ids, 64, &n_ids, &need) == 0);
        const cJSON *gtok = cJSON_GetObjectItem(g, "tokens");
        int same = n_ids == cJSON_GetArraySize(gtok);
        for (int i = 0; same && i < n_ids; i++)
            same = ids[i] == cJSON_GetArrayItem(gtok, i)->valueint;
        CHECK_MSG(same, "%s: token ids differ (%d vs %d tokens)", name, n_ids,
                  cJSON_GetArraySize(gtok));

        CHECK(rtv_vl_set_task(vl, task) == 0);
        CHECK(rtv_policy_encode(vl, fr, nv, f) == 0);
        CHECK_MSG(f->n_prefix == cJSON_GetObjectItem(g, "n_prefix")->valueint, "%s: n_prefix %d",
                  name, f->n_prefix);
        const rtv_vl_ws *ws = rtv_vl_ctx_ws(vl);
        const int S = c.image_size, n_img = S * S * 3;
        float *img = malloc((size_t)n_img * sizeof(float)), got[64], ref[64], gsum[8];
        CHECK(floats_of(cJSON_GetObjectItem(g, "views_preprocessed_sum"), gsum, 8) == nv);
        for (int v = 0; v < nv; v++) {
            download(b, s, img, rtv_cact_at(b, ws->img, (size_t)v * n_img), n_img);
            double sum = 0;
            for (int i = 0; i < n_img; i++)
                sum += img[i];
            /* 150528 values in [-1, 1]; the reference sums in float64 */
            CHECK_MSG(fabs(sum - gsum[v]) <= 1e-6 * n_img, "%s: view %d preprocessed sum %.6f vs %.6f",
                      name, v, sum, (double)gsum[v]);
        }
        free(img);

        download(b, s, got, ws->vn, 16);
        CHECK(floats_of(cJSON_GetObjectItem(g, "vision0_first16"), ref, 16) == 16);
        CHECK_CLOSE(got, ref, 16, TOL_INTER);
        /* encode overwrote the prefix rows: rerun the tower alone (same images in ws->img)
         * to read the projector output of view 0, row 0 */
        CHECK(rtv_siglip_forward(p, s, (rtv_vl_ws *)ws, nv) == 0);
        download(b, s, got, ws->x, 16);
        CHECK(floats_of(cJSON_GetObjectItem(g, "proj0_first16"), ref, 16) == 16);
        CHECK_CLOSE(got, ref, 16, TOL_INTER);
        download(b, s, got, f->k[0], 16);
        CHECK(floats_of(cJSON_GetObjectItem(g, "k0_row0_first16"), ref, 16) == 16);
        CHECK_CLOSE(got, ref, 16, TOL_INTER);
        if (c.head == RTV_HEAD_REGRESSION) {
            CHECK_MSG(f->pooled != NULL, "%s: no pooled features for the regression head", name);
            if (f->pooled) {
                download(b, s, got, f->pooled, 16);
                CHECK(floats_of(cJSON_GetObjectItem(g, "pooled_first16"), ref, 16) == 16);
                CHECK_CLOSE(got, ref, 16, TOL_INTER);
            }
        } else { /* the flow head reads only K/V: the last layer stops there (gemma.c) */
            CHECK_MSG(f->pooled == NULL, "%s: pooled features computed for the flow head", name);
        }

        float state[8], chunk[50 * 6], gchunk[50 * 6];
        CHECK(floats_of(cJSON_GetObjectItem(g, "state"), state, 8) == 6);
        uint64_t seed = (uint64_t)cJSON_GetObjectItem(g, "seed")->valuedouble;
        const cJSON *gn = cJSON_GetObjectItem(g, "noise_first16");
        if (gn) {
            float nz[16];
            rtv_flow_noise(seed, nz, 16);
            floats_of(gn, ref, 16);
            CHECK_MSG(memcmp(nz, ref, sizeof(nz)) == 0, "%s: noise not bit-exact", name);
        }
        CHECK(rtv_policy_act_rt(ac, f, state, NULL, seed, chunk) == 0);
        memcpy(got, rtv_act_ctx_normalized(ac), 16 * sizeof(float));
        CHECK(floats_of(cJSON_GetObjectItem(g, "chunk_normalized_first16"), ref, 16) == 16);
        CHECK_CLOSE(got, ref, 16, TOL_CHUNK);
        CHECK(floats_of(cJSON_GetObjectItem(g, "chunk"), gchunk, 300) == 300);
        if (!check_close_(__FILE__, __LINE__, name, chunk, gchunk, 300, TOL_CHUNK))
            fprintf(stderr, "  (case %s)\n", name);
    next:
        for (int v = 0; v < nv; v++)
            rtv_image_free(&fr[v]);
        rtv_features_free(p, f);
        rtv_act_ctx_free(ac);
        rtv_vl_ctx_free(vl);
        rtv_policy_free(p);
        cJSON_Delete(g);
    }
    CHECK(n_cases >= 9);
    b->stream_free(s);
    cJSON_Delete(cases);
    free(cases_txt);
    snprintf(path, sizeof(path), "rm -rf %s", ck);
    CHECK(system(path) == 0);
    return check_report(argv[0]);
}
