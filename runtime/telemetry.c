#include "runtime/telemetry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "runtime/status.h"

#define WBUF_BYTES (256u * 1024u)          /* one io_uring write at most */
#define WBUF_RECS (WBUF_BYTES / sizeof(rtv_tel_rec))
#define DRAIN_PERIOD_NS (10 * 1000000LL)   /* logger wakes every 10 ms */
#define FLUSH_PERIOD_NS (200 * 1000000LL)  /* a partial buffer is written at least every 200 ms */

enum { WRITER_URING = 1, WRITER_PWRITE = 2 };

struct rtv_telemetry {
    char path[600];
    int fd;
    rtv_tel_header h;
    int n_rings;
    rtv_tel_ring rings[RTV_TEL_MAX_THREADS];
    uint64_t ring_cap;

    /* logger-private */
    pthread_t thread;
    int started;
    _Atomic int stop;
    struct io_uring ring;
    int uring_ok;
    rtv_tel_rec *wbuf[2];            /* (WBUF_RECS) each */
    int in_flight[2];                /* a write of this buffer awaits its completion */
    int cur;                         /* buffer being filled */
    size_t fill;                     /* records in wbuf[cur] */
    uint64_t file_off;               /* bytes of records written or submitted */
    uint64_t n_written;              /* records handed to the file */
    int write_err;                   /* first write error (errno) */
};

/* ---- writing ---- */

static int reap_one(rtv_telemetry *t)
{
    struct io_uring_cqe *cqe;
    int e = io_uring_wait_cqe(&t->ring, &cqe);
    if (e < 0) {
        if (!t->write_err) t->write_err = -e;
        return -1;
    }
    int b = (int)io_uring_cqe_get_data64(cqe);
    if (cqe->res < 0 && !t->write_err) t->write_err = -cqe->res;
    io_uring_cqe_seen(&t->ring, cqe);
    if (b == 0 || b == 1) t->in_flight[b] = 0;
    return 0;
}

static void pwrite_all(rtv_telemetry *t, const void *p, size_t n, uint64_t off)
{
    const char *c = p;
    while (n) {
        ssize_t k = pwrite(t->fd, c, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (!t->write_err) t->write_err = errno;
            return;
        }
        c += k, n -= (size_t)k, off += (uint64_t)k;
    }
}

/* Hands wbuf[cur] to the file and switches to the other buffer (waiting for its write). */
static void flush_cur(rtv_telemetry *t)
{
    if (!t->fill) return;
    size_t bytes = t->fill * sizeof(rtv_tel_rec);
    uint64_t off = RTV_TEL_HEADER_BYTES + t->file_off;
    if (t->uring_ok) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&t->ring);
        while (!sqe) {
            reap_one(t);
            sqe = io_uring_get_sqe(&t->ring);
        }
        io_uring_prep_write(sqe, t->fd, t->wbuf[t->cur], (unsigned)bytes, off);
        io_uring_sqe_set_data64(sqe, (uint64_t)t->cur);
        t->in_flight[t->cur] = 1;
        int e = io_uring_submit(&t->ring);
        if (e < 0) { /* fall back for this and later writes */
            t->in_flight[t->cur] = 0;
            pwrite_all(t, t->wbuf[t->cur], bytes, off);
        }
    } else {
        pwrite_all(t, t->wbuf[t->cur], bytes, off);
    }
    t->file_off += bytes;
    t->n_written += t->fill;
    t->fill = 0;
    t->cur ^= 1;
    while (t->in_flight[t->cur])
        if (reap_one(t)) break;
}

static int drain(rtv_telemetry *t)
{
    int moved = 0;
    for (int i = 0; i < t->n_rings; i++) {
        rtv_tel_ring *r = &t->rings[i];
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail != head) {
            if (t->fill == WBUF_RECS) flush_cur(t);
            t->wbuf[t->cur][t->fill++] = r->buf[tail & r->mask];
            tail++;
            moved++;
        }
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    return moved;
}

static void *logger_main(void *arg)
{
    rtv_telemetry *t = arg;
    int64_t last_flush = rtv_clock_now_ns();
    int64_t next = last_flush;
    while (!atomic_load(&t->stop)) {
        next += DRAIN_PERIOD_NS;
        rtv_clock_sleep_until(next);
        int64_t now = rtv_clock_now_ns();
        if (now > next + DRAIN_PERIOD_NS) next = now; /* re-phase after a long stall */
        drain(t);
        if (t->fill >= WBUF_RECS / 2 || (t->fill && now - last_flush >= FLUSH_PERIOD_NS)) {
            flush_cur(t);
            last_flush = now;
        }
    }
    drain(t);
    flush_cur(t);
    for (int b = 0; b < 2; b++)
        while (t->in_flight[b])
            if (reap_one(t)) break;
    return NULL;
}

