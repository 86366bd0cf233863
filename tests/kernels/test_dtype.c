/* tests/kernels/test_dtype.c — bf16 / f16 <-> f32 conversions, exhaustive over all 65536
 * 16-bit patterns, against references written from the formats' definitions (double math),
 * and for f16 also against the compiler's _Float16 conversions. f32 -> 16-bit rounding is
 * checked at every representable value, every midpoint between neighbours (ties to even) and
 * the f32 values just either side of each midpoint, plus 2^21 seeded random f32 patterns.
 * All comparisons are exact (bitwise, or equal as doubles with the same sign): conversions
 * have one right answer. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kt.h"

typedef struct fmt {
    const char *name;
    int man_bits, emin, emax;   /* explicit mantissa bits, min normal / max exponent */
    uint16_t quiet;             /* the quiet-NaN bit */
    uint16_t (*from_f32)(float);
    float (*to_f32)(uint16_t);
} fmt;

static const fmt BF16 = { "bf16", 7, -126, 127, 0x0040, rtv_f32_to_bf16, rtv_bf16_to_f32 };
static const fmt F16 = { "f16", 10, -14, 15, 0x0200, rtv_f32_to_f16, rtv_f16_to_f32 };

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static int exp_bits(const fmt *F) { return 15 - F->man_bits; }

/* Value of 16-bit pattern h by the format's definition (NaN for NaN patterns). */
static double ref_decode(const fmt *F, uint16_t h)
{
    int eb = exp_bits(F), bias = F->emax;
    int sign = h >> 15, e = (h >> F->man_bits) & ((1 << eb) - 1), m = h & ((1 << F->man_bits) - 1);
    double v;
    if (e == (1 << eb) - 1) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, F->emin - F->man_bits);
    else v = ldexp(m + (1 << F->man_bits), e - bias - F->man_bits);
    return sign ? -v : v;
}

/* x rounded to the format, nearest with ties to even; +-Inf past the largest finite value. */
static double ref_round(const fmt *F, double x)
{
    if (x == 0 || isinf(x)) return x;
    int k;
    frexp(fabs(x), &k);        /* |x| = f * 2^k, f in [0.5, 1): exponent k - 1 */
    int e = k - 1 < F->emin ? F->emin : k - 1;
    double q = ldexp(1.0, e - F->man_bits);
    double r = nearbyint(fabs(x) / q) * q;   /* default rounding mode: ties to even */
    double maxf = ldexp(2.0 - ldexp(1.0, -F->man_bits), F->emax);
    if (r > maxf) r = INFINITY;
    return copysign(r, x);
}

static long n_bad;

static void check_round(const fmt *F, float f)
{
    uint16_t h = F->from_f32(f);
    double got = ref_decode(F, h);
    if (isnan(f)) {
        if (!isnan(got) || (h >> 15) != (f32_bits(f) >> 31)) {
            if (n_bad++ < 10) fprintf(stderr, "%s: NaN 0x%08x -> 0x%04x\n", F->name, f32_bits(f), h);
        }
        return;
    }
    double ref = ref_round(F, f);
    if (got != ref || !signbit(got) != !signbit(ref)) {
        if (n_bad++ < 10)
            fprintf(stderr, "%s: round(%a) = 0x%04x (%a), expected %a\n", F->name, (double)f, h,
                    got, ref);
    }
}

