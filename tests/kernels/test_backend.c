/* tests/kernels/test_backend.c — the CPU backend's plumbing: the table, streams, memory,
 * transfers, weight upload with dtype conversion, arenas, lookup by name, RTV_BLAS_THREADS,
 * argument errors of every op (status and the op's name in the message), and two threads
 * running ops on two streams at once (results equal the single-threaded ones). */
#include <cblas.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kt.h"

/* Under AddressSanitizer, let the deliberately impossible allocations below return NULL
 * instead of aborting (ASan calls this hook at start-up; without ASan it is unused). */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static int has(const char *needle) { return strstr(rtv_last_error(), needle) != NULL; }

static void test_table(void)
{
    const rtv_backend *b = rtv_backend_cpu();
    CHECK(!strcmp(b->name, "cpu"));
    CHECK(b->act_bytes == 4 && b->act_dt == RTV_DT_F32 && b->w_dt == RTV_DT_F32);
    /* every op and memory entry is filled; capture is absent on the CPU */
    CHECK(b->stream_new && b->stream_free && b->alloc && b->free && b->upload_weight &&
          b->upload && b->download && b->sync);
    CHECK(b->matmul && b->layernorm && b->rmsnorm && b->rope && b->attention && b->geglu &&
          b->add_weight_rows && b->axpy && b->scale && b->copy2d && b->mean_rows &&
          b->preprocess && b->patchify);
    CHECK(!b->capture_begin && !b->capture_end && !b->graph_launch && !b->graph_free);
    CHECK(openblas_get_num_threads() == 2); /* RTV_BLAS_THREADS=2 from meson */
}

static void test_memory(void)
{
    const rtv_backend *b = kt_b;
    size_t sizes[] = { 0, 1, 255, 256, 257, 100000 };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        void *p = NULL;
        CHECK(b->alloc(&p, sizes[i]) == RTV_OK);
        CHECK(p && ((uintptr_t)p & 255) == 0);
        if (p) memset(p, 0xab, sizes[i]);
        b->free(p);
    }
    void *p = (void *)1;
    CHECK(b->alloc(&p, SIZE_MAX - 10) == RTV_E_NOMEM && p == NULL);
    CHECK(b->alloc(&p, (size_t)1 << 62) == RTV_E_NOMEM && p == NULL && has("MiB"));
    b->free(NULL);

    float h[37], d[37], back[37];
    kt_seed(11);
    for (int i = 0; i < 37; i++) h[i] = kt_uni(3);
    CHECK(b->upload(kt_s, d, h, 37) == RTV_OK);
    CHECK(b->download(kt_s, back, d, 37) == RTV_OK);
    CHECK(b->sync(kt_s) == RTV_OK);
    CHECK(!memcmp(h, back, sizeof(h)));

    /* upload_weight converts bf16 and f16 exactly, copies f32 */
    uint16_t hb[5] = { 0x3f80, 0xc000, 0x0001, 0x7f80, 0x8000 };
    uint16_t hf[5] = { 0x3c00, 0xc000, 0x0001, 0x7c00, 0x8000 };
    float wb[5], wf[5], w32[5];
    CHECK(b->upload_weight(wb, hb, RTV_DT_BF16, 5) == RTV_OK);
    CHECK(b->upload_weight(wf, hf, RTV_DT_F16, 5) == RTV_OK);
    CHECK(b->upload_weight(w32, wb, RTV_DT_F32, 5) == RTV_OK);
    CHECK(wb[0] == 1.0f && wb[1] == -2.0f && wb[2] == 0x1p-133f && isinf(wb[3]) && signbit(wb[4]));
    CHECK(wf[0] == 1.0f && wf[1] == -2.0f && wf[2] == 0x1p-24f && isinf(wf[3]) && signbit(wf[4]));
    CHECK(!memcmp(w32, wb, sizeof(wb)));
    CHECK(b->upload_weight(w32, hb, (rtv_dtype)9, 5) == RTV_E_UNSUPPORTED && has("dtype"));
}

