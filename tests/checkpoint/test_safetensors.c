/* tests/checkpoint/test_safetensors.c — writer -> reader round trip for every dtype and shape
 * kind, mmap vs io_uring give the same bytes (one tensor spans several 64 MiB read chunks), and
 * every bad-input case gives the documented code and a message naming the file and tensor.
 *
 * Env: RTV_TEST_DIR (scratch folder).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

static char dir[1024];

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Raw file: 8-byte length, header text as given, then data_len bytes of pattern. */
static void write_raw(const char *path, const char *header, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    uint8_t l[8];
    for (int i = 0; i < 8; i++) l[i] = (uint8_t)(n >> (8 * i));
    fwrite(l, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i * 7 + 1) & 0xff, f);
    fclose(f);
}

/* Opens path expecting code; checks the message contains each needle (and the path). */
static void expect_fail(const char *path, int mode, int code, const char *needle)
{
    rtv_safetensors *st = (rtv_safetensors *)1;
    int rc = rtv_st_open(&st, path, mode);
    CHECK_MSG(rc == code, "%s: got %d (%s), expected %d", needle, rc, rtv_last_error(), code);
    CHECK(st == NULL);
    CHECK_MSG(strstr(rtv_last_error(), needle) != NULL, "message '%s' lacks '%s'",
              rtv_last_error(), needle);
    CHECK_MSG(strstr(rtv_last_error(), path) != NULL, "message '%s' lacks the path",
              rtv_last_error());
}

static void bad_header(const char *name, const char *header, size_t data_len, int code,
                       const char *needle)
{
    char p[1200];
    tmp_path(p, sizeof(p), name);
    write_raw(p, header, data_len);
    expect_fail(p, RTV_ST_MMAP, code, needle);
}

