/* tests/runtime/test_telemetry.c — rings, logger and file round trip; summary figures; trace.
 *
 * Round trip (io_uring and the pwrite fallback): 3 producer threads push 30,000 records each
 * while the logger runs; the file read back holds every record (none dropped), each thread's
 * records in push order with intact values. Drops: a 16-record ring that nobody drains counts
 * exactly the overflow. Summary: known durations give known percentiles in summary.json.
 * Trace: trace.json parses and holds one event per record plus the thread-name metadata.
 * Reader: truncated and corrupted files give errors naming the file, never a crash.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "runtime/rt.h"
#include "runtime/status.h"
#include "runtime/telemetry.h"

#define PER_THREAD 30000

static char tmpdir[256];

static void mkrun(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
    mkdir(out, 0755);
}

static const rtv_tel_stage stages[] = {
    { .name = "work", .v_names = { "seq", "thread", "", "" } },
    { .name = "other", .v_names = { "uses", "", "", "" }, .hist_mask = 1 },
};

typedef struct prod {
    rtv_tel_ring *ring;
    int id;
} prod;

static void *producer(void *a_)
{
    prod *a = a_;
    struct timespec ms = { 0, 1000000 };
    for (int i = 0; i < PER_THREAD; i++) {
        int64_t t = rtv_clock_now_ns();
        rtv_tel_push_rt(a->ring, i & 1, t, t + i, (uint32_t)(i % 3 == 0), (float)i, (float)a->id,
                        0, 0);
        if (i % 200 == 199) nanosleep(&ms, NULL); /* < 0.2 records/us: the logger keeps up */
    }
    return NULL;
}

static void round_trip(int force_pwrite)
{
    char dir[300];
    mkrun(dir, sizeof(dir), force_pwrite ? "rt_pwrite" : "rt_uring");
    rtv_telemetry *t;
    CHECK(rtv_telemetry_open(&t, dir, stages, 2, 16384) == RTV_OK);
    prod p[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "prod%d", i);
        CHECK(rtv_telemetry_add_thread(t, name, &p[i].ring) == RTV_OK);
        p[i].id = i;
    }
    CHECK(rtv_telemetry_start(t, force_pwrite) == RTV_OK);
    printf("writer: %s\n", rtv_telemetry_writer(t));
    if (force_pwrite) CHECK(!strcmp(rtv_telemetry_writer(t), "pwrite"));
    rtv_tel_ring *late;
    CHECK(rtv_telemetry_add_thread(t, "late", &late) == RTV_E_ARG);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, producer, &p[i]);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    uint64_t pushed, dropped, nrec, ndrop;
    rtv_telemetry_counts(t, &pushed, &dropped);
    CHECK(pushed == 3 * PER_THREAD);
    CHECK(rtv_telemetry_close(t, &nrec, &ndrop) == RTV_OK);
    CHECK_MSG(nrec == 3 * PER_THREAD && ndrop == 0, "written %llu dropped %llu",
              (unsigned long long)nrec, (unsigned long long)ndrop);

    rtv_tel_file f;
    CHECK(rtv_tel_file_read(&f, dir) == RTV_OK);
    CHECK(f.h.n_records == 3 * PER_THREAD && f.h.n_dropped == 0 && f.h.n_threads == 3);
    CHECK(!strcmp(f.h.thread_names[2], "prod2") && !strcmp(f.h.stages[1].name, "other"));
    uint64_t next[3] = { 0, 0, 0 };
    int bad = 0;
    for (uint64_t i = 0; i < f.h.n_records; i++) {
        const rtv_tel_rec *r = &f.recs[i];
        if (r->thread > 2 || r->seq != next[r->thread] || r->v[0] != (float)r->seq ||
            r->v[1] != (float)r->thread || r->stage != (r->seq & 1) ||
            r->t_end_ns - r->t_start_ns != (int64_t)r->seq || r->flags != (r->seq % 3 == 0))
            bad++;
        else
            next[r->thread]++;
    }
    CHECK_MSG(bad == 0, "%d records out of order or corrupted", bad);
    CHECK(next[0] == PER_THREAD && next[1] == PER_THREAD && next[2] == PER_THREAD);
    rtv_tel_file_free(&f);
}

