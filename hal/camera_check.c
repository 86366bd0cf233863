/* hal/camera_check.c — the cameras section of `rtvla check`.
 *
 * Lists the V4L2 devices present, then checks every configured camera: the device node
 * exists and this user may open it (with the video-group fix), and the camera delivers a
 * first frame within FIRST_FRAME_MS at the size and rate asked for. */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hal/camera.h"
#include "hal/v4l2.h"
#include "runtime/status.h"

#define FIRST_FRAME_MS 3000

static void item(FILE *out, int *n_fail, int level, const char *what, const char *fix)
{
    /* level: 0 ok, 1 warn, 2 fail */
    static const char *const tag[] = { "[ok]  ", "[warn]", "[FAIL]" };
    fprintf(out, "  %s %s\n", tag[level], what);
    if (level && fix && *fix) fprintf(out, "         fix: %s\n", fix);
    if (level == 2) (*n_fail)++;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_v4l2_source(const char *s) { return s[0] == '/'; }

static int in_group(gid_t g)
{
    if (getegid() == g) return 1;
    gid_t gs[256];
    int n = getgroups(256, gs);
    for (int i = 0; i < n; i++)
        if (gs[i] == g) return 1;
    return 0;
}

/* Prints the /dev/v4l/by-id names that point at node ("/dev/video0"). */
static void print_by_id(FILE *out, const char *node)
{
    const char *dir = "/dev/v4l/by-id";
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.') continue;
        char link[PATH_MAX], target[PATH_MAX];
        snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
        if (!realpath(link, target)) continue;
        if (!strcmp(target, node)) fprintf(out, "           stable name: %s\n", link);
    }
    closedir(dp);
}

static void list_devices(FILE *out, int *n_fail, int need)
{
    char nodes[64][64];
    int n = rtv_v4l2_nodes("/dev", nodes, 64);
    if (n <= 0) {
        /* Only a warning: the configured V4L2 cameras fail below, each with its own fix. */
        item(out, n_fail, need ? 1 : 0, "no V4L2 devices (/dev/video*) on this machine",
             "plug a USB camera in (`sudo dmesg | grep -i uvc` shows whether the kernel saw it)");
        return;
    }
    fprintf(out, "  V4L2 devices:\n");
    for (int i = 0; i < n; i++) {
        int st = rtv_v4l2_describe(nodes[i], out, "    ");
        if (st == RTV_E_UNSUPPORTED)
            fprintf(out, "    %s: not a capture node (skipped)\n", nodes[i]);
        else if (st)
            fprintf(out, "    %s: %s\n", nodes[i], rtv_last_error());
        else
            print_by_id(out, nodes[i]);
    }
}

/* Node present, a character device, readable and writable by us. */
static int check_node(FILE *out, int *n_fail, int i, const rtv_camera_cfg *cam)
{
    char what[768], fix[512];
    struct stat st;
    if (stat(cam->source, &st)) {
        snprintf(what, sizeof(what), "cameras[%d] %s: %s: %s", i, cam->name, cam->source, strerror(errno));
        item(out, n_fail, 2, what, "plug the camera in, or set cameras[].source to one of the "
             "devices listed above (a /dev/v4l/by-id/ name stays the same across re-plugging)");
        return 0;
    }
    if (!S_ISCHR(st.st_mode)) {
        snprintf(what, sizeof(what), "cameras[%d] %s: %s is not a device node", i, cam->name, cam->source);
        item(out, n_fail, 2, what, "set cameras[].source to a /dev/videoN device, file:PATH or synthetic");
        return 0;
    }
    if (access(cam->source, R_OK | W_OK)) {
        struct group *gr = getgrgid(st.st_gid);
        const char *gname = gr ? gr->gr_name : "video";
        snprintf(what, sizeof(what), "cameras[%d] %s: no read/write permission on %s (owned by "
                 "group %s; you are %sin it)", i, cam->name, cam->source, gname,
                 in_group(st.st_gid) ? "" : "not ");
        snprintf(fix, sizeof(fix), "sudo usermod -aG %s $USER, then log out and in again "
                 "(or run `newgrp %s` in this shell)", gname, gname);
        item(out, n_fail, 2, what, fix);
        return 0;
    }
    return 1;
}

