/* tests/checkpoint/test_safetensors_fuzz.c — seeded mutations of a valid safetensors file
 * (header bytes, digits, length field, truncation) and random headers assembled from JSON
 * fragments: rtv_st_open must never crash, must fail with RTV_E_INPUT/RTV_E_UNSUPPORTED naming
 * the file, and whatever it accepts must lie inside the file.
 *
 * Env: RTV_TEST_DIR (scratch folder).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "fuzz.h"
#include "runtime/safetensors.h"
#include "runtime/status.h"

static uint64_t rng = 777;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

static int bad = 0, accepted = 0, refused = 0;

static void try_file(const char *path, const uint8_t *bytes, size_t n, int mode)
{
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    rtv_safetensors *st = NULL;
    int rc = rtv_st_open(&st, path, mode);
    if (rc) {
        refused++;
        if ((rc != RTV_E_INPUT && rc != RTV_E_UNSUPPORTED) || st ||
            !strstr(rtv_last_error(), path)) {
            if (bad++ < 5) fprintf(stderr, "rc %d: %s\n", rc, rtv_last_error());
        }
        return;
    }
    accepted++;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | bytes[i];
    uint64_t data_len = n - 8 - hl;
    volatile uint8_t sink = 0;
    for (int i = 0; i < rtv_st_count(st); i++) {
        const rtv_st_tensor *t = rtv_st_at(st, i);
        if (t->offset + t->nbytes > data_len || rtv_st_find(st, t->name) != t) bad++;
        const uint8_t *d = rtv_st_data(st, t);
        if (d && t->nbytes) sink ^= d[0] ^ d[t->nbytes - 1];
    }
    (void)sink;
    rtv_st_close(st);
}

static const char *const frags[] = {
    "{", "}", "[", "]", ",", ":", "\"a\"", "\"b\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"",
    "\"F32\"", "\"BF16\"", "\"I64\"", "\"__metadata__\"", "0", "1", "4", "16", "-1", "1e3",
    "18446744073709551616", "null", "true", "\"\\u0000\"", " ", "\"x\\\"y\"", "1.5",
};

int main(int argc, char **argv)
{
    rng = fuzz_seed(rng);
    const char *d = getenv("RTV_TEST_DIR");
    char dir[1024], path[1200], valid[1200];
    snprintf(dir, sizeof(dir), "%s/st_fuzz", d ? d : ".");
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/case.safetensors", dir);
    snprintf(valid, sizeof(valid), "%s/valid.safetensors", dir);

    float a[12];
    uint16_t b[10];
    for (int i = 0; i < 12; i++) a[i] = (float)i;
    for (int i = 0; i < 10; i++) b[i] = (uint16_t)(i * 977);
    rtv_st_writer *w;
    CHECK(rtv_st_writer_new(&w) == RTV_OK);
    CHECK(rtv_st_writer_add(w, "layer.0.weight", RTV_DT_F32, 2, (int64_t[]){3, 4}, a) == 0);
    CHECK(rtv_st_writer_add(w, "layer.0.bias", RTV_DT_BF16, 1, (int64_t[]){10}, b) == 0);
    CHECK(rtv_st_writer_add(w, "s", RTV_DT_F16, 0, NULL, b) == 0);
    CHECK(rtv_st_writer_finish(w, valid) == RTV_OK);
    static uint8_t orig[4096], buf[8192];
    FILE *f = fopen(valid, "rb");
    size_t len = fread(orig, 1, sizeof(orig), f);
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | orig[i];

    for (int c = 0; c < fuzz_iters(2500); c++) {
        size_t n = len;
        memcpy(buf, orig, len);
        int muts = 1 + (int)(rnd() % 4);
        for (int m = 0; m < muts; m++) {
            size_t at = 8 + rnd() % hl; /* inside the header */
            switch (rnd() % 6) {
            case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: buf[at] = (uint8_t)("0123456789,:[]{}\" -"[rnd() % 19]); break;
            case 2: buf[at] = (uint8_t)rnd(); break;
            case 3: n = rnd() % (len + 1); break;
            case 4: buf[rnd() % 8] = (uint8_t)rnd(); break; /* header length */
            default: if (buf[at] >= '0' && buf[at] <= '8') buf[at]++; break;
            }
        }
        if (n < 8) n = 8 + rnd() % 8;
        try_file(path, buf, n, c % 10 == 0 ? RTV_ST_READ_URING : RTV_ST_MMAP);
    }
    /* Headers assembled from JSON fragments. */
    for (int c = 0; c < fuzz_iters(1500); c++) {
        char h[1024];
        int k = 0, nf = 1 + (int)(rnd() % 40);
        h[k++] = '{';
        for (int i = 0; i < nf && k < 900; i++)
            k += snprintf(h + k, sizeof(h) - (size_t)k, "%s", frags[rnd() % (sizeof(frags) / sizeof(frags[0]))]);
        size_t dl = rnd() % 64;
        uint64_t n = (uint64_t)k;
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
        memcpy(buf + 8, h, (size_t)k);
        for (size_t i = 0; i < dl; i++) buf[8 + k + i] = (uint8_t)i;
        try_file(path, buf, 8 + (size_t)k + dl, RTV_ST_MMAP);
    }
    printf("fuzz: %d accepted, %d refused\n", accepted, refused);
    CHECK_MSG(bad == 0, "%d cases broke the contract", bad);
    CHECK(accepted > 0 && refused > 0);
    return check_report(argv[0]);
}
