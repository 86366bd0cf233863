/* tests/encoder/test_tokenizer.c — our SentencePiece BPE encoder against the Debian
 * spm_encode binary, on models spm_train builds here at run time from a generated corpus
 * (ASCII, accents, Greek, Cyrillic, CJK, emoji) and on rtv_tokenizer_write_synthetic models.
 *
 * Env: RTV_TEST_DIR (scratch folder), SPM_TRAIN, SPM_ENCODE (binaries; exit 77 if absent).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "encoder/tokenizer.h"
#include "runtime/status.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static const char *const words[] = {
    "put", "the", "red", "cube", "in", "bowl", "pick", "up", "blue", "block", "and", "place",
    "it", "on", "plate", "open", "drawer", "close", "gripper", "left", "right", "towel", "fold",
    "café", "naïve", "über", "señor", "garçon", "français", "Ålesund", "jalapeño", "Straße",
    "λόγος", "αβγ", "привет", "мир", "робот", "机器人", "抓取", "红色", "方块", "日本語",
    "テスト", "한국어", "🤖", "👍", "🍎", "☕", "A", "I", "Hello,", "world!", "x=1;", "3.14",
    "2024", "(ok)", "e-mail", "don't", "ROBOT", "Cube", "The", "sauté", "ñ", "…", "—",
};
/* Never in the corpus: byte fallback / unknown paths. */
static const char *const rare[] = {
    "مرحبا", "สวัสดี", "नमस्ते", "🦜", "🧪", "∑∫", "e\xcc\x81", "ẞ", "ꙮ", "𝔘𝔫𝔦", "\xef\xbf\xbd",
    "\xe2\x96\x81", "\xe2\x96\x81\xe2\x96\x81x",
};
static const char *const bad_utf8[] = {
    "\xff", "\xc3(", "\xe2\x82", "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\xaf", "\xf8\x88\x80\x80",
    "\x80", "\xf4\x90\x80\x80", "\xfe\xfe",
};
#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char dir[1024];

static int run(const char *cmd)
{
    int r = system(cmd);
    if (r != 0) fprintf(stderr, "command failed (%d): %s\n", r, cmd);
    return r;
}

static void make_corpus(const char *path)
{
    FILE *f = fopen(path, "w");
    for (int line = 0; line < 4000; line++) {
        int nw = 2 + (int)(rnd() % 10);
        for (int i = 0; i < nw; i++) {
            if (i) fputs(rnd() % 17 ? " " : "  ", f);
            fputs(words[rnd() % N(words)], f);
        }
        if (line % 50 == 0) fputs(" <obj> @@ x<obj>y", f);
        fputc('\n', f);
    }
    fclose(f);
}

/* Appends a random valid UTF-8 code point from a plane mix. */
static int put_random_cp(char *o)
{
    uint32_t c;
    switch (rnd() % 4) {
    case 0: c = 0x20 + rnd() % 0x5f; break;
    case 1: c = 0xa0 + rnd() % 0x700; break;
    case 2: c = 0x3000 + rnd() % 0x6000; break;
    default: c = 0x1f300 + rnd() % 0x300; break;
    }
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xc0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3f)); return 2; }
    if (c < 0x10000) {
        if (c >= 0xd800 && c < 0xe000) c = 0x4e00;
        o[0] = (char)(0xe0 | c >> 12);
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | c >> 18);
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

#define N_STR 700
static char *strs[N_STR];

static void make_strings(void)
{
    char buf[2048];
    for (int i = 0; i < N_STR; i++) {
        int k = 0, kind = i % 7;
        if (i == 0) { strs[i] = strdup(""); continue; }
        if (i == 1) { strs[i] = strdup(" "); continue; }
        if (i == 2) { strs[i] = strdup("   put  the\tcube   "); continue; }
        int nw = 1 + (int)(rnd() % 9);
        if (rnd() % 5 == 0) k += snprintf(buf + k, sizeof(buf) - (size_t)k, "%s", rnd() % 2 ? " " : "   ");
        for (int j = 0; j < nw && k < 1800; j++) {
            if (j) k += snprintf(buf + k, sizeof(buf) - (size_t)k, "%s",
                                 rnd() % 9 ? " " : (rnd() % 2 ? "  " : "\t"));
            const char *w;
            if (kind == 1 && rnd() % 3 == 0) w = rare[rnd() % N(rare)];
            else if (kind == 2 && rnd() % 3 == 0) w = bad_utf8[rnd() % N(bad_utf8)];
            else if (kind == 3 && rnd() % 4 == 0) w = rnd() % 2 ? "<obj>" : "@@@";
            else w = words[rnd() % N(words)];
            k += snprintf(buf + k, sizeof(buf) - (size_t)k, "%s", w);
            if (kind == 4) /* glue random code points to the word */
                for (int r = (int)(rnd() % 4); r > 0 && k < 1900; r--) k += put_random_cp(buf + k);
        }
        if (kind == 5 && rnd() % 2) k += snprintf(buf + k, sizeof(buf) - (size_t)k, "  ");
        buf[k] = 0;
        strs[i] = strdup(buf);
    }
}

