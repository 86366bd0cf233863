/* vision/image.h — the image value every camera source produces and the model consumes.
 *
 * rtv_frame is a plain value: it points at RGB24 pixels owned by whoever produced it (a camera
 * slot, a decoded file). rtv_image_load() decodes PPM (P6) and JPEG files into an owned buffer
 * freed with rtv_image_free(); errors name the file and what is wrong with it.
 */
#ifndef RTV_IMAGE_H
#define RTV_IMAGE_H

#include <stdint.h>

typedef struct rtv_frame {
    const uint8_t *rgb;   /* RGB24, row stride `stride` bytes */
    int w, h, stride;
    int64_t t_capture_ns; /* CLOCK_MONOTONIC time the frame was captured */
    uint64_t seq;         /* frame counter of its source */
} rtv_frame;

/* Loads a PPM (P6, maxval 255) or JPEG file; the frame owns its pixels. */
int rtv_image_load(rtv_frame *out, const char *path);
/* Writes a PPM (P6) file. */
int rtv_image_write_ppm(const rtv_frame *f, const char *path);
void rtv_image_free(rtv_frame *f);

#endif
