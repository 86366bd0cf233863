/* vision/image.c — PPM (P6) and JPEG (libjpeg) files to owned RGB24 frames, and PPM out.
 *
 * The format is found from the first bytes ("P6" or FF D8), not the file name. Every error
 * names the file and what is wrong; libjpeg's warnings (premature end of data, corrupt
 * segments) are errors here, so a truncated JPEG never decodes to half a grey picture. */
#include "vision/image.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "runtime/status.h"

#define MAX_DIM 16384                  /* px, either side */
#define MAX_PIXELS (64L * 1024 * 1024) /* 64 Mpx = 192 MiB of RGB24 */
#define MAX_FILE_BYTES (512L << 20)

static int read_file(const char *path, uint8_t **data, size_t *n)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return rtv_fail(RTV_E_OS, "%s: cannot open image: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0) {
        int e = errno;
        fclose(f);
        return rtv_fail(RTV_E_OS, "%s: cannot size image file: %s", path, strerror(e));
    }
    long size = ftell(f);
    rewind(f);
    if (size > MAX_FILE_BYTES) {
        fclose(f);
        return rtv_fail(RTV_E_INPUT, "%s: image file is %ld bytes, larger than the %ld limit", path,
                        size, MAX_FILE_BYTES);
    }
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        return rtv_fail(RTV_E_NOMEM, "%s: no memory for %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err || got != (size_t)size) {
        free(buf);
        return rtv_fail(RTV_E_OS, "%s: read %zu of %ld bytes", path, got, size);
    }
    *data = buf;
    *n = (size_t)size;
    return RTV_OK;
}

static int check_dims(const char *path, const char *fmt, long w, long h)
{
    if (w < 1 || h < 1 || w > MAX_DIM || h > MAX_DIM || w * h > MAX_PIXELS)
        return rtv_fail(RTV_E_INPUT, "%s: %s image is %ldx%ld; expected 1..%d px per side and "
                        "at most %ld Mpx", path, fmt, w, h, MAX_DIM, MAX_PIXELS >> 20);
    return RTV_OK;
}

/* ---- PPM ---- */

/* Skips whitespace and '#' comments; then reads a decimal number. Returns position or 0. */
static size_t ppm_number(const uint8_t *p, size_t n, size_t i, long *v, const char *path,
                         const char *field, int *st)
{
    for (;;) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' ||
                         p[i] == '\v' || p[i] == '\f'))
            i++;
        if (i < n && p[i] == '#') {
            while (i < n && p[i] != '\n') i++;
            continue;
        }
        break;
    }
    if (i >= n) {
        *st = rtv_fail(RTV_E_INPUT, "%s: truncated PPM header: missing %s", path, field);
        return 0;
    }
    if (p[i] < '0' || p[i] > '9') {
        *st = rtv_fail(RTV_E_INPUT, "%s: PPM header: expected a number for %s, got byte 0x%02x "
                       "at offset %zu", path, field, p[i], i);
        return 0;
    }
    long x = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        x = x * 10 + (p[i] - '0');
        if (x > 100000000L) {
            *st = rtv_fail(RTV_E_INPUT, "%s: PPM header: %s is too large", path, field);
            return 0;
        }
        i++;
    }
    *v = x;
    return i;
}