/* Writes strs to in, runs spm_encode with model, compares every line with our ids from
 * ours (the same model, or for the negative control another one: then differences are
 * required, proving the comparison can fail). */
static void compare_models(const char *model, const char *ours, const char *tag)
{
    int control = strcmp(model, ours) != 0;
    char in[1200], out[1200], cmd[4096];
    snprintf(in, sizeof(in), "%s/%s.in", dir, tag);
    snprintf(out, sizeof(out), "%s/%s.ids", dir, tag);
    FILE *f = fopen(in, "wb");
    for (int i = 0; i < N_STR; i++) fprintf(f, "%s\n", strs[i]);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "'%s' --model='%s' --output_format=id < '%s' > '%s'",
             getenv("SPM_ENCODE"), model, in, out);
    CHECK_MSG(run(cmd) == 0, "spm_encode on %s", model);
    rtv_tokenizer *t = NULL;
    int rc = rtv_tokenizer_load(&t, ours);
    CHECK_MSG(rc == RTV_OK, "%s: %s", ours, rtv_last_error());
    if (rc) return;
    f = fopen(out, "r");
    CHECK(f != NULL);
    if (!f) { rtv_tokenizer_free(t); return; }
    char *line = NULL;
    size_t cap = 0;
    int mismatches = 0, compared = 0, tokens = 0;
    for (int i = 0; i < N_STR; i++) {
        ssize_t l = getline(&line, &cap, f);
        if (l < 0) { CHECK_MSG(0, "%s: spm_encode printed %d lines, expected %d", tag, i, N_STR); break; }
        int32_t ref[4096], got[4096];
        int nref = 0, ngot = 0, need = 0;
        for (char *p = line; *p && *p != '\n';) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            ref[nref++] = (int32_t)v;
            p = e;
        }
        rc = rtv_tokenizer_encode(t, strs[i], 0, got, 4096, &ngot, &need);
        compared++;
        tokens += ngot;
        int same = rc == RTV_OK && ngot == nref && need == ngot &&
                   !memcmp(got, ref, (size_t)nref * sizeof(int32_t));
        if (!same && mismatches++ < 5 && !control) {
            fprintf(stderr, "%s: string %d '%s' (rc %d %s)\n  spm: ", tag, i, strs[i], rc,
                    rc ? rtv_last_error() : "");
            for (int j = 0; j < nref && j < 40; j++) fprintf(stderr, "%d ", ref[j]);
            fprintf(stderr, "\n  us:  ");
            for (int j = 0; j < ngot && j < 40; j++) fprintf(stderr, "%d ", got[j]);
            fprintf(stderr, "\n");
        }
    }
    free(line);
    fclose(f);
    if (control)
        CHECK_MSG(mismatches > N_STR / 2, "%s: negative control: only %d of %d strings differ",
                  tag, mismatches, compared);
    else
        CHECK_MSG(mismatches == 0, "%s: %d of %d strings differ from spm_encode", tag,
                  mismatches, compared);
    CHECK_MSG(tokens > N_STR, "%s: only %d tokens in total", tag, tokens);
    printf("%s: %d strings, %d tokens, %d mismatches\n", tag, compared, tokens, mismatches);
    rtv_tokenizer_free(t);
}

static int train(const char *tag, const char *flags)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "'%s' --input='%s/corpus.txt' --model_prefix='%s/%s' "
             "--num_threads=2 --hard_vocab_limit=false %s > '%s/%s.log' 2>&1",
             getenv("SPM_TRAIN"), dir, dir, tag, flags, dir, tag);
    return run(cmd);
}