static void check_frame(FILE *out, int *n_fail, int i, const rtv_camera_cfg *cam)
{
    char what[1024];
    rtv_camera *c;
    if (rtv_camera_open(&c, cam)) {
        snprintf(what, sizeof(what), "cameras[%d]: %s", i, rtv_last_error());
        item(out, n_fail, 2, what, is_v4l2_source(cam->source)
             ? "check the formats listed above; unplug and replug the camera; close other "
               "programs using it"
             : "point cameras[].source at a readable PPM (P6) or JPEG file, or use synthetic");
        return;
    }
    int64_t t0 = mono_ms(), waited = 0;
    rtv_frame f;
    int st = rtv_camera_start(c);
    while (st == RTV_OK && (st = rtv_camera_latest_rt(c, &f)) != RTV_OK) {
        waited = mono_ms() - t0;
        if (waited > FIRST_FRAME_MS) break;
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
        st = RTV_OK;
    }
    int got = st == RTV_OK;
    waited = mono_ms() - t0;
    rtv_camera_stop(c);
    rtv_camera_stats s;
    rtv_camera_get_stats(c, &s);
    if (got) {
        snprintf(what, sizeof(what), "cameras[%d] %s: %s: first frame after %lld ms, %dx%d RGB24 "
                 "at %g fps%s", i, cam->name, cam->source, (long long)waited, s.w, s.h, s.fps,
                 is_v4l2_source(cam->source)
                     ? (s.kernel_timestamps ? ", kernel timestamps (CLOCK_MONOTONIC)"
                                            : ", host timestamps (driver gives no monotonic stamp)")
                     : "");
        item(out, n_fail, 0, what, NULL);
        if (is_v4l2_source(cam->source) && (s.w != cam->width || s.h != cam->height)) {
            snprintf(what, sizeof(what), "cameras[%d] %s: the driver set %dx%d, the config asks "
                     "for %dx%d", i, cam->name, s.w, s.h, cam->width, cam->height);
            item(out, n_fail, 1, what, "set cameras[].width/height to a size listed above "
                 "(frames are resized for the model either way)");
        }
        if (is_v4l2_source(cam->source) && s.fps > 0 && (s.fps < cam->fps - 0.5 || s.fps > cam->fps + 0.5)) {
            snprintf(what, sizeof(what), "cameras[%d] %s: the driver runs at %g fps, the config "
                     "asks for %d", i, cam->name, s.fps, cam->fps);
            item(out, n_fail, 1, what, "set cameras[].fps to a rate listed above for this size");
        }
    } else {
        snprintf(what, sizeof(what), "cameras[%d] %s: %s: no frame within %d ms (%s)", i,
                 cam->name, cam->source, FIRST_FRAME_MS,
                 s.last_error[0] ? s.last_error : rtv_last_error());
        item(out, n_fail, 2, what, "unplug and replug the camera; try a lower width/height/fps "
             "(USB 2 bandwidth); check `dmesg` for uvcvideo errors");
    }
    rtv_camera_free(c);
}

int rtv_camera_check(const rtv_config *cfg, FILE *out)
{
    int n_fail = 0, need = 0;
    for (int i = 0; i < cfg->n_cameras; i++) need |= is_v4l2_source(cfg->cameras[i].source);
    list_devices(out, &n_fail, need);
    if (cfg->n_cameras == 0) item(out, &n_fail, 0, "no cameras configured", NULL);
    for (int i = 0; i < cfg->n_cameras; i++) {
        const rtv_camera_cfg *cam = &cfg->cameras[i];
        if (is_v4l2_source(cam->source) && !check_node(out, &n_fail, i, cam)) continue;
        check_frame(out, &n_fail, i, cam);
    }
    return n_fail ? RTV_E_DEVICE : RTV_OK;
}