static void round_trip(void)
{
    enum { BIG = (64 << 20) + 4099 }; /* bytes: two io_uring chunks, odd tail */
    float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f}, scalar = 42.0f;
    uint16_t bf16[4] = {0x3f80, 0xc000, 0x7f80, 0x0001}, f16[6] = {0x3c00, 0xc000, 1, 2, 3, 4};
    uint8_t *big = malloc(BIG);
    for (size_t i = 0; i < BIG; i++) big[i] = (uint8_t)(i * 131 + (i >> 9));
    const char *weird = "we\"ird\\n\xc3\xa9\x01";
    rtv_st_writer *w;
    CHECK(rtv_st_writer_new(&w) == RTV_OK);
    int64_t s23[] = {2, 3}, s4[] = {4}, s123[] = {1, 2, 3}, s05[] = {0, 5}, sbig[] = {BIG / 2};
    CHECK(rtv_st_writer_add(w, "a.f32", RTV_DT_F32, 2, s23, f32) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "b.bf16", RTV_DT_BF16, 1, s4, bf16) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "c.f16", RTV_DT_F16, 3, s123, f16) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "scalar", RTV_DT_F32, 0, NULL, &scalar) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "empty", RTV_DT_F32, 2, s05, NULL) == RTV_OK);
    CHECK(rtv_st_writer_add(w, weird, RTV_DT_BF16, 1, sbig, big) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "a.f32", RTV_DT_F32, 2, s23, f32) == RTV_E_ARG); /* twice */
    CHECK(rtv_st_writer_add(w, "neg", RTV_DT_F32, 1, (int64_t[]){-1}, f32) == RTV_E_ARG);
    CHECK(rtv_st_writer_add(w, "dt", (rtv_dtype)7, 1, s4, f32) == RTV_E_ARG);
    CHECK(rtv_st_writer_add(w, "", RTV_DT_F32, 1, s4, f32) == RTV_E_ARG);
    char path[1200];
    tmp_path(path, sizeof(path), "rt.safetensors");
    CHECK(rtv_st_writer_finish(w, path) == RTV_OK);

    /* Header: metadata first, padded with spaces to 8-byte alignment. */
    FILE *f = fopen(path, "rb");
    uint8_t l8[8];
    CHECK(fread(l8, 1, 8, f) == 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | l8[i];
    char *h = malloc(hl + 1);
    CHECK(fread(h, 1, hl, f) == hl);
    h[hl] = 0;
    fclose(f);
    CHECK(hl % 8 == 0);
    CHECK(!strncmp(h, "{\"__metadata__\":{\"format\":\"pt\"}", 31));
    free(h);

    const void *ref[] = {f32, bf16, f16, &scalar, NULL, big};
    const char *names[] = {"a.f32", "b.bf16", "c.f16", "scalar", "empty", weird};
    uint64_t sizes[] = {24, 8, 12, 4, 0, BIG / 2 * 2};
    rtv_safetensors *st[2];
    for (int m = 0; m < 2; m++) {
        int rc = rtv_st_open(&st[m], path, m == 0 ? RTV_ST_MMAP : RTV_ST_READ_URING);
        CHECK_MSG(rc == RTV_OK, "%s", rtv_last_error());
        if (rc) return;
        printf("mode %d: %s\n", m, rtv_st_io_used(st[m]));
        CHECK(rtv_st_count(st[m]) == 6);
        CHECK(!strcmp(rtv_st_path(st[m]), path));
        for (int i = 0; i < 6; i++) {
            const rtv_st_tensor *t = rtv_st_find(st[m], names[i]);
            CHECK_MSG(t != NULL, "tensor %s", names[i]);
            if (!t) continue;
            CHECK(rtv_st_at(st[m], i) == t); /* insertion order kept */
            CHECK(t->nbytes == sizes[i] && t->dtype_ok);
            const void *d = rtv_st_data(st[m], t);
            CHECK(d != NULL);
            if (sizes[i]) CHECK_MSG(!memcmp(d, ref[i], sizes[i]), "data of %s", names[i]);
        }
        const rtv_st_tensor *t = rtv_st_find(st[m], "a.f32");
        CHECK(t->dt == RTV_DT_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
              rtv_st_numel(t) == 6 && !strcmp(t->dtype_name, "F32"));
        t = rtv_st_find(st[m], "c.f16");
        CHECK(t->dt == RTV_DT_F16 && t->ndim == 3 && rtv_st_numel(t) == 6);
        t = rtv_st_find(st[m], "scalar");
        CHECK(t->ndim == 0 && rtv_st_numel(t) == 1);
        t = rtv_st_find(st[m], "empty");
        CHECK(t->ndim == 2 && rtv_st_numel(t) == 0);
        CHECK(rtv_st_find(st[m], "nope") == NULL && rtv_st_at(st[m], 6) == NULL);
        const rtv_st_tensor *r;
        CHECK(rtv_st_require(st[m], "nope", &r) == RTV_E_INPUT && r == NULL);
        CHECK(strstr(rtv_last_error(), "no tensor 'nope'") && strstr(rtv_last_error(), path));
        CHECK(rtv_st_require(st[m], "b.bf16", &r) == RTV_OK && r && r->dt == RTV_DT_BF16);
    }
    CHECK(!strcmp(rtv_st_io_used(st[0]), "mmap"));
    CHECK(!strcmp(rtv_st_io_used(st[1]), "io_uring") ||
          !strncmp(rtv_st_io_used(st[1]), "pread", 5));
    /* Both modes: identical bytes for every tensor. */
    for (int i = 0; i < 6; i++) {
        const rtv_st_tensor *a = rtv_st_at(st[0], i), *b = rtv_st_at(st[1], i);
        CHECK(a->nbytes == b->nbytes &&
              !memcmp(rtv_st_data(st[0], a), rtv_st_data(st[1], b), a->nbytes));
    }
    rtv_st_close(st[0]);
    rtv_st_close(st[1]);
    free(big);

    /* A writer to a folder that does not exist fails cleanly. */
    CHECK(rtv_st_writer_new(&w) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "x", RTV_DT_F32, 1, s4, f32) == RTV_OK);
    tmp_path(path, sizeof(path), "no/such/dir/x.safetensors");
    CHECK(rtv_st_writer_finish(w, path) == RTV_E_OS && strstr(rtv_last_error(), path));
}