static void compare_with_spm(const char *model, const char *tag)
{
    compare_models(model, model, tag);
}

typedef struct { const rtv_tokenizer *t; int ok; } thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    a->ok = 1;
    for (int rep = 0; rep < 20; rep++)
        for (int i = 0; i < N_STR; i += 7) {
            int32_t x[4096], y[4096];
            int nx, ny;
            rtv_tokenizer_encode(a->t, strs[i], 1, x, 4096, &nx, NULL);
            rtv_tokenizer_encode(a->t, strs[i], 1, y, 4096, &ny, NULL);
            if (nx != ny || memcmp(x, y, (size_t)nx * 4)) a->ok = 0;
        }
    return NULL;
}

static void api_checks(const char *model)
{
    rtv_tokenizer *t;
    int rc = rtv_tokenizer_load(&t, model);
    CHECK(rc == RTV_OK);
    if (rc) return;
    CHECK(rtv_tokenizer_vocab_size(t) == 1024);
    CHECK(rtv_tokenizer_pad(t) == 0 && rtv_tokenizer_eos(t) == 1 && rtv_tokenizer_bos(t) == 2);
    CHECK(!strcmp(rtv_tokenizer_piece(t, 3), "<unk>"));
    CHECK(!strcmp(rtv_tokenizer_piece(t, 4), "<0x00>"));
    CHECK(!strcmp(rtv_tokenizer_piece(t, 259), "<0xFF>"));
    CHECK(rtv_tokenizer_piece(t, -1) == NULL && rtv_tokenizer_piece(t, 1024) == NULL);
    int32_t ids[64], all[64];
    int n, need, nall;
    CHECK(rtv_tokenizer_encode(t, "pick up the red cube", 1, all, 64, &nall, &need) == RTV_OK);
    CHECK(nall == need && nall >= 3 && all[0] == 2);
    CHECK(rtv_tokenizer_encode(t, "pick up the red cube", 1, ids, 2, &n, &need) == RTV_OK);
    CHECK(n == 2 && need == nall && ids[0] == all[0] && ids[1] == all[1]);
    CHECK(rtv_tokenizer_encode(t, "pick up the red cube", 0, ids, 64, &n, &need) == RTV_OK);
    CHECK(n == nall - 1 && !memcmp(ids, all + 1, (size_t)n * 4));
    /* "\n" is one piece, as in Gemma. */
    CHECK(rtv_tokenizer_encode(t, "\n", 0, ids, 64, &n, NULL) == RTV_OK && n == 1 &&
          !strcmp(rtv_tokenizer_piece(t, ids[0]), "\n"));
    /* Bytes with no piece fall back to <0xNN>. */
    CHECK(rtv_tokenizer_encode(t, "\xe2\x98\x95", 0, ids, 64, &n, NULL) == RTV_OK && n == 3 &&
          ids[0] == 4 + 0xe2 && ids[1] == 4 + 0x98 && ids[2] == 4 + 0x95);
    char *big = malloc(RTV_TOKENIZER_MAX_TEXT + 2);
    memset(big, 'a', RTV_TOKENIZER_MAX_TEXT + 1);
    big[RTV_TOKENIZER_MAX_TEXT + 1] = 0;
    CHECK(rtv_tokenizer_encode(t, big, 0, ids, 64, &n, NULL) == RTV_E_ARG);
    big[RTV_TOKENIZER_MAX_TEXT] = 0; /* exactly the maximum is fine */
    CHECK(rtv_tokenizer_encode(t, big, 0, ids, 64, &n, &need) == RTV_OK && n == 64 && need > 64);
    free(big);
    /* Threads share one tokenizer. */
    pthread_t th[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i].t = t;
        pthread_create(&th[i], NULL, thr_main, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].ok);
    }
    rtv_tokenizer_free(t);
}

