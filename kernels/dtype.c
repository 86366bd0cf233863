/* kernels/dtype.c — dtype sizes and names, and the scalar bf16 / f16 <-> f32 conversions.
 *
 * f32 -> bf16 / f16 round to nearest, ties to even. NaN stays NaN (sign kept, payload's top
 * bits kept, quiet bit set so a payload that would round to zero cannot turn into Inf);
 * finite values past the largest representable one round to Inf as IEEE says; f16
 * subnormals are produced and read exactly. Bits are moved with memcpy (no aliasing tricks). */
#include <string.h>

#include "kernels/backend.h"

size_t rtv_dtype_size(rtv_dtype dt)
{
    switch (dt) {
    case RTV_DT_F32: return 4;
    case RTV_DT_BF16: return 2;
    case RTV_DT_F16: return 2;
    }
    return 0;
}

const char *rtv_dtype_name(rtv_dtype dt)
{
    switch (dt) {
    case RTV_DT_F32: return "f32";
    case RTV_DT_BF16: return "bf16";
    case RTV_DT_F16: return "f16";
    }
    return "unknown";
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float rtv_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t rtv_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN */
    /* Adding 0x7fff plus the lowest kept bit rounds half to even; a carry out of the
     * mantissa bumps the exponent, and out of the largest finite value gives Inf. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float rtv_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13)); /* Inf, NaN */
    if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return bits_f32(sign);
    /* subnormal: man * 2^-24, exact in f32 */
    float v = (float)man * 0x1p-24f;
    return sign ? -v : v;
}

uint16_t rtv_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to Inf */
    if (a >= 0x38800000u) {
        /* normal f16 (|f| >= 2^-14): rebias the exponent, round 13 dropped bits to even;
         * a mantissa carry moves into the exponent correctly */
        uint32_t r = a - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (a < 0x33000000u) return sign; /* below 2^-25, half the smallest subnormal: zero */
    /* subnormal f16: value = m * 2^-24 with m in [0, 1024]; shift the full f32 significand */
    uint32_t e = a >> 23;                       /* 102 .. 112 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;   /* significand, value = m * 2^(e-150) */
    uint32_t shift = 126u - e;                  /* m * 2^(e-150) / 2^-24 = m >> (126 - e) */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q); /* q == 1024 is the smallest normal, encoded correctly */
}
