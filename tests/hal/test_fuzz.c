/* Fuzz both packet parsers (seeded, bounded): random bytes, valid packets with random
 * mutations, truncations and garbage in between. Invariants: never more consumed than given,
 * progress on every call that is not NEED, a packet reported OK re-encodes to a valid packet
 * with the same content, and every valid packet embedded in garbage is found. */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "fuzz.h"
#include "hal/dynamixel.h"
#include "hal/feetech.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static long n_ok, n_corrupt;

static int parse(int dxl, const uint8_t *b, size_t n, int status, rtv_packet *p, size_t *used)
{
    static uint8_t scratch[RTV_DXL_MAX_PACKET];
    return dxl ? rtv_dxl_parse(b, n, status, p, scratch, sizeof(scratch), used)
               : rtv_feetech_parse(b, n, status, p, used);
}

static size_t encode(int dxl, uint8_t *out, size_t cap, int id, int instr, const uint8_t *pr, size_t n)
{
    return dxl ? rtv_dxl_encode(out, cap, id, instr, pr, n) : rtv_feetech_encode(out, cap, id, instr, pr, n);
}

/* Drains buf like the bus does; returns packets found, checks the invariants. */
static int drain(int dxl, const uint8_t *buf, size_t n, int status, int *bad)
{
    size_t off = 0;
    int found = 0;
    for (int guard = 0; guard < 100000; guard++) {
        rtv_packet p;
        size_t used = 0;
        int r = parse(dxl, buf + off, n - off, status, &p, &used);
        if (used > n - off) { (*bad)++; return found; }
        if (r == RTV_PARSE_CORRUPT) n_corrupt++;
        if (r == RTV_PARSE_OK) {
            n_ok++;
            found++;
            if (used == 0 || p.n > 1024) (*bad)++;
            /* re-encode: the same content parses back */
            uint8_t again[4096], params[1100];
            size_t k = 0;
            if (status && dxl) params[k++] = (uint8_t)p.err;
            memcpy(params + k, p.data, p.n);
            k += p.n;
            size_t m = encode(dxl, again, sizeof(again), p.id, status ? (dxl ? 0x55 : p.err) : p.instr, params, k);
            rtv_packet q;
            size_t u2;
            if (!m || parse(dxl, again, m, status, &q, &u2) != RTV_PARSE_OK || q.id != p.id ||
                q.n != p.n || q.err != p.err)
                (*bad)++;
        } else if (r == RTV_PARSE_CORRUPT && used == 0) {
            (*bad)++;
        }
        off += used;
        if (r == RTV_PARSE_NEED) return found;
    }
    (*bad)++; /* no termination */
    return found;
}

static void fuzz(int dxl)
{
    uint8_t buf[6000];
    int bad = 0, missed = 0;
    for (int it = 0; it < fuzz_iters(20000); it++) {
        size_t n = 0;
        int planted = 0;
        int status = (int)(rnd() & 1);
        /* Odd runs: garbage with 0xFF bytes, which can form fake headers; a fake header whose
         * 8-bit checksum (Feetech) or CRC (Dynamixel) passes by chance hides what follows —
         * the protocols allow that, so only even runs (no 0xFF in garbage) must find all. */
        int clean = !(it & 1);
        /* garbage, packets, mutated packets, in random order */
        while (n < sizeof(buf) - 1200) {
            uint32_t what = rnd() % 4;
            if (what == 0) {
                size_t g = rnd() % 20;
                for (size_t i = 0; i < g; i++) buf[n++] = (uint8_t)(clean ? rnd() % 0xFF : rnd() % 5 == 0 ? 0xFF : rnd());
            } else {
                uint8_t params[300];
                size_t np = rnd() % (dxl ? 300 : 60);
                for (size_t i = 0; i < np; i++) params[i] = (uint8_t)(rnd() % 3 ? rnd() : 0xFF - rnd() % 3);
                int id = (int)(rnd() % 253);
                if (dxl && status && np) params[0] &= 0x7F; /* err byte */
                int instr = status ? (dxl ? 0x55 : (int)(rnd() % 0x80)) : (int)(rnd() % 0x90) + 1;
                if (dxl && instr == 0x55 && !status) instr = 0x56;
                size_t m = encode(dxl, buf + n, sizeof(buf) - n, id, instr, params, dxl && status && !np ? 0 : np);
                if (!m || (dxl && status && np == 0)) continue;
                if (what == 3) { /* mutate or truncate */
                    if (rnd() & 1) buf[n + rnd() % m] ^= (uint8_t)(1u << (rnd() % 8));
                    else m = rnd() % m;
                } else {
                    planted++;
                }
                n += m;
                if (what == 3) break; /* a truncated packet may swallow what follows: stop here */
            }
            if (rnd() % 8 == 0) break;
        }
        int found = drain(dxl, buf, n, status, &bad);
        /* every intact packet is found (extra finds possible from garbage that parses) */
        if (clean && found < planted) missed++;
        /* one byte at a time, as a serial port may deliver it */
        if (it % 50 < 2) {
            uint8_t acc[6000];
            size_t an = 0, total_ok = 0;
            for (size_t i = 0; i < n; i++) {
                acc[an++] = buf[i];
                for (;;) {
                    rtv_packet p;
                    size_t used = 0;
                    int r = parse(dxl, acc, an, status, &p, &used);
                    if (used > an) { bad++; used = an; }
                    if (r == RTV_PARSE_OK) total_ok++;
                    memmove(acc, acc + used, an - used);
                    an -= used;
                    if (r == RTV_PARSE_NEED) break;
                }
            }
            if (clean && (int)total_ok < planted) missed++;
        }
    }
    /* pure random bytes */
    for (int it = 0; it < fuzz_iters(10000); it++) {
        size_t n = rnd() % 600;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)rnd();
        drain(dxl, buf, n, (int)(it & 1), &bad);
    }
    CHECK_MSG(n_ok > 10000 && n_corrupt > 1000, "fuzz exercised too little: %ld ok, %ld corrupt", n_ok, n_corrupt);
    n_ok = n_corrupt = 0;
    CHECK_MSG(bad == 0, "%s parser: %d invariant violations", dxl ? "dynamixel" : "feetech", bad);
    CHECK_MSG(missed == 0, "%s parser: planted packets missed in %d runs", dxl ? "dynamixel" : "feetech", missed);
}

int main(int argc, char **argv)
{
    rng = fuzz_seed(rng);
    (void)argc;
    fuzz(0);
    fuzz(1);
    return check_report(argv[0]);
}