int main(int argc, char **argv)
{
    const char *d = getenv("RTV_TEST_DIR");
    const char *tr = getenv("SPM_TRAIN"), *en = getenv("SPM_ENCODE");
    if (!d || !tr || !*tr || !en || !*en) {
        fprintf(stderr, "SKIP: needs RTV_TEST_DIR, SPM_TRAIN, SPM_ENCODE (Debian package "
                        "sentencepiece)\n");
        return 77;
    }
    snprintf(dir, sizeof(dir), "%s/tok_work", d);
    mkdir(dir, 0755);
    char path[1200], p2[1200];
    snprintf(path, sizeof(path), "%s/corpus.txt", dir);
    make_corpus(path);
    make_strings();

    static const struct { const char *tag, *flags; } models[] = {
        {"bpe_gemma", "--model_type=bpe --vocab_size=900 --byte_fallback=true "
                      "--normalization_rule_name=identity --add_dummy_prefix=false "
                      "--remove_extra_whitespaces=false --character_coverage=0.9995 "
                      "--user_defined_symbols='<obj>,@@' --split_digits=true"},
        {"bpe_dummy", "--model_type=bpe --vocab_size=700 --byte_fallback=true "
                      "--normalization_rule_name=identity --character_coverage=0.999"},
        {"bpe_nofb", "--model_type=bpe --vocab_size=500 --normalization_rule_name=identity "
                     "--character_coverage=0.98"},
        {"bpe_suffix", "--model_type=bpe --vocab_size=600 --byte_fallback=true "
                       "--normalization_rule_name=identity --treat_whitespace_as_suffix=true"},
    };
    for (int i = 0; i < N(models); i++) {
        CHECK_MSG(train(models[i].tag, models[i].flags) == 0, "spm_train %s", models[i].tag);
        snprintf(path, sizeof(path), "%s/%s.model", dir, models[i].tag);
        compare_with_spm(path, models[i].tag);
    }

    snprintf(path, sizeof(path), "%s/bpe_gemma.model", dir);
    snprintf(p2, sizeof(p2), "%s/bpe_dummy.model", dir);
    compare_models(path, p2, "control");

    /* Synthetic models: spm_encode must accept them and agree with us. */
    static const int vocabs[] = {300, 1024, 5000};
    for (int i = 0; i < N(vocabs); i++) {
        char tag[64];
        snprintf(tag, sizeof(tag), "synthetic_%d", vocabs[i]);
        snprintf(path, sizeof(path), "%s/%s.model", dir, tag);
        int rc = rtv_tokenizer_write_synthetic(path, vocabs[i]);
        CHECK_MSG(rc == RTV_OK, "%s", rtv_last_error());
        rtv_tokenizer *t;
        CHECK(rtv_tokenizer_load(&t, path) == RTV_OK && rtv_tokenizer_vocab_size(t) == vocabs[i]);
        rtv_tokenizer_free(t);
        compare_with_spm(path, tag);
    }
    snprintf(path, sizeof(path), "%s/synthetic_1024.model", dir);
    api_checks(path);
    CHECK(rtv_tokenizer_write_synthetic(path, 299) == RTV_E_ARG);

    /* Refused models name the setting. */
    rtv_tokenizer *t = NULL;
    CHECK(train("unigram", "--model_type=unigram --vocab_size=500 "
                           "--normalization_rule_name=identity") == 0);
    snprintf(path, sizeof(path), "%s/unigram.model", dir);
    CHECK(rtv_tokenizer_load(&t, path) == RTV_E_UNSUPPORTED && t == NULL);
    CHECK_MSG(strstr(rtv_last_error(), "UNIGRAM") && strstr(rtv_last_error(), path), "%s",
              rtv_last_error());
    CHECK(train("nfkc", "--model_type=bpe --vocab_size=500") == 0);
    snprintf(path, sizeof(path), "%s/nfkc.model", dir);
    CHECK(rtv_tokenizer_load(&t, path) == RTV_E_UNSUPPORTED);
    CHECK_MSG(strstr(rtv_last_error(), "charsmap") && strstr(rtv_last_error(), "nmt_nfkc"), "%s",
              rtv_last_error());
    snprintf(p2, sizeof(p2), "%s/does_not_exist.model", dir);
    CHECK(rtv_tokenizer_load(&t, p2) == RTV_E_INPUT && strstr(rtv_last_error(), p2));
    snprintf(p2, sizeof(p2), "%s/corpus.txt", dir); /* not a protobuf */
    CHECK(rtv_tokenizer_load(&t, p2) == RTV_E_INPUT);
    printf("corpus as model: %s\n", rtv_last_error());
    for (int i = 0; i < N_STR; i++) free(strs[i]);
    return check_report(argv[0]);
}
