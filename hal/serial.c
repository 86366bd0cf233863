/* hal/serial.c — back-end choice, deadline I/O and adapter checks shared by both back ends. */
#include "hal/serial_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/serial.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "runtime/status.h"

int64_t rtv_serial_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rtv_serial_wire_ns(size_t n_bytes, int baud)
{
    if (baud <= 0) return 0;
    return (int64_t)n_bytes * 10 * 1000000000 / baud;
}

int rtv_serial_is_pty(const char *path)
{
    struct stat st;
    if (stat(path, &st) || !S_ISCHR(st.st_mode)) return 0;
    /* Unix98 pty slaves: majors 136..143 (Documentation/admin-guide/devices.txt). */
    return major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143;
}

int rtv_serial_set_low_latency(int fd)
{
    struct serial_struct ss;
    if (ioctl(fd, TIOCGSERIAL, &ss)) return 0; /* ENOTTY on a pty, EINVAL on some drivers */
    if (ss.flags & ASYNC_LOW_LATENCY) return 1;
    ss.flags |= ASYNC_LOW_LATENCY;
    if (ioctl(fd, TIOCSSERIAL, &ss)) return 0;
    return 1;
}

int rtv_serial_open_error(const char *path, int err)
{
    if (err == ENOENT || err == ENODEV || err == ENXIO)
        return rtv_fail(RTV_E_DEVICE, "port %s: no such device (is the adapter plugged in and "
                        "powered? `ls /dev/ttyACM* /dev/ttyUSB* /dev/serial/by-id/`)", path);
    if (err == EACCES || err == EPERM) {
        struct group *g = getgrnam("dialout");
        return rtv_fail(RTV_E_OS, "port %s: permission denied (fix: `sudo usermod -aG %s $USER`, "
                        "then log out and in again)", path, g ? g->gr_name : "dialout");
    }
    if (err == EBUSY)
        return rtv_fail(RTV_E_DEVICE, "port %s: busy (another program has it open: `fuser %s`)",
                        path, path);
    return rtv_fail(RTV_E_OS, "port %s: open failed: %s", path, strerror(err));
}

int rtv_serial_open(rtv_serial **out, const char *path, int baud, rtv_serial_backend backend)
{
    *out = NULL;
    if (!path || !*path) return rtv_fail(RTV_E_ARG, "serial: empty port path");
    if (baud <= 0) return rtv_fail(RTV_E_ARG, "port %s: baud %d, expected > 0", path, baud);
    if (strlen(path) >= sizeof(((rtv_serial *)0)->path))
        return rtv_fail(RTV_E_ARG, "port %s: path longer than %zu bytes", path,
                        sizeof(((rtv_serial *)0)->path) - 1);
    rtv_serial *s = calloc(1, sizeof(*s));
    if (!s) return rtv_fail(RTV_E_NOMEM, "port %s: out of memory", path);
    s->fd = -1;
    s->baud = baud;
    snprintf(s->path, sizeof(s->path), "%s", path);
    int st;
    if (backend == RTV_SERIAL_TERMIOS || (backend == RTV_SERIAL_AUTO && rtv_serial_is_pty(path))) {
        st = rtv_serial_termios_open(s, path, baud);
    } else {
        int pty_like = 0;
        st = rtv_serial_sp_open(s, path, baud, &pty_like);
        if (st && pty_like && backend == RTV_SERIAL_AUTO) st = rtv_serial_termios_open(s, path, baud);
    }
    if (st) {
        free(s);
        return st;
    }
    s->low_latency = rtv_serial_set_low_latency(s->fd);
    tcflush(s->fd, TCIOFLUSH);
    *out = s;
    return RTV_OK;
}

void rtv_serial_close(rtv_serial *s)
{
    if (!s) return;
    if (s->backend == RTV_SERIAL_LIBSERIALPORT) {
        rtv_serial_sp_close(s);
    } else if (s->fd >= 0) {
        ioctl(s->fd, TIOCNXCL); /* the tty may outlive us (the simulator keeps it open) */
        close(s->fd);
    }
    free(s);
}

static int gone(const rtv_serial *s, const char *why)
{
    return rtv_fail(RTV_E_DEVICE, "port %s disappeared (%s): adapter unplugged or powered off?",
                    s->path, why);
}

/* poll until fd is ready for events or deadline; 1 ready, 0 deadline, <0 status. *hup is set
 * when the device hung up (data may still be queued: the caller reads it first). */
