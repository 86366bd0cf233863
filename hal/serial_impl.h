/* hal/serial_impl.h — what the two serial back ends share (private to hal/serial*.c). */
#ifndef RTV_HAL_SERIAL_IMPL_H
#define RTV_HAL_SERIAL_IMPL_H

#include "hal/serial.h"

struct rtv_serial {
    int fd;                    /* the open tty; both back ends do I/O through it */
    int baud;
    int low_latency;           /* ASYNC_LOW_LATENCY set */
    int backend;               /* RTV_SERIAL_LIBSERIALPORT | RTV_SERIAL_TERMIOS */
    void *sp_port;             /* struct sp_port * (libserialport back end) */
    char path[256];
};

/* Back-end opens: fill s (fd, backend, sp_port) or return a status with the message set.
 * *pty_like is set to 1 by the libserialport back end when it failed with the errors it gives
 * on a pseudo-terminal (so AUTO can fall back to termios). */
int rtv_serial_sp_open(rtv_serial *s, const char *path, int baud, int *pty_like);
void rtv_serial_sp_close(rtv_serial *s);
int rtv_serial_termios_open(rtv_serial *s, const char *path, int baud);

/* Sets ASYNC_LOW_LATENCY on fd; returns 1 if on, 0 if the driver has no such flag. */
int rtv_serial_set_low_latency(int fd);
/* Error for a failed open(2) of path (errno in err): names the fix. */
int rtv_serial_open_error(const char *path, int err);

#endif
