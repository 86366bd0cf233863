/* hal/camera_synth.c — the synthetic camera's picture: a pure function of the frame index.
 *
 * A dim gradient table top, a red square sliding left and right, a green disc going round,
 * a blue bar sweeping across, and the frame index as a 32-cell black/white code along the
 * top edge (so a saved frame says which one it was). Integer arithmetic only, so every
 * machine draws the same bytes. */
#include <stdint.h>
#include <string.h>

#include "hal/camera.h"

/* Triangle wave in [0, span], period 2 * span frames. */
static int bounce(uint64_t t, int span)
{
    if (span <= 0) return 0;
    int p = (int)(t % (uint64_t)(2 * span));
    return p <= span ? p : 2 * span - p;
}

/* 64-entry sine table scaled by 1024 (one quarter is enough, but the whole turn is clearer). */
static const int16_t sin1024[64] = {
    0, 100, 200, 297, 392, 483, 569, 650, 724, 792, 851, 903, 946, 980, 1004, 1019,
    1024, 1019, 1004, 980, 946, 903, 851, 792, 724, 650, 569, 483, 392, 297, 200, 100,
    0, -100, -200, -297, -392, -483, -569, -650, -724, -792, -851, -903, -946, -980, -1004, -1019,
    -1024, -1019, -1004, -980, -946, -903, -851, -792, -724, -650, -569, -483, -392, -297, -200, -100,
};

void rtv_camera_synth_render(uint8_t *rgb, int w, int h, int stride, uint64_t index)
{
    int side = h / 5 > 2 ? h / 5 : 2;                   /* red square */
    int sq_x = bounce(index * 4, w - side), sq_y = h / 2 - side / 2;
    int r = h / 8 > 2 ? h / 8 : 2;                      /* green disc, one turn per 64 frames */
    int ang = (int)(index % 64);
    int cx = w / 2 + (w / 4) * sin1024[(ang + 16) % 64] / 1024;
    int cy = h / 2 + (h / 4) * sin1024[ang] / 1024;
    int bar_w = w / 16 > 1 ? w / 16 : 1;                /* blue bar */
    int bar_x = (int)((index * 3) % (uint64_t)w);
    int cell = w / 64 > 1 ? w / 64 : 1, code_h = h / 60 > 1 ? h / 60 : 1;

    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * (size_t)stride;
        for (int x = 0; x < w; x++) {
            uint8_t *p = row + 3 * x;
            p[0] = (uint8_t)(40 + 60 * x / w);
            p[1] = (uint8_t)(40 + 60 * y / h);
            p[2] = 60;
            int dx = x - cx, dy = y - cy;
            if (x >= bar_x && x < bar_x + bar_w) { p[0] = 30; p[1] = 60; p[2] = 220; }
            if (dx * dx + dy * dy <= r * r) { p[0] = 40; p[1] = 200; p[2] = 60; }
            if (x >= sq_x && x < sq_x + side && y >= sq_y && y < sq_y + side) {
                p[0] = 220; p[1] = 40; p[2] = 40;
            }
            if (y < code_h && x < 32 * cell) {
                uint8_t v = ((index >> (31 - x / cell)) & 1) ? 255 : 0;
                p[0] = p[1] = p[2] = v;
            }
        }
    }
}
