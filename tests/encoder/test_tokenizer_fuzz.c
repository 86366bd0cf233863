/* tests/encoder/test_tokenizer_fuzz.c — seeded mutations of a valid SentencePiece model and
 * random texts: loading and encoding must never crash, and a model that loads must give ids
 * inside its vocabulary. Bounded: a few thousand cases, well under a second each batch.
 *
 * Env: RTV_TEST_DIR (scratch folder).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fuzz.h"
#include "encoder/tokenizer.h"
#include "runtime/status.h"

static uint64_t rng = 12345;
static uint32_t rnd(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

static int random_text(char *buf, int cap)
{
    int n = (int)(rnd() % (unsigned)cap);
    for (int i = 0; i < n; i++) {
        uint32_t r = rnd() % 10;
        buf[i] = r < 5 ? (char)('a' + rnd() % 26) : r < 7 ? ' ' : (char)(1 + rnd() % 255);
    }
    buf[n] = 0;
    return n;
}

static void exercise(const rtv_tokenizer *t, int *bad_ids)
{
    char text[300];
    int32_t ids[1200];
    int vocab = rtv_tokenizer_vocab_size(t);
    for (int k = 0; k < 4; k++) {
        random_text(text, 256);
        int n = 0, need = 0;
        int rc = rtv_tokenizer_encode(t, text, rtv_tokenizer_bos(t) >= 0, ids, 1200, &n, &need);
        if (rc) continue; /* e.g. a control piece in the text: an error, not a crash */
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab) (*bad_ids)++;
    }
}

int main(int argc, char **argv)
{
    rng = fuzz_seed(rng);
    const char *d = getenv("RTV_TEST_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/fuzz_synthetic.model", d ? d : ".");
    CHECK(rtv_tokenizer_write_synthetic(path, 400) == RTV_OK);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return check_report(argv[0]);
    static uint8_t orig[1 << 20], buf[(1 << 20) + 64];
    size_t len = fread(orig, 1, sizeof(orig), f);
    fclose(f);
    CHECK(len > 1000);

    int loaded = 0, refused = 0, bad_ids = 0, bad_codes = 0;
    for (int c = 0; c < fuzz_iters(4000); c++) {
        size_t n = len;
        memcpy(buf, orig, len);
        int kind = c % 5, muts = 1 + (int)(rnd() % 6);
        for (int m = 0; m < muts; m++) {
            size_t at = rnd() % n;
            switch (kind) {
            case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: buf[at] = (uint8_t)rnd(); break;
            case 2: n = at; break; /* truncate */
            case 3: { /* overwrite with a long or huge varint */
                size_t k = 0;
                while (k < 10 && at + k < n) buf[at + k++] = 0xff;
                if (at + k < n) buf[at + k] = (uint8_t)(rnd() & 0x7f);
                break;
            }
            default: { /* copy a chunk elsewhere */
                size_t from = rnd() % n, l = rnd() % 64;
                if (from + l <= n && at + l <= n) memmove(buf + at, buf + from, l);
            }
            }
            if (n == 0) break;
        }
        if (c % 97 == 0) { /* pure noise */
            n = rnd() % 4096;
            for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        }
        rtv_tokenizer *t = NULL;
        int rc = rtv_tokenizer_load_bytes(&t, "fuzz.model", buf, n);
        if (rc == RTV_OK) {
            loaded++;
            exercise(t, &bad_ids);
            rtv_tokenizer_free(t);
        } else {
            refused++;
            if (rc != RTV_E_INPUT && rc != RTV_E_UNSUPPORTED) bad_codes++;
            if (t) bad_codes++;
            if (!strstr(rtv_last_error(), "fuzz.model")) bad_codes++;
        }
    }
    printf("mutated models: %d loaded, %d refused\n", loaded, refused);
    CHECK(bad_ids == 0);
    CHECK_MSG(bad_codes == 0, "%d refusals with a wrong code or without the file name", bad_codes);
    CHECK(loaded > 0 && refused > 0);

    /* Random texts on the intact model. */
    rtv_tokenizer *t;
    CHECK(rtv_tokenizer_load(&t, path) == RTV_OK);
    int bad = 0;
    for (int c = 0; c < fuzz_iters(3000); c++) exercise(t, &bad);
    CHECK(bad == 0);
    rtv_tokenizer_free(t);
    return check_report(argv[0]);
}
