/* tests/camera/test_image_fuzz.c — mutated PPM and JPEG files (seeded, bounded): every load
 * either succeeds with a sane frame or fails with a message naming the file; never a crash,
 * never an exit from inside libjpeg. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "check.h"
#include "fuzz.h"
#include "runtime/status.h"
#include "vision/image.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static size_t make_jpeg(uint8_t **out)
{
    int w = 48, h = 32;
    uint8_t *px = malloc((size_t)w * (size_t)h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)(i * 13 + (i / 97) * 5);
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *mem = NULL;
    unsigned long n = 0;
    jpeg_mem_dest(&ci, &mem, &n);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 80, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = px + (size_t)ci.next_scanline * (size_t)w * 3;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(px);
    *out = malloc(n);
    memcpy(*out, mem, n);
    free(mem);
    return n;
}

static size_t make_ppm(uint8_t **out)
{
    char hdr[32];
    int hn = snprintf(hdr, sizeof(hdr), "P6\n# c\n20 10\n255\n");
    size_t n = (size_t)hn + 600;
    *out = malloc(n);
    memcpy(*out, hdr, (size_t)hn);
    for (size_t i = (size_t)hn; i < n; i++) (*out)[i] = (uint8_t)rnd();
    return n;
}

static void fuzz(const char *path, const uint8_t *seed, size_t n, int iters, int *n_ok)
{
    uint8_t *buf = malloc(n + 64);
    for (int it = 0; it < iters; it++) {
        memcpy(buf, seed, n);
        size_t m = n;
        int k = 1 + (int)(rnd() % 8);
        for (int j = 0; j < k; j++) {
            switch (rnd() % 4) {
            case 0: buf[rnd() % m] ^= (uint8_t)(1u << (rnd() % 8)); break;       /* bit flip */
            case 1: buf[rnd() % m] = (uint8_t)rnd(); break;                      /* byte */
            case 2: m = 1 + rnd() % m; break;                                   /* truncate */
            case 3: {                                                            /* header digit */
                size_t at = rnd() % (m < 40 ? m : 40);
                buf[at] = (uint8_t)('0' + rnd() % 10);
                break;
            }
            }
        }
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, m, f);
        fclose(f);
        rtv_frame g;
        int st = rtv_image_load(&g, path);
        if (st == RTV_OK) {
            (*n_ok)++;
            CHECK(g.rgb && g.w >= 1 && g.h >= 1 && g.stride == 3 * g.w);
            /* touch the last pixel: the buffer must really be w x h */
            if (g.rgb) CHECK(g.rgb[(size_t)g.stride * (size_t)(g.h - 1) + 3 * (size_t)g.w - 1] <= 255);
        } else {
            CHECK_MSG(st < 0 && strstr(rtv_last_error(), path), "iteration %d: status %d, '%s'", it, st,
                      rtv_last_error());
            CHECK(g.rgb == NULL);
        }
        rtv_image_free(&g);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    rng = fuzz_seed(rng);
    const char *d = getenv("RTV_TEST_DIR");
    char path[600];
    snprintf(path, sizeof(path), "%s/fuzz_image.bin", d ? d : "/tmp");
    uint8_t *jpg, *ppm;
    size_t nj = make_jpeg(&jpg), np = make_ppm(&ppm);
    int ok_j = 0, ok_p = 0;
    const int iters = fuzz_iters(1500);
    fuzz(path, jpg, nj, iters, &ok_j);
    fuzz(path, ppm, np, iters, &ok_p);
    printf("fuzz: %d of %d mutated JPEGs and %d of %d mutated PPMs decoded\n", ok_j, iters, ok_p,
           iters);
    /* both outcomes must occur, or the mutations are not exercising the parsers */
    CHECK(ok_j > 0 && ok_j < iters);
    CHECK(ok_p > 0 && ok_p < iters);
    free(jpg);
    free(ppm);
    return check_report(argv[0]);
}