static void drops(void)
{
    char dir[300];
    mkrun(dir, sizeof(dir), "drops");
    rtv_telemetry *t;
    rtv_tel_ring *r;
    CHECK(rtv_telemetry_open(&t, dir, stages, 2, 10) == RTV_OK); /* rounds up to 16 */
    CHECK(rtv_telemetry_add_thread(t, "x", &r) == RTV_OK);
    for (int i = 0; i < 100; i++) rtv_tel_push_rt(r, 0, i, i + 1, 0, (float)i, 0, 0, 0);
    uint64_t nrec, ndrop;
    CHECK(rtv_telemetry_close(t, &nrec, &ndrop) == RTV_OK); /* never started: drained at close */
    CHECK(nrec == 16 && ndrop == 84);
    rtv_tel_file f;
    CHECK(rtv_tel_file_read(&f, dir) == RTV_OK);
    CHECK(f.h.n_records == 16 && f.h.n_dropped == 84);
    CHECK(f.recs[15].seq == 15 && f.recs[15].v[0] == 15.0f);
    rtv_tel_file_free(&f);
    CHECK(rtv_telemetry_open(&t, dir, stages, 0, 16) == RTV_E_ARG);
    CHECK(rtv_telemetry_open(&t, "/nonexistent/dir", stages, 2, 16) == RTV_E_OS);
    CHECK(strstr(rtv_last_error(), "/nonexistent/dir/telemetry.bin") != NULL);
    CHECK(rtv_telemetry_close(NULL, NULL, NULL) == RTV_OK);
}

static double jnum(cJSON *o, const char *a, const char *b)
{
    cJSON *x = cJSON_GetObjectItem(o, a);
    if (b) x = cJSON_GetObjectItem(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : -999;
}

static void summary_and_trace(void)
{
    char dir[300], path[400];
    mkrun(dir, sizeof(dir), "summary");
    rtv_telemetry *t;
    rtv_tel_ring *r;
    CHECK(rtv_telemetry_open(&t, dir, stages, 2, 1024) == RTV_OK);
    CHECK(rtv_telemetry_add_thread(t, "act", &r) == RTV_OK);
    /* stage 0: durations 1..100 ms in shuffled order; 7 misses */
    for (int i = 0; i < 100; i++) {
        int k = (i * 37) % 100 + 1;
        rtv_tel_push_rt(r, 0, 0, (int64_t)k * 1000000, i < 7 ? RTV_TEL_F_MISS : 0, (float)k, 0, 0, 0);
    }
    /* stage 1: uses 1,1,2,3,3,3 */
    const int uses[6] = { 1, 1, 2, 3, 3, 3 };
    for (int i = 0; i < 6; i++) rtv_tel_push_rt(r, 1, 0, 0, 0, (float)uses[i], 0, 0, 0);
    CHECK(rtv_telemetry_close(t, NULL, NULL) == RTV_OK);

    rtv_tel_file f;
    CHECK(rtv_tel_file_read(&f, dir) == RTV_OK);
    uint64_t n;
    double p50, p99, mx;
    rtv_tel_stage_stats(&f, 0, &n, &p50, &p99, &mx);
    CHECK(n == 100 && p50 == 50.0 && p99 == 99.0 && mx == 100.0);
    FILE *devnull = fopen("/dev/null", "w");
    CHECK(rtv_tel_summarize(&f, dir, "{\"sched\":\"SCHED_FIFO 80\",\"alloc\":0}", devnull) == RTV_OK);
    CHECK(rtv_tel_summarize(&f, dir, "{not json", devnull) == RTV_E_ARG);
    fclose(devnull);
    CHECK(rtv_tel_summarize(&f, dir, "{\"sched\":\"SCHED_FIFO 80\"}", NULL) == RTV_OK);

    snprintf(path, sizeof(path), "%s/summary.json", dir);
    FILE *jf = fopen(path, "r");
    char buf[65536];
    size_t len = jf ? fread(buf, 1, sizeof(buf) - 1, jf) : 0;
    if (jf) fclose(jf);
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf);
    CHECK(j != NULL);
    cJSON *st = cJSON_GetObjectItem(j, "stages");
    CHECK(jnum(st, "work", "count") == 100 && jnum(st, "work", "p50_ms") == 50);
    CHECK(jnum(st, "work", "p95_ms") == 95 && jnum(st, "work", "p99_ms") == 99);
    CHECK(jnum(st, "work", "max_ms") == 100 && jnum(st, "work", "miss") == 7);
    cJSON *hist = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(st, "other"), "uses"),
                                      "histogram");
    CHECK(cJSON_GetArraySize(hist) == 4);
    CHECK(cJSON_GetArrayItem(hist, 1)->valuedouble == 2 && cJSON_GetArrayItem(hist, 3)->valuedouble == 3);
    CHECK(jnum(j, "records_dropped", NULL) == 0);
    cJSON *run = cJSON_GetObjectItem(j, "run");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(run, "sched")));
    cJSON_Delete(j);
    snprintf(path, sizeof(path), "%s/summary.txt", dir);
    CHECK(access(path, R_OK) == 0);

    snprintf(path, sizeof(path), "%s/trace.json", dir);
    CHECK(rtv_tel_trace_write(&f, path) == RTV_OK);
    jf = fopen(path, "r");
    static char tb[1 << 20];
    len = jf ? fread(tb, 1, sizeof(tb) - 1, jf) : 0;
    if (jf) fclose(jf);
    tb[len] = 0;
    j = cJSON_Parse(tb);
    CHECK(j != NULL);
    cJSON *ev = cJSON_GetObjectItem(j, "traceEvents");
    int nx = 0, nmeta = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, ev)
    {
        const char *ph = cJSON_GetStringValue(cJSON_GetObjectItem(e, "ph"));
        if (ph && !strcmp(ph, "X")) nx++;
        if (ph && !strcmp(ph, "M")) nmeta++;
    }
    CHECK(nx == 106 && nmeta == 3);
    cJSON_Delete(j);
    rtv_tel_file_free(&f);
}

