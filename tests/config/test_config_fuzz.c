/* tests/config/test_config_fuzz.c — mutated config files and random --set strings (seeded,
 * bounded): every load either succeeds with a config that validates, or fails with a message
 * that names the file (or --set); never a crash. Env RTV_SRC: the source root. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fuzz.h"
#include "runtime/config.h"
#include "runtime/status.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static size_t read_all(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    return n;
}

static const char alphabet[] = ":-[]{},#&*!|>'\"\n\n  \t0123456789abcxyz_.~%@`";

/* One random edit of text (length *n, capacity cap). */
static void mutate(char *t, size_t *n, size_t cap)
{
    size_t at = *n ? next() % *n : 0;
    switch (next() % 6) {
    case 0: if (*n) t[at] = alphabet[next() % (sizeof(alphabet) - 1)]; break;        /* replace */
    case 1: if (*n) { memmove(t + at, t + at + 1, *n - at - 1); (*n)--; } break;      /* delete */
    case 2:                                                                             /* insert */
        if (*n + 1 < cap) { memmove(t + at + 1, t + at, *n - at); t[at] = alphabet[next() % (sizeof(alphabet) - 1)]; (*n)++; }
        break;
    case 3: *n = at; break;                                                             /* truncate */
    case 4: {                                                                           /* copy a run */
        size_t from = *n ? next() % *n : 0, len = next() % 40;
        if (from + len > *n) len = *n - from;
        if (*n + len < cap) { memmove(t + at + len, t + at, *n - at); memmove(t + at, t + from + (from >= at ? len : 0), len); *n += len; }
        break;
    }
    case 5: if (*n) t[at] = (char)(1 + next() % 255); break;                            /* any byte */
    }
    t[*n] = 0;
}

int main(int argc, char **argv)
{
    rng = fuzz_seed(rng);
    (void)argc;
    const char *src = getenv("RTV_SRC");
    char path[1200], tmp[300], base[3][16384], t[40000];
    size_t blen[3];
    const char *names[3] = { "configs/sim.yaml", "configs/so101.yaml", "configs/koch.yaml" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", src ? src : ".", names[i]);
        blen[i] = read_all(path, base[i], sizeof(base[i]));
        CHECK_MSG(blen[i] > 0, "cannot read %s", path);
    }
    snprintf(tmp, sizeof(tmp), "/tmp/rtv_fuzz_config_%d.yaml", (int)getpid());

    int ok = 0, failed = 0, bad_msg = 0, invalid = 0;
    for (int it = 0; it < fuzz_iters(3000); it++) {
        int b = (int)(next() % 3);
        size_t n = blen[b];
        memcpy(t, base[b], n + 1);
        int edits = 1 + (int)(next() % 4);
        for (int e = 0; e < edits; e++) mutate(t, &n, sizeof(t));
        FILE *f = fopen(tmp, "wb");
        fwrite(t, 1, n, f);
        fclose(f);
        rtv_config cfg;
        int st = rtv_config_load(&cfg, tmp, NULL, 0);
        if (st == RTV_OK) {
            ok++;
            if (rtv_config_validate(&cfg) != RTV_OK) { invalid++; fprintf(stderr, "loaded but invalid: %s\n", rtv_last_error()); }
        } else {
            failed++;
            if (!strstr(rtv_last_error(), tmp)) { bad_msg++; fprintf(stderr, "message without the file: %s\n", rtv_last_error()); }
        }
    }
    unlink(tmp);
    printf("files: %d loaded, %d rejected\n", ok, failed);
    CHECK(ok > 0 && failed > 0); /* the mutations reach both outcomes */
    CHECK(bad_msg == 0);
    CHECK(invalid == 0);

    /* random --set: known key paths (and near misses) with random values */
    int nk;
    const rtv_cfg_key *keys = rtv_config_keys(&nk);
    static const char *vals[] = { "0", "-1", "1", "7", "99999999999", "1.5", "nan", "", "true", "off",
                                  "pi0", "hold", "1,2,3", "1,,2", ",", "x", "/dev/ttyACM0", "cuda", "green" };
    int set_ok = 0, set_bad = 0;
    bad_msg = invalid = 0;
    for (int it = 0; it < fuzz_iters(3000); it++) {
        char key[128], assign[300];
        const rtv_cfg_key *k = &keys[next() % (unsigned)nk];
        if (k->flags & RTV_CFG_CAMERA) snprintf(key, sizeof(key), "cameras[%u].%s", next() % 4, k->path + 10);
        else snprintf(key, sizeof(key), "%s", k->path);
        if (next() % 8 == 0) mutate(key, &(size_t){ strlen(key) }, sizeof(key));
        snprintf(assign, sizeof(assign), "%s=%s", key, vals[next() % (sizeof(vals) / sizeof(vals[0]))]);
        if (next() % 16 == 0) assign[next() % strlen(assign)] = 0;
        const char *sets[1] = { assign };
        rtv_config cfg;
        int st = rtv_config_load(&cfg, NULL, sets, 1);
        if (st == RTV_OK) {
            set_ok++;
            if (rtv_config_validate(&cfg) != RTV_OK) invalid++;
        } else {
            set_bad++;
            const char *m = rtv_last_error();
            if (!strstr(m, "--set") && !strstr(m, "<embedded default>")) {
                bad_msg++;
                fprintf(stderr, "--set '%s': message without --set: %s\n", assign, m);
            }
        }
    }
    printf("--set: %d accepted, %d rejected\n", set_ok, set_bad);
    CHECK(set_ok > 0 && set_bad > 0);
    CHECK(bad_msg == 0);
    CHECK(invalid == 0);
    return check_report(argv[0]);
}