static void bad_inputs(void)
{
    char p[1200];
    /* Too short, header length past the end, missing file, bad mode. */
    tmp_path(p, sizeof(p), "short.safetensors");
    FILE *f = fopen(p, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    expect_fail(p, RTV_ST_MMAP, RTV_E_INPUT, "too short");
    tmp_path(p, sizeof(p), "hlen.safetensors");
    f = fopen(p, "wb");
    uint64_t big = 123456789;
    fwrite(&big, 8, 1, f);
    for (int i = 0; i < 992; i++) fputc(' ', f);
    fclose(f);
    expect_fail(p, RTV_ST_MMAP, RTV_E_INPUT, "header length 123456789 exceeds file size 1000");
    tmp_path(p, sizeof(p), "missing.safetensors");
    expect_fail(p, RTV_ST_MMAP, RTV_E_INPUT, "cannot open");
    tmp_path(p, sizeof(p), "hlen.safetensors");
    expect_fail(p, 5, RTV_E_ARG, "read mode");

    bad_header("json.st", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], ", 0, RTV_E_INPUT,
               "not valid JSON");
    bad_header("array.st", "[1, 2]", 0, RTV_E_INPUT, "does not start with '{'");
    bad_header("trail.st", "{} x", 0, RTV_E_INPUT, "trailing bytes");
    bad_header("dtype.st", "{\"w\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
               RTV_E_INPUT, "tensor 'w': unknown dtype 'F17'");
    bad_header("nodtype.st", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, RTV_E_INPUT,
               "tensor 'w': missing or non-string \"dtype\"");
    bad_header("noshape.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
               RTV_E_INPUT, "tensor 'w': missing or non-array \"shape\"");
    bad_header("nooff.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, RTV_E_INPUT,
               "tensor 'w': \"data_offsets\" must be [begin, end]");
    bad_header("negshape.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
               4, RTV_E_INPUT, "tensor 'w': shape[0] is not a non-negative integer");
    bad_header("fracshape.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
               4, RTV_E_INPUT, "shape[0]");
    bad_header("mismatch.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
               RTV_E_INPUT, "tensor 'w': shape (2, 3) x F32 needs 24 bytes, data_offsets [0, 20] "
               "hold 20");
    bad_header("overlap.st",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
               24, RTV_E_INPUT, "tensor 'b': data_offsets [8, 24] overlap tensor 'a' [0, 16]");
    bad_header("range.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
               RTV_E_INPUT, "tensor 'w': data_offsets [0, 16] out of range: data section is 12 "
               "bytes");
    bad_header("reverse.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
               RTV_E_INPUT, "end before they begin");
    bad_header("dup.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, RTV_E_INPUT, "tensor 'w' appears twice");
    bad_header("dims.st",
               "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, RTV_E_UNSUPPORTED, "tensor 'w': 9 dims, at most 8");
    bad_header("meta.st", "{\"__metadata__\":{\"format\":1}}", 0, RTV_E_INPUT,
               "\"__metadata__\" value 'format' is not a string");
    bad_header("overflow.st",
               "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
               "\"data_offsets\":[0,8]}}", 8, RTV_E_INPUT, "overflows");

    /* Known but unsupported dtypes open; their data is refused by name. */
    tmp_path(p, sizeof(p), "i64.safetensors");
    write_raw(p, "{\"steps\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                 "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[16,19]},"
                 "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[20,24]}}   ", 24);
    rtv_safetensors *st;
    int rc = rtv_st_open(&st, p, RTV_ST_MMAP);
    CHECK_MSG(rc == RTV_OK, "%s", rtv_last_error());
    if (!rc) {
        const rtv_st_tensor *t = rtv_st_find(st, "steps"), *r;
        CHECK(t && !t->dtype_ok && !strcmp(t->dtype_name, "I64") && t->nbytes == 16);
        CHECK(rtv_st_data(st, t) == NULL);
        CHECK(strstr(rtv_last_error(), "tensor 'steps' has dtype I64") != NULL);
        CHECK(rtv_st_require(st, "mask", &r) == RTV_E_UNSUPPORTED && r == NULL);
        CHECK(strstr(rtv_last_error(), "'mask' has dtype BOOL") && strstr(rtv_last_error(), p));
        CHECK(rtv_st_require(st, "w", &r) == RTV_OK && rtv_st_data(st, r) != NULL);
        rtv_st_close(st);
    }
    /* Gaps between tensors and an empty file body are valid. */
    tmp_path(p, sizeof(p), "empty.safetensors");
    write_raw(p, "{}", 0);
    CHECK(rtv_st_open(&st, p, RTV_ST_READ_URING) == RTV_OK && rtv_st_count(st) == 0);
    rtv_st_close(st);
    rtv_st_close(NULL);
}

int main(int argc, char **argv)
{
    const char *d = getenv("RTV_TEST_DIR");
    snprintf(dir, sizeof(dir), "%s/st_work", d ? d : ".");
    mkdir(dir, 0755);
    round_trip();
    bad_inputs();
    return check_report(argv[0]);
}