static int wait_fd(rtv_serial *s, short events, int64_t deadline_ns, int *hup)
{
    for (;;) {
        int64_t left = deadline_ns - rtv_serial_now_ns();
        if (left < 0) left = 0;
        struct timespec ts = { (time_t)(left / 1000000000), (long)(left % 1000000000) };
        struct pollfd p = { .fd = s->fd, .events = events };
        int r = ppoll(&p, 1, &ts, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            return rtv_fail(RTV_E_OS, "port %s: poll: %s", s->path, strerror(errno));
        }
        if (r == 0) return 0;
        if (p.revents & POLLNVAL) return gone(s, "fd no longer valid");
        if (p.revents & (POLLHUP | POLLERR)) {
            if (!(p.revents & events)) return gone(s, "hang-up");
            *hup = 1;
        }
        return 1;
    }
}

int rtv_serial_write_rt(rtv_serial *s, const uint8_t *buf, size_t n, int64_t deadline_ns)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(s->fd, buf + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EIO || errno == ENXIO || errno == ENODEV)) return gone(s, strerror(errno));
        if (w < 0 && errno != EAGAIN)
            return rtv_fail(RTV_E_OS, "port %s: write: %s", s->path, strerror(errno));
        int hup = 0;
        int r = wait_fd(s, POLLOUT, deadline_ns, &hup);
        if (r < 0) return r;
        if (r == 0)
            return rtv_fail(RTV_E_TIMEOUT, "port %s: write of %zu bytes not accepted before the "
                            "deadline (%zu sent)", s->path, n, done);
    }
    return RTV_OK;
}

long rtv_serial_read_rt(rtv_serial *s, uint8_t *buf, size_t cap, int64_t deadline_ns)
{
    int hup = 0;
    for (;;) {
        ssize_t r = read(s->fd, buf, cap);
        if (r > 0) return (long)r;
        /* A raw tty with VMIN = VTIME = 0 returns 0 when empty (not EAGAIN): only a hang-up
         * reported by poll makes 0 mean the end. */
        if (r == 0 && hup) return gone(s, "hang-up");
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno == EIO || errno == ENXIO || errno == ENODEV) return gone(s, strerror(errno));
            if (errno != EAGAIN) return rtv_fail(RTV_E_OS, "port %s: read: %s", s->path, strerror(errno));
        }
        int w = wait_fd(s, POLLIN, deadline_ns, &hup);
        if (w <= 0) return w;
    }
}

int rtv_serial_flush_input_rt(rtv_serial *s)
{
    if (tcflush(s->fd, TCIFLUSH) == 0) return RTV_OK;
    if (errno == EIO || errno == ENXIO || errno == ENODEV) return gone(s, strerror(errno));
    return rtv_fail(RTV_E_OS, "port %s: tcflush: %s", s->path, strerror(errno));
}

const char *rtv_serial_path(const rtv_serial *s) { return s->path; }
const char *rtv_serial_backend_name(const rtv_serial *s)
{
    return s->backend == RTV_SERIAL_LIBSERIALPORT ? "libserialport" : "termios";
}
int rtv_serial_baud(const rtv_serial *s) { return s->baud; }
int rtv_serial_fd(const rtv_serial *s) { return s->fd; }
int rtv_serial_low_latency(const rtv_serial *s) { return s->low_latency; }

int rtv_serial_latency_timer_ms(const char *path, char *fix_text, size_t fix_cap)
{
    char real[PATH_MAX], sys[PATH_MAX + 64];
    if (fix_text && fix_cap) fix_text[0] = 0;
    if (!realpath(path, real)) return -1;
    const char *tty = strrchr(real, '/');
    tty = tty ? tty + 1 : real;
    snprintf(sys, sizeof(sys), "/sys/bus/usb-serial/devices/%s/latency_timer", tty);
    FILE *f = fopen(sys, "r");
    if (!f) return -1;
    int ms = -1;
    if (fscanf(f, "%d", &ms) != 1) ms = -1;
    fclose(f);
    if (fix_text && fix_cap && ms > 1)
        snprintf(fix_text, fix_cap,
                 "echo 1 | sudo tee %s (until replug); permanently: a udev rule "
                 "ACTION==\"add\", SUBSYSTEM==\"usb-serial\", DRIVER==\"ftdi_sio\", "
                 "ATTR{latency_timer}=\"1\" in /etc/udev/rules.d/99-rtvla-ftdi.rules", sys);
    return ms;
}