static int load_ppm(rtv_frame *out, const char *path, const uint8_t *p, size_t n)
{
    long w, h, maxval;
    int st = RTV_OK;
    size_t i = 2;
    if (!(i = ppm_number(p, n, i, &w, path, "width", &st))) return st;
    if (!(i = ppm_number(p, n, i, &h, path, "height", &st))) return st;
    if (!(i = ppm_number(p, n, i, &maxval, path, "maxval", &st))) return st;
    if ((st = check_dims(path, "PPM", w, h))) return st;
    if (maxval < 1 || maxval > 255)
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: PPM maxval is %ld; expected 1..255 (8-bit "
                        "samples; 16-bit PPM is not supported)", path, maxval);
    if (i >= n || !(p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        return rtv_fail(RTV_E_INPUT, "%s: PPM header: expected one whitespace byte after maxval "
                        "at offset %zu", path, i);
    i++;
    size_t need = (size_t)w * (size_t)h * 3;
    if (n - i < need)
        return rtv_fail(RTV_E_INPUT, "%s: truncated PPM: %ldx%ld needs %zu pixel bytes after "
                        "the header, the file has %zu", path, w, h, need, n - i);
    uint8_t *rgb = malloc(need);
    if (!rgb) return rtv_fail(RTV_E_NOMEM, "%s: no memory for %zu bytes", path, need);
    if (maxval == 255) {
        memcpy(rgb, p + i, need);
    } else {
        for (size_t k = 0; k < need; k++) {
            unsigned v = p[i + k];
            if (v > (unsigned)maxval) {
                free(rgb);
                return rtv_fail(RTV_E_INPUT, "%s: PPM sample %u at byte %zu exceeds maxval %ld",
                                path, v, i + k, maxval);
            }
            rgb[k] = (uint8_t)((v * 255 + (unsigned)maxval / 2) / (unsigned)maxval);
        }
    }
    *out = (rtv_frame){ .rgb = rgb, .w = (int)w, .h = (int)h, .stride = (int)w * 3 };
    return RTV_OK;
}

/* ---- JPEG ---- */

typedef struct jerr_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_ctx;

static void jerr_exit(j_common_ptr cinfo)
{
    jerr_ctx *e = (jerr_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Level -1 is a warning about corrupt data (premature end, bad Huffman code, ...): stop. */
static void jerr_emit(j_common_ptr cinfo, int level)
{
    if (level < 0) jerr_exit(cinfo);
}

static void jerr_output(j_common_ptr cinfo) { (void)cinfo; }

static int load_jpeg(rtv_frame *out, const char *path, const uint8_t *p, size_t n)
{
    struct jpeg_decompress_struct ci;
    jerr_ctx e;
    /* Written between setjmp and longjmp: volatile so its value survives the jump. */
    uint8_t *volatile rgb = NULL;
    int st = RTV_OK;

    memset(&ci, 0, sizeof(ci));
    ci.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jerr_exit;
    e.pub.emit_message = jerr_emit;
    e.pub.output_message = jerr_output;
    e.msg[0] = 0;
    if (setjmp(e.jb)) {
        free(rgb);
        jpeg_destroy_decompress(&ci);
        return rtv_fail(RTV_E_INPUT, "%s: corrupt or truncated JPEG: %s", path, e.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, (unsigned char *)p, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    if ((st = check_dims(path, "JPEG", (long)ci.image_width, (long)ci.image_height))) {
        jpeg_destroy_decompress(&ci);
        return st;
    }
    if (ci.jpeg_color_space != JCS_GRAYSCALE && ci.jpeg_color_space != JCS_YCbCr &&
        ci.jpeg_color_space != JCS_RGB) {
        int cs = ci.jpeg_color_space;
        jpeg_destroy_decompress(&ci);
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: JPEG colour space %d (CMYK/YCCK?) is not "
                        "supported; expected greyscale, YCbCr or RGB", path, cs);
    }
    ci.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ci);
    if (ci.output_components != 3) {
        int oc = ci.output_components;
        jpeg_destroy_decompress(&ci);
        return rtv_fail(RTV_E_UNSUPPORTED, "%s: JPEG decodes to %d components, expected 3", path, oc);
    }
    size_t stride = (size_t)ci.output_width * 3;
    rgb = malloc(stride * ci.output_height);
    if (!rgb) {
        jpeg_destroy_decompress(&ci);
        return rtv_fail(RTV_E_NOMEM, "%s: no memory for %ux%u RGB", path, ci.output_width,
                        ci.output_height);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = rgb + stride * ci.output_scanline;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    *out = (rtv_frame){ .rgb = rgb, .w = (int)ci.output_width, .h = (int)ci.output_height,
                        .stride = (int)stride };
    jpeg_destroy_decompress(&ci);
    return RTV_OK;
}

int rtv_image_load(rtv_frame *out, const char *path)
{
    if (!out || !path) return rtv_fail(RTV_E_ARG, "rtv_image_load: NULL argument");
    memset(out, 0, sizeof(*out));
    uint8_t *data;
    size_t n;
    int st = read_file(path, &data, &n);
    if (st) return st;
    if (n >= 2 && data[0] == 'P' && data[1] == '6')
        st = load_ppm(out, path, data, n);
    else if (n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        st = load_jpeg(out, path, data, n);
    else if (n >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '7')
        st = rtv_fail(RTV_E_UNSUPPORTED, "%s: Netpbm type P%c; expected P6 (binary RGB PPM)",
                      path, data[1]);
    else if (n == 0)
        st = rtv_fail(RTV_E_INPUT, "%s: empty file; expected a PPM (P6) or JPEG image", path);
    else
        st = rtv_fail(RTV_E_INPUT, "%s: not a PPM (P6) or JPEG image (first bytes %02x %02x)",
                      path, data[0], n > 1 ? data[1] : 0);
    free(data);
    return st;
}

int rtv_image_write_ppm(const rtv_frame *f, const char *path)
{
    if (!f || !f->rgb || f->w < 1 || f->h < 1 || f->stride < f->w * 3)
        return rtv_fail(RTV_E_ARG, "%s: cannot write PPM of a %dx%d frame with stride %d",
                        path, f ? f->w : 0, f ? f->h : 0, f ? f->stride : 0);
    FILE *fp = fopen(path, "wb");
    if (!fp) return rtv_fail(RTV_E_OS, "%s: cannot create: %s", path, strerror(errno));
    int ok = fprintf(fp, "P6\n%d %d\n255\n", f->w, f->h) > 0;
    for (int y = 0; ok && y < f->h; y++)
        ok = fwrite(f->rgb + (size_t)y * (size_t)f->stride, 3, (size_t)f->w, fp) == (size_t)f->w;
    int e = errno;
    if (fclose(fp)) ok = 0;
    if (!ok) return rtv_fail(RTV_E_OS, "%s: write failed: %s", path, strerror(e));
    return RTV_OK;
}

void rtv_image_free(rtv_frame *f)
{
    if (!f) return;
    free((void *)f->rgb);
    memset(f, 0, sizeof(*f));
}