/* ---- lifetime ---- */

int rtv_telemetry_open(rtv_telemetry **out, const char *run_dir, const rtv_tel_stage *stages,
                       int n_stages, int ring_capacity)
{
    *out = NULL;
    if (n_stages < 1 || n_stages > RTV_TEL_MAX_STAGES)
        return rtv_fail(RTV_E_ARG, "telemetry: %d stages, expected 1..%d", n_stages,
                        RTV_TEL_MAX_STAGES);
    if (ring_capacity < 2 || ring_capacity > (1 << 24))
        return rtv_fail(RTV_E_ARG, "telemetry: ring capacity %d, expected 2..%d", ring_capacity,
                        1 << 24);
    rtv_telemetry *t = rtv_alloc_lines(sizeof(*t)); /* the rings' heads and tails own lines */
    if (!t) return rtv_fail(RTV_E_NOMEM, "telemetry: out of memory");
    t->fd = -1;
    uint64_t cap = 2;
    while (cap < (uint64_t)ring_capacity) cap <<= 1;
    t->ring_cap = cap;
    memcpy(t->h.magic, "RTVTEL01", 8);
    t->h.version = 1;
    t->h.header_bytes = RTV_TEL_HEADER_BYTES;
    t->h.rec_bytes = sizeof(rtv_tel_rec);
    t->h.n_stages = (uint32_t)n_stages;
    memcpy(t->h.stages, stages, sizeof(rtv_tel_stage) * (size_t)n_stages);
    for (int i = 0; i < n_stages; i++) t->h.stages[i].name[RTV_TEL_NAME - 1] = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->h.t0_wall_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    t->h.t0_ns = rtv_clock_now_ns();

    snprintf(t->path, sizeof(t->path), "%s/telemetry.bin", run_dir);
    t->fd = open(t->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (t->fd < 0) {
        int e = errno;
        free(t);
        return rtv_fail(RTV_E_OS, "%s/telemetry.bin: cannot create: %s", run_dir, strerror(e));
    }
    for (int b = 0; b < 2; b++) {
        t->wbuf[b] = aligned_alloc(4096, WBUF_BYTES);
        if (!t->wbuf[b]) {
            rtv_telemetry_close(t, NULL, NULL);
            return rtv_fail(RTV_E_NOMEM, "telemetry: out of memory");
        }
        memset(t->wbuf[b], 0, WBUF_BYTES); /* resident before any RT thread runs */
    }
    /* The header slot is written now (zeros then the real header at close) so a crashed run
     * still leaves a file whose records start at the right offset. */
    pwrite_all(t, &t->h, sizeof(t->h), 0);
    *out = t;
    return RTV_OK;
}

int rtv_telemetry_add_thread(rtv_telemetry *t, const char *name, rtv_tel_ring **ring)
{
    if (t->started) return rtv_fail(RTV_E_ARG, "telemetry: thread '%s' added after start", name);
    if (t->n_rings == RTV_TEL_MAX_THREADS)
        return rtv_fail(RTV_E_ARG, "telemetry: more than %d threads", RTV_TEL_MAX_THREADS);
    rtv_tel_ring *r = &t->rings[t->n_rings];
    r->buf = calloc(t->ring_cap, sizeof(rtv_tel_rec)); /* calloc touches nothing: prefault */
    if (!r->buf) return rtv_fail(RTV_E_NOMEM, "telemetry: out of memory for ring '%s'", name);
    memset(r->buf, 0, t->ring_cap * sizeof(rtv_tel_rec));
    r->mask = t->ring_cap - 1;
    r->thread = (uint16_t)t->n_rings;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    snprintf(t->h.thread_names[t->n_rings], RTV_TEL_NAME, "%s", name);
    t->n_rings++;
    t->h.n_threads = (uint32_t)t->n_rings;
    *ring = r;
    return RTV_OK;
}

int rtv_telemetry_start(rtv_telemetry *t, int force_pwrite)
{
    t->uring_ok = 0;
    if (!force_pwrite) {
        int e = io_uring_queue_init(8, &t->ring, 0);
        if (e == 0) t->uring_ok = 1;
        /* else -EPERM (seccomp, io_uring_disabled) or -ENOSYS: pwrite, reported in the header */
    }
    t->h.writer = t->uring_ok ? WRITER_URING : WRITER_PWRITE;
    pwrite_all(t, &t->h, sizeof(t->h), 0); /* names and stages, in case the run is killed */
    int st = rtv_rt_thread_create(&t->thread, "rtv-logger", 256 * 1024, logger_main, t);
    if (st) {
        if (t->uring_ok) io_uring_queue_exit(&t->ring);
        t->uring_ok = 0;
        return st;
    }
    t->started = 1;
    return RTV_OK;
}

void rtv_telemetry_counts(rtv_telemetry *t, uint64_t *pushed, uint64_t *dropped)
{
    uint64_t p = 0, d = 0;
    for (int i = 0; i < t->n_rings; i++) {
        uint64_t dr = atomic_load_explicit(&t->rings[i].dropped, memory_order_relaxed);
        p += atomic_load_explicit(&t->rings[i].head, memory_order_relaxed) + dr;
        d += dr;
    }
    if (pushed) *pushed = p;
    if (dropped) *dropped = d;
}

const char *rtv_telemetry_writer(const rtv_telemetry *t)
{
    return t->h.writer == WRITER_URING ? "io_uring" : "pwrite";
}

int rtv_telemetry_close(rtv_telemetry *t, uint64_t *n_records, uint64_t *n_dropped)
{
    if (!t) return RTV_OK;
    if (t->started) {
        atomic_store(&t->stop, 1);
        pthread_join(t->thread, NULL);
        t->started = 0;
    } else if (t->fd >= 0) {
        drain(t);
        flush_cur(t);
    }
    if (t->uring_ok) io_uring_queue_exit(&t->ring);
    uint64_t dropped = 0;
    for (int i = 0; i < t->n_rings; i++) dropped += atomic_load(&t->rings[i].dropped);
    t->h.n_records = t->n_written;
    t->h.n_dropped = dropped;
    int st = RTV_OK;
    if (t->fd >= 0) {
        pwrite_all(t, &t->h, sizeof(t->h), 0);
        if (fsync(t->fd) && !t->write_err) t->write_err = errno;
        if (close(t->fd) && !t->write_err) t->write_err = errno;
        if (t->write_err)
            st = rtv_fail(RTV_E_OS, "%s: write failed: %s", t->path, strerror(t->write_err));
    }
    if (n_records) *n_records = t->n_written;
    if (n_dropped) *n_dropped = dropped;
    for (int i = 0; i < t->n_rings; i++) free(t->rings[i].buf);
    free(t->wbuf[0]);
    free(t->wbuf[1]);
    free(t);
    return st;
}

/* ---- reading back ---- */

int rtv_tel_file_read(rtv_tel_file *f, const char *run_dir)
{
    memset(f, 0, sizeof(*f));
    char path[600];
    snprintf(path, sizeof(path), "%s/telemetry.bin", run_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rtv_fail(RTV_E_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int st = RTV_OK;
    if (fstat(fd, &sb)) {
        st = rtv_fail(RTV_E_OS, "%s: stat: %s", path, strerror(errno));
        goto out;
    }
    if ((uint64_t)sb.st_size < RTV_TEL_HEADER_BYTES ||
        pread(fd, &f->h, sizeof(f->h), 0) != (ssize_t)sizeof(f->h)) {
        st = rtv_fail(RTV_E_INPUT, "%s: %lld bytes, shorter than its %d-byte header", path,
                      (long long)sb.st_size, RTV_TEL_HEADER_BYTES);
        goto out;
    }
    if (memcmp(f->h.magic, "RTVTEL01", 8)) {
        st = rtv_fail(RTV_E_INPUT, "%s: not an rtvla telemetry file (magic)", path);
        goto out;
    }
    if (f->h.version != 1 || f->h.header_bytes != RTV_TEL_HEADER_BYTES ||
        f->h.rec_bytes != sizeof(rtv_tel_rec)) {
        st = rtv_fail(RTV_E_INPUT, "%s: version %u / header %u / record %u bytes, expected 1 / %d / %zu",
                      path, f->h.version, f->h.header_bytes, f->h.rec_bytes, RTV_TEL_HEADER_BYTES,
                      sizeof(rtv_tel_rec));
        goto out;
    }
    if (f->h.n_threads > RTV_TEL_MAX_THREADS || f->h.n_stages > RTV_TEL_MAX_STAGES) {
        st = rtv_fail(RTV_E_INPUT, "%s: %u threads / %u stages, at most %d / %d", path,
                      f->h.n_threads, f->h.n_stages, RTV_TEL_MAX_THREADS, RTV_TEL_MAX_STAGES);
        goto out;
    }
    uint64_t body = (uint64_t)sb.st_size - RTV_TEL_HEADER_BYTES;
    uint64_t in_file = body / sizeof(rtv_tel_rec);
    if (f->h.n_records == 0 && in_file > 0) {
        /* header never finalized (the run was killed): take what the body holds */
        f->h.n_records = in_file;
    } else if (f->h.n_records > in_file) {
        st = rtv_fail(RTV_E_INPUT, "%s: header says %llu records, file holds %llu (truncated)",
                      path, (unsigned long long)f->h.n_records, (unsigned long long)in_file);
        goto out;
    }
    for (uint32_t i = 0; i < f->h.n_threads; i++) f->h.thread_names[i][RTV_TEL_NAME - 1] = 0;
    for (uint32_t i = 0; i < f->h.n_stages; i++) {
        f->h.stages[i].name[RTV_TEL_NAME - 1] = 0;
        for (int k = 0; k < RTV_TEL_NV; k++) f->h.stages[i].v_names[k][23] = 0;
    }
    size_t n = (size_t)f->h.n_records;
    f->recs = malloc(n ? n * sizeof(rtv_tel_rec) : 1);
    if (!f->recs) {
        st = rtv_fail(RTV_E_NOMEM, "%s: out of memory for %zu records", path, n);
        goto out;
    }
    size_t want = n * sizeof(rtv_tel_rec), got = 0;
    while (got < want) {
        ssize_t k = pread(fd, (char *)f->recs + got, want - got, RTV_TEL_HEADER_BYTES + (off_t)got);
        if (k <= 0) {
            st = rtv_fail(RTV_E_INPUT, "%s: read failed at record %zu", path,
                          got / sizeof(rtv_tel_rec));
            goto out;
        }
        got += (size_t)k;
    }
    for (size_t i = 0; i < n; i++) {
        if (f->recs[i].thread >= f->h.n_threads || f->recs[i].stage >= f->h.n_stages) {
            st = rtv_fail(RTV_E_INPUT, "%s: record %zu has thread %u / stage %u, header has %u / %u",
                          path, i, f->recs[i].thread, f->recs[i].stage, f->h.n_threads,
                          f->h.n_stages);
            goto out;
        }
    }
out:
    close(fd);
    if (st) rtv_tel_file_free(f);
    return st;
}

void rtv_tel_file_free(rtv_tel_file *f)
{
    free(f->recs);
    f->recs = NULL;
}

/* ---- summary ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[n]. */
static double pct(const double *v, size_t n, double p)
{
    if (!n) return -1;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

/* Collects into buf the durations (ms) of stage s (what = -1) or value `what`; sorted. */
static size_t collect(const rtv_tel_file *f, int s, int what, double *buf)
{
    size_t n = 0;
    for (uint64_t i = 0; i < f->h.n_records; i++) {
        const rtv_tel_rec *r = &f->recs[i];
        if (r->stage != s) continue;
        double x = what < 0 ? (double)(r->t_end_ns - r->t_start_ns) / 1e6 : (double)r->v[what];
        if (isnan(x)) continue;
        buf[n++] = x;
    }
    qsort(buf, n, sizeof(double), cmp_double);
    return n;
}

int rtv_tel_stage_stats(const rtv_tel_file *f, int stage, uint64_t *count, double *p50_ms,
                        double *p99_ms, double *max_ms)
{
    double *buf = malloc((f->h.n_records + 1) * sizeof(double));
    if (!buf) return rtv_fail(RTV_E_NOMEM, "telemetry summary: out of memory");
    size_t n = collect(f, stage, -1, buf);
    *count = n;
    *p50_ms = pct(buf, n, 50);
    *p99_ms = pct(buf, n, 99);
    *max_ms = n ? buf[n - 1] : -1;
    free(buf);
    return RTV_OK;
}

static const char *const flag_names[RTV_TEL_N_FLAGS] = { "miss", "stale", "hold", "fault", "fresh" };

int rtv_tel_summarize(const rtv_tel_file *f, const char *run_dir, const char *extra_json,
                      FILE *txt_out)
{
    int st = RTV_OK;
    char path[600];
    double *buf = malloc((f->h.n_records + 1) * sizeof(double));
    cJSON *root = cJSON_CreateObject();
    cJSON *extra = extra_json ? cJSON_Parse(extra_json) : NULL;
    char *txt = NULL;
    size_t txt_len = 0;
    FILE *tf = open_memstream(&txt, &txt_len);
    if (!buf || !root || !tf || (extra_json && !extra)) {
        st = rtv_fail(extra_json && !extra ? RTV_E_ARG : RTV_E_NOMEM,
                      "telemetry summary: %s", extra_json && !extra ? "extra JSON does not parse"
                                                                  : "out of memory");
        goto out;
    }

    if (extra) {
        cJSON_AddItemToObject(root, "run", extra);
        for (cJSON *it = extra->child; it; it = it->next) {
            char *v = cJSON_PrintUnformatted(it);
            fprintf(tf, "%-22s %s\n", it->string, v ? v : "?");
            cJSON_free(v);
        }
        extra = NULL;
    }
    cJSON_AddNumberToObject(root, "records", (double)f->h.n_records);
    cJSON_AddNumberToObject(root, "records_dropped", (double)f->h.n_dropped);
    cJSON_AddStringToObject(root, "telemetry_writer", f->h.writer == WRITER_URING ? "io_uring"
                                                                                 : "pwrite");
    fprintf(tf, "%-22s %llu written, %llu dropped (%s)\n", "telemetry records",
            (unsigned long long)f->h.n_records, (unsigned long long)f->h.n_dropped,
            f->h.writer == WRITER_URING ? "io_uring" : "pwrite");

    cJSON *jst = cJSON_AddObjectToObject(root, "stages");
    fprintf(tf, "\n%-14s %8s %9s %9s %9s %9s  %s\n", "stage", "count", "p50 ms", "p95 ms",
            "p99 ms", "max ms", "flags");
    for (uint32_t s = 0; s < f->h.n_stages; s++) {
        const rtv_tel_stage *sd = &f->h.stages[s];
        size_t n = collect(f, (int)s, -1, buf);
        cJSON *js = cJSON_AddObjectToObject(jst, sd->name);
        cJSON_AddNumberToObject(js, "count", (double)n);
        double q[4] = { pct(buf, n, 50), pct(buf, n, 95), pct(buf, n, 99), n ? buf[n - 1] : -1 };
        static const char *const qn[4] = { "p50_ms", "p95_ms", "p99_ms", "max_ms" };
        for (int k = 0; k < 4; k++) cJSON_AddNumberToObject(js, qn[k], n ? q[k] : 0);
        fprintf(tf, "%-14s %8zu", sd->name, n);
        for (int k = 0; k < 4; k++) fprintf(tf, " %9.3f", n ? q[k] : 0.0);
        uint64_t fc[RTV_TEL_N_FLAGS] = { 0 };
        for (uint64_t i = 0; i < f->h.n_records; i++)
            if (f->recs[i].stage == s)
                for (int k = 0; k < RTV_TEL_N_FLAGS; k++) fc[k] += (f->recs[i].flags >> k) & 1u;
        fprintf(tf, " ");
        for (int k = 0; k < RTV_TEL_N_FLAGS; k++) {
            cJSON_AddNumberToObject(js, flag_names[k], (double)fc[k]);
            if (fc[k]) fprintf(tf, " %s %llu", flag_names[k], (unsigned long long)fc[k]);
        }
        fprintf(tf, "\n");
        for (int v = 0; v < RTV_TEL_NV; v++) {
            if (!sd->v_names[v][0]) continue;
            size_t m = collect(f, (int)s, v, buf);
            if (!m) continue;
            cJSON *jv = cJSON_AddObjectToObject(js, sd->v_names[v]);
            double vq[4] = { pct(buf, m, 50), pct(buf, m, 95), pct(buf, m, 99), buf[m - 1] };
            static const char *const vn[4] = { "p50", "p95", "p99", "max" };
            for (int k = 0; k < 4; k++) cJSON_AddNumberToObject(jv, vn[k], vq[k]);
            fprintf(tf, "  %-12s %8zu %9.3f %9.3f %9.3f %9.3f\n", sd->v_names[v], m, vq[0], vq[1],
                    vq[2], vq[3]);
            if (sd->hist_mask & (1u << v)) {
                /* integer histogram 0..32 (32 = 32 or more) */
                double hist[33] = { 0 };
                for (size_t i = 0; i < m; i++) {
                    double x = buf[i] < 0 ? 0 : buf[i];
                    hist[x >= 32 ? 32 : (int)x]++;
                }
                int top = 0;
                for (int k = 0; k < 33; k++)
                    if (hist[k]) top = k;
                cJSON *jh = cJSON_AddArrayToObject(jv, "histogram");
                fprintf(tf, "  %-12s histogram:", sd->v_names[v]);
                for (int k = 0; k <= top; k++) {
                    cJSON_AddItemToArray(jh, cJSON_CreateNumber(hist[k]));
                    if (hist[k]) fprintf(tf, " %d%s:%.0f", k, k == 32 ? "+" : "", hist[k]);
                }
                fprintf(tf, "\n");
            }
        }
    }
    fclose(tf);
    tf = NULL;

    char *js = cJSON_Print(root);
    if (!js) {
        st = rtv_fail(RTV_E_NOMEM, "telemetry summary: out of memory");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/summary.json", run_dir);
    FILE *o = fopen(path, "w");
    if (!o) {
        cJSON_free(js);
        st = rtv_fail(RTV_E_OS, "%s: cannot create: %s", path, strerror(errno));
        goto out;
    }
    fprintf(o, "%s\n", js);
    cJSON_free(js);
    if (fclose(o)) {
        st = rtv_fail(RTV_E_OS, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    snprintf(path, sizeof(path), "%s/summary.txt", run_dir);
    o = fopen(path, "w");
    if (!o) {
        st = rtv_fail(RTV_E_OS, "%s: cannot create: %s", path, strerror(errno));
        goto out;
    }
    fputs(txt, o);
    if (fclose(o)) {
        st = rtv_fail(RTV_E_OS, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    if (txt_out) fputs(txt, txt_out);
out:
    if (tf) fclose(tf);
    free(txt);
    cJSON_Delete(extra);
    cJSON_Delete(root);
    free(buf);
    return st;
}

/* ---- Chrome trace ---- */

static void json_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
        else if (c < 0x20) fprintf(o, "\\u%04x", c);
        else fputc(c, o);
    }
    fputc('"', o);
}

int rtv_tel_trace_write(const rtv_tel_file *f, const char *out_path)
{
    FILE *o = fopen(out_path, "w");
    if (!o) return rtv_fail(RTV_E_OS, "%s: cannot create: %s", out_path, strerror(errno));
    fprintf(o, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    fprintf(o, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,\"args\":{\"name\":\"rtvla\"}}");
    for (uint32_t t = 0; t < f->h.n_threads; t++) {
        fprintf(o, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,\"args\":{\"name\":", t + 1);
        json_str(o, f->h.thread_names[t]);
        fprintf(o, "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":1,\"tid\":%u,"
                   "\"args\":{\"sort_index\":%u}}", t + 1, t);
    }
    for (uint64_t i = 0; i < f->h.n_records; i++) {
        const rtv_tel_rec *r = &f->recs[i];
        const rtv_tel_stage *sd = &f->h.stages[r->stage];
        double ts_us = (double)(r->t_start_ns - f->h.t0_ns) / 1e3;
        double dur_us = (double)(r->t_end_ns - r->t_start_ns) / 1e3;
        fprintf(o, ",\n{\"name\":");
        json_str(o, sd->name);
        fprintf(o, ",\"ph\":\"X\",\"pid\":1,\"tid\":%u,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"seq\":%llu",
                r->thread + 1u, ts_us, dur_us < 0 ? 0 : dur_us, (unsigned long long)r->seq);
        for (int v = 0; v < RTV_TEL_NV; v++) {
            if (!sd->v_names[v][0] || isnan(r->v[v]) || isinf(r->v[v])) continue;
            fprintf(o, ",");
            json_str(o, sd->v_names[v]);
            fprintf(o, ":%.9g", (double)r->v[v]);
        }
        for (int k = 0; k < RTV_TEL_N_FLAGS; k++)
            if (r->flags & (1u << k)) fprintf(o, ",\"%s\":1", flag_names[k]);
        fprintf(o, "}}");
    }
    fprintf(o, "\n]}\n");
    if (fclose(o)) return rtv_fail(RTV_E_OS, "%s: write failed: %s", out_path, strerror(errno));
    return RTV_OK;
}