static void test_format(const fmt *F)
{
    long bad0 = n_bad;
    uint16_t inf = (uint16_t)(((1u << exp_bits(F)) - 1) << F->man_bits);
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        double ref = ref_decode(F, h);
        float got = F->to_f32(h);
        /* decode: exact value, NaN stays NaN with its sign */
        if (isnan(ref) ? !isnan(got) || !signbit(got) != !(h >> 15)
                       : (double)got != ref || !signbit(got) != !signbit(ref)) {
            if (n_bad++ < 10) fprintf(stderr, "%s: decode 0x%04x = %a, expected %a\n", F->name, h,
                                      (double)got, ref);
        }
        /* round trip: identity, except that signalling NaNs come back quiet */
        uint16_t back = F->from_f32(got);
        uint16_t want = isnan(ref) ? (uint16_t)(h | F->quiet) : h;
        if (back != want) {
            if (n_bad++ < 10) fprintf(stderr, "%s: round trip 0x%04x -> 0x%04x\n", F->name, h, back);
        }
        if (isnan(ref) || isinf(ref)) continue;
        /* rounding at this value, at the midpoint to the next one away from zero (the next
         * of the largest finite value is 2^(emax+1), the Inf threshold) and either side */
        check_round(F, got);
        uint16_t mag = h & 0x7fff;
        double next = mag + 1 == inf ? ldexp(1.0, F->emax + 1) : fabs(ref_decode(F, mag + 1));
        double mid = (fabs(ref) + next) / 2;
        float m = (float)(h >> 15 ? -mid : mid);
        if ((double)fabsf(m) != mid) {
            if (n_bad++ < 10) fprintf(stderr, "%s: midpoint %a not exact in f32\n", F->name, mid);
        }
        check_round(F, m);
        check_round(F, nextafterf(m, 0.0f));
        check_round(F, nextafterf(m, h >> 15 ? -INFINITY : INFINITY));
    }
    kt_seed(0x5eed0001);
    for (int i = 0; i < (1 << 21); i++) check_round(F, bits_f32((uint32_t)kt_u64()));
    /* specials: zeros, infinities, NaNs whose payload lies only in the bits that are dropped */
    float sp[] = { 0.0f, -0.0f, INFINITY, -INFINITY, bits_f32(0x7f800001u), bits_f32(0xff800001u),
                   bits_f32(0x7fc00000u), bits_f32(0x7f801fffu), bits_f32(0x00000001u),
                   bits_f32(0x80000001u), bits_f32(0x007fffffu), 65520.0f, 65519.996f,
                   3.3895314e38f, 3.4028235e38f };
    for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++) check_round(F, sp[i]);
    CHECK_MSG(n_bad == bad0, "%s: %ld mismatches", F->name, n_bad - bad0);
}

/* f16 against the compiler's IEEE binary16 conversions (libgcc / F16C), a second reference. */
static void test_f16_vs_compiler(void)
{
    long bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        _Float16 c;
        memcpy(&c, &h, 2);
        float want = (float)c, got = rtv_f16_to_f32(h);
        if (isnan(want) ? !isnan(got) : f32_bits(want) != f32_bits(got)) bad++;
    }
    kt_seed(0x5eed0002);
    for (int i = 0; i < (1 << 20); i++) {
        float f = bits_f32((uint32_t)kt_u64());
        /* concentrate on the f16 range: exponents 100..145 */
        if (i & 1) f = bits_f32((f32_bits(f) & 0x807fffffu) | ((100u + (uint32_t)(i >> 1) % 46u) << 23));
        _Float16 c = (_Float16)f;
        uint16_t want;
        memcpy(&want, &c, 2);
        uint16_t got = rtv_f32_to_f16(f);
        if (isnan(f) ? (got & 0x7c00) != 0x7c00 || !(got & 0x3ff) : got != want) bad++;
    }
    CHECK_MSG(bad == 0, "f16 vs _Float16: %ld mismatches", bad);
}

int main(int argc, char **argv)
{
    CHECK(rtv_dtype_size(RTV_DT_F32) == 4);
    CHECK(rtv_dtype_size(RTV_DT_BF16) == 2);
    CHECK(rtv_dtype_size(RTV_DT_F16) == 2);
    CHECK(!strcmp(rtv_dtype_name(RTV_DT_F32), "f32"));
    CHECK(!strcmp(rtv_dtype_name(RTV_DT_BF16), "bf16"));
    CHECK(!strcmp(rtv_dtype_name(RTV_DT_F16), "f16"));
    CHECK(rtv_dtype_size((rtv_dtype)7) == 0);
    CHECK(!strcmp(rtv_dtype_name((rtv_dtype)7), "unknown"));
    /* a few hand-checked values */
    CHECK(rtv_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(rtv_f32_to_bf16(bits_f32(0x3f808000u)) == 0x3f80); /* tie, even stays */
    CHECK(rtv_f32_to_bf16(bits_f32(0x3f818000u)) == 0x3f82); /* tie, odd rounds up */
    CHECK(rtv_f32_to_f16(1.0f) == 0x3c00);
    CHECK(rtv_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(rtv_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(rtv_f32_to_f16(0x1p-24f) == 0x0001);
    CHECK(rtv_f32_to_f16(0x1p-25f) == 0x0000);               /* tie to even: zero */
    CHECK(rtv_f32_to_f16(0x1.8p-24f) == 0x0002);             /* tie to even: 2 */
    CHECK(rtv_f16_to_f32(0x0001) == 0x1p-24f);
    test_format(&BF16);
    test_format(&F16);
    test_f16_vs_compiler();
    return check_report(argv[0]);
}