static void test_arena(void)
{
    rtv_arena a;
    CHECK(rtv_arena_init(&a, kt_b, 1000) == RTV_OK);
    char *p1 = rtv_arena_take(&a, 1), *p2 = rtv_arena_take(&a, 300);
    CHECK(p1 && ((uintptr_t)p1 & 255) == 0);
    CHECK(p2 == p1 + 256);
    CHECK(rtv_arena_take(&a, 500) == NULL);          /* 768 + 500 > 1000 */
    CHECK(has("requested 500") && has("232 left"));
    char *p3 = rtv_arena_take(&a, 232);               /* exactly the rest */
    CHECK(p3 == p1 + 768);
    CHECK(rtv_arena_take(&a, 1) == NULL && has("0 left"));
    if (p3) memset(p3, 1, 232);
    rtv_arena_free(&a);
    CHECK(a.base == NULL && a.size == 0);
    rtv_arena_free(&a);                               /* freeing twice is harmless */
    CHECK(rtv_arena_take(&a, 8) == NULL && has("not initialised"));

    rtv_arena big;
    CHECK(rtv_arena_init(&big, kt_b, (size_t)1 << 62) == RTV_E_NOMEM);
    CHECK(big.base == NULL && has("arena"));
    rtv_arena_free(&big);
    CHECK(rtv_arena_init(&big, NULL, 16) == RTV_E_ARG);
}

static void test_registry(void)
{
    const rtv_backend *b = (const rtv_backend *)1;
    CHECK(rtv_backend_by_name("cpu", &b) == RTV_OK && b == rtv_backend_cpu());
    int st = rtv_backend_by_name("cuda", &b);
    if (rtv_backend_cuda()) {
        CHECK(st == RTV_OK && b == rtv_backend_cuda());
    } else {
        CHECK(st == RTV_E_UNSUPPORTED && b == NULL);
        CHECK_MSG(has("\"cuda\"") && has("\"cpu\""), "message: %s", rtv_last_error());
    }
    CHECK(rtv_backend_by_name("gpu", &b) == RTV_E_ARG && b == NULL && has("\"gpu\""));
    CHECK(rtv_backend_by_name(NULL, &b) == RTV_E_ARG);
    CHECK(rtv_backend_by_name("cpu", NULL) == RTV_E_ARG);
}

/* Every op rejects a bad shape with RTV_E_ARG and names itself. */
static void test_arg_errors(void)
{
    const rtv_backend *b = kt_b;
    rtv_stream *s = kt_s;
    float buf[64] = { 0 };
    uint8_t rgb[12] = { 0 };
#define BAD(call, name) CHECK_MSG((call) == RTV_E_ARG && has(name), "%s: %s", name, rtv_last_error())
    BAD(b->matmul(s, buf, 4, buf, 4, buf, NULL, 0, 4, 4, 0), "matmul");
    BAD(b->matmul(s, buf, 3, buf, 4, buf, NULL, 1, 4, 4, 0), "matmul");           /* ldy < N */
    BAD(b->matmul(s, buf, 4, buf, 3, buf, NULL, 1, 4, 4, 0), "matmul");           /* ldx < K */
    BAD(b->matmul(s, buf, 4, buf, 4, buf, NULL, 1, 4, 4, RTV_MM_GELU | RTV_MM_SILU), "matmul");
    BAD(b->matmul(s, buf, 4, buf, 4, buf, NULL, 1, 4, 4, 1 << 5), "matmul");
    BAD(b->layernorm(s, buf, buf, buf, buf, 0, 4, 1e-6f), "layernorm");
    BAD(b->layernorm(s, buf, buf, buf, NULL, 1, 4, 1e-6f), "layernorm");
    BAD(b->rmsnorm(s, buf, buf, buf, 1, -1, 1e-6f), "rmsnorm");
    BAD(b->rope(s, buf, 8, 1, 1, 7, 0, 1e4f), "rope");                            /* odd hd */
    BAD(b->rope(s, buf, 7, 1, 1, 8, 0, 1e4f), "rope");                            /* ld < hd */
    BAD(b->rope(s, buf, 8, 1, 1, 8, 0, 0.0f), "rope");                            /* theta */
    BAD(b->attention(s, buf, 4, buf, 4, buf, buf, 4, 2, NULL, NULL, 0, 0, 1, 3, 2, 4, 1, 0, 0),
        "attention");                                                             /* 3 % 2 */
    BAD(b->attention(s, buf, 4, buf, 4, buf, buf, 4, 2, NULL, NULL, 4, 3, 1, 1, 1, 4, 1, 0, 0),
        "attention");                                                             /* n1, no k1 */
    BAD(b->attention(s, buf, 4, buf, 4, buf, buf, 4, 2, NULL, NULL, 0, 0, 1, 1, 1, 4, 1, 1, 3),
        "attention");                                                             /* keys > n_k */
    BAD(b->attention(s, buf, 4, buf, 4, buf, buf, 4, 2, NULL, NULL, 0, 0, 1, 1, 1, 4, 1, 1, 0),
        "attention");                                                             /* rows, 0 keys */
    BAD(b->geglu(s, buf, buf, 0, 4), "geglu");
    BAD(b->add_weight_rows(s, buf, buf, 2, 4, 0), "add_weight_rows");
    BAD(b->axpy(s, buf, buf, 1.0f, 0), "axpy");
    BAD(b->scale(s, buf, NULL, 1.0f, 4), "scale");
    BAD(b->copy2d(s, buf, 3, buf, 4, 2, 4), "copy2d");
    BAD(b->mean_rows(s, buf, buf, 3, 2, 4), "mean_rows");
    BAD(b->preprocess(s, buf, rgb, 2, 2, 5, 4), "preprocess");                    /* stride */
    BAD(b->preprocess(s, buf, rgb, 0, 2, 6, 4), "preprocess");
    BAD(b->preprocess(s, buf, rgb, 4000, 1, 12000, 224), "preprocess");           /* rh = 0 */
    BAD(b->patchify(s, buf, buf, 1, 10, 3), "patchify");
#undef BAD
}

