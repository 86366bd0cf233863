/* hal/serial_sp.c — the libserialport back end (real USB adapters) and port enumeration.
 * libserialport opens and configures the port; I/O then goes through its fd (poll + read/write
 * with absolute deadlines, as serial.c does for both back ends). */
#include "hal/serial_impl.h"

#include <libserialport.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runtime/status.h"

static int sp_error(const char *path, const char *what, enum sp_return r, int *pty_like)
{
    char *msg = sp_last_error_message();
    char text[256];
    snprintf(text, sizeof(text), "%s", msg ? msg : "");
    if (msg) sp_free_error_message(msg);
    /* What libserialport says on a pty: no sysfs entry, or the modem-line ioctl. */
    if (pty_like && (r == SP_ERR_ARG || strstr(text, "TIOCMGET") || strstr(text, "not found")))
        *pty_like = 1;
    if (r == SP_ERR_ARG)
        return rtv_fail(RTV_E_DEVICE, "port %s: libserialport %s: no such serial device (is the "
                        "adapter plugged in? `ls /dev/serial/by-id/`)", path, what);
    return rtv_fail(RTV_E_DEVICE, "port %s: libserialport %s failed: %s", path, what,
                    r == SP_ERR_FAIL ? text : r == SP_ERR_MEM ? "out of memory" : "unsupported");
}

int rtv_serial_sp_open(rtv_serial *s, const char *path, int baud, int *pty_like)
{
    struct sp_port *p = NULL;
    enum sp_return r;
    *pty_like = 0;
    if (access(path, F_OK)) return rtv_serial_open_error(path, 2 /* ENOENT */);
    if (access(path, R_OK | W_OK)) return rtv_serial_open_error(path, 13 /* EACCES */);
    if ((r = sp_get_port_by_name(path, &p)) != SP_OK) return sp_error(path, "lookup", r, pty_like);
    if ((r = sp_open(p, SP_MODE_READ_WRITE)) != SP_OK) {
        int st = sp_error(path, "open", r, pty_like);
        sp_free_port(p);
        return st;
    }
    if ((r = sp_set_baudrate(p, baud)) != SP_OK || (r = sp_set_bits(p, 8)) != SP_OK ||
        (r = sp_set_parity(p, SP_PARITY_NONE)) != SP_OK || (r = sp_set_stopbits(p, 1)) != SP_OK ||
        (r = sp_set_flowcontrol(p, SP_FLOWCONTROL_NONE)) != SP_OK) {
        int st = sp_error(path, "configure (8N1, no flow control)", r, NULL);
        sp_close(p);
        sp_free_port(p);
        return st;
    }
    int fd = -1;
    if (sp_get_port_handle(p, &fd) != SP_OK || fd < 0) {
        sp_close(p);
        sp_free_port(p);
        return rtv_fail(RTV_E_DEVICE, "port %s: libserialport gave no file descriptor", path);
    }
    s->fd = fd;
    s->sp_port = p;
    s->backend = RTV_SERIAL_LIBSERIALPORT;
    return RTV_OK;
}

void rtv_serial_sp_close(rtv_serial *s)
{
    struct sp_port *p = s->sp_port;
    if (!p) return;
    sp_close(p);
    sp_free_port(p);
    s->sp_port = NULL;
    s->fd = -1;
}

int rtv_serial_list(rtv_serial_info *out, int max, int *n)
{
    struct sp_port **ports = NULL;
    *n = 0;
    enum sp_return r = sp_list_ports(&ports);
    if (r != SP_OK) return sp_error("(enumeration)", "list", r, NULL);
    for (int i = 0; ports[i]; i++) {
        if (*n < max) {
            rtv_serial_info *o = &out[*n];
            memset(o, 0, sizeof(*o));
            const char *name = sp_get_port_name(ports[i]);
            const char *desc = sp_get_port_description(ports[i]);
            snprintf(o->path, sizeof(o->path), "%s", name ? name : "");
            snprintf(o->description, sizeof(o->description), "%s", desc ? desc : "");
            o->usb_vid = o->usb_pid = -1;
            if (sp_get_port_transport(ports[i]) == SP_TRANSPORT_USB) {
                sp_get_port_usb_vid_pid(ports[i], &o->usb_vid, &o->usb_pid);
                const char *ser = sp_get_port_usb_serial(ports[i]);
                snprintf(o->usb_serial, sizeof(o->usb_serial), "%s", ser ? ser : "");
            }
            o->latency_timer_ms = rtv_serial_latency_timer_ms(o->path, NULL, 0);
        }
        (*n)++;
    }
    sp_free_port_list(ports);
    return RTV_OK;
}