static void reader_errors(void)
{
    char dir[300], path[400];
    mkrun(dir, sizeof(dir), "corrupt");
    snprintf(path, sizeof(path), "%s/telemetry.bin", dir);
    rtv_tel_file f;
    CHECK(rtv_tel_file_read(&f, dir) == RTV_E_INPUT); /* missing */
    CHECK(strstr(rtv_last_error(), "telemetry.bin") != NULL);

    /* a valid file to corrupt */
    rtv_telemetry *t;
    rtv_tel_ring *r;
    rtv_telemetry_open(&t, dir, stages, 2, 64);
    rtv_telemetry_add_thread(t, "a", &r);
    for (int i = 0; i < 50; i++) rtv_tel_push_rt(r, i % 2, i, i + 5, 0, 1, 2, 3, 4);
    rtv_telemetry_close(t, NULL, NULL);
    FILE *fp = fopen(path, "rb");
    static unsigned char orig[RTV_TEL_HEADER_BYTES + 50 * 48];
    size_t n = fread(orig, 1, sizeof(orig), fp);
    fclose(fp);
    CHECK(n == sizeof(orig));

    /* truncated: header says 50 records */
    fp = fopen(path, "wb");
    fwrite(orig, 1, n - 48, fp);
    fclose(fp);
    CHECK(rtv_tel_file_read(&f, dir) == RTV_E_INPUT);
    CHECK(strstr(rtv_last_error(), "truncated") != NULL);
    fp = fopen(path, "wb");
    fwrite(orig, 1, 100, fp);
    fclose(fp);
    CHECK(rtv_tel_file_read(&f, dir) == RTV_E_INPUT);

    /* seeded random corruption of header fields and records: error or success, never a crash,
     * and on success every record's indices are inside the tables */
    uint64_t rng = 42;
    int ok = 0, err = 0, bad_ok = 0;
    static unsigned char m[sizeof(orig)];
    for (int it = 0; it < 300; it++) {
        memcpy(m, orig, n);
        for (int k = 0; k < 4; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pos = (rng >> 33) % (it % 2 ? 64 : n); /* half the runs hit the fixed fields */
            m[pos] ^= (unsigned char)(1u << ((rng >> 20) & 7));
        }
        fp = fopen(path, "wb");
        fwrite(m, 1, n, fp);
        fclose(fp);
        if (rtv_tel_file_read(&f, dir) == RTV_OK) {
            ok++;
            for (uint64_t i = 0; i < f.h.n_records; i++)
                if (f.recs[i].thread >= f.h.n_threads || f.recs[i].stage >= f.h.n_stages) bad_ok++;
            rtv_tel_file_free(&f);
        } else {
            err++;
        }
    }
    CHECK(bad_ok == 0);
    CHECK(err > 0);
    printf("corruption: %d read back, %d rejected\n", ok, err);
}

int main(int argc, char **argv)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/rtv_test_tel_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    round_trip(0);
    round_trip(1);
    drops();
    summary_and_trace();
    reader_errors();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_report(argv[0]);
}