/* ---- two threads, two streams ---- */
enum { TM = 96, TN = 160, TK = 130, TQ = 40, TKEYS = 70, THD = 32, THEADS = 4 };

typedef struct job {
    const float *x, *w, *bias, *q, *k, *v;
    float *y, *o;
    int st;
} job;

static int run_job(rtv_stream *s, job *j)
{
    int st = kt_b->matmul(s, j->y, TN, j->x, TK, j->w, j->bias, TM, TN, TK, RTV_MM_GELU);
    if (!st)
        st = kt_b->attention(s, j->o, THEADS * THD, j->q, THEADS * THD, j->k, j->v, THD, TKEYS,
                             NULL, NULL, 0, 0, TQ, THEADS, 1, THD, 0.17f, 0, 0);
    return st;
}

static void *thread_main(void *arg)
{
    job *j = arg;
    rtv_stream *s = NULL;
    j->st = kt_b->stream_new(&s);
    for (int it = 0; it < 30 && !j->st; it++) j->st = run_job(s, j);
    kt_b->stream_free(s);
    return NULL;
}

static void test_threads(void)
{
    float *mem[2][10];
    job jobs[2], ref[2];
    size_t sz[10] = { TM * TK, TN * TK, TN, TQ * THEADS * THD, TKEYS * THD, TKEYS * THD,
                      TM * TN, TQ * THEADS * THD, TM * TN, TQ * THEADS * THD };
    kt_seed(77);
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < 10; i++) {
            mem[t][i] = malloc(sz[i] * sizeof(float));
            for (size_t e = 0; e < sz[i]; e++) mem[t][i][e] = kt_uni(1);
        }
        jobs[t] = (job){ mem[t][0], mem[t][1], mem[t][2], mem[t][3], mem[t][4], mem[t][5],
                         mem[t][6], mem[t][7], 0 };
        ref[t] = jobs[t];
        ref[t].y = mem[t][8];
        ref[t].o = mem[t][9];
        CHECK(run_job(kt_s, &ref[t]) == RTV_OK);
    }
    pthread_t th[2];
    for (int t = 0; t < 2; t++) pthread_create(&th[t], NULL, thread_main, &jobs[t]);
    for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 2; t++) {
        CHECK(jobs[t].st == RTV_OK);
        /* same arithmetic; OpenBLAS may split the work differently: 1e-6 */
        CHECK_CLOSE(jobs[t].y, ref[t].y, TM * TN, 1e-6f);
        CHECK_CLOSE(jobs[t].o, ref[t].o, TQ * THEADS * THD, 1e-6f);
        for (int i = 0; i < 10; i++) free(mem[t][i]);
    }
}

/* RTV_BLAS_THREADS is read once, at the first stream_new: a child process with a bad value
 * must get RTV_E_ARG naming the variable. */
static void test_bad_env(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("RTV_BLAS_THREADS", "two", 1);
        rtv_stream *s = NULL;
        int st = rtv_backend_cpu()->stream_new(&s);
        _exit(st == RTV_E_ARG && s == NULL && has("RTV_BLAS_THREADS") && has("\"two\"") ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

int main(int argc, char **argv)
{
    test_bad_env(); /* before this process's first stream_new */
    kt_init();
    test_table();
    test_memory();
    test_arena();
    test_registry();
    test_arg_errors();
    test_threads();
    kt_fini();
    return check_report(argv[0]);
}
