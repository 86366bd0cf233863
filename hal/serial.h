/* hal/serial.h — one serial port under every servo-bus protocol.
 *
 * A port is opened by path at 8N1 and a baud rate, then read and written with absolute
 * CLOCK_MONOTONIC deadlines (poll on the fd; no allocation, no blocking past the deadline).
 * Two back ends fill the same object:
 *   - "libserialport" for real adapters (/dev/ttyACM*, /dev/ttyUSB*, /dev/serial/by-id/...):
 *     non-standard baud rates, USB metadata, enumeration;
 *   - "termios" (plain POSIX) for pseudo-terminals, which libserialport cannot open (no sysfs
 *     entry for /dev/pts/N, and TIOCMGET fails on a pty). RTV_SERIAL_AUTO picks it for a pty
 *     path, or when libserialport fails with exactly those errors.
 * Both switch on ASYNC_LOW_LATENCY where the driver has it (ENOTTY on a pty: not applicable).
 * A port that goes away (read/write EIO or ENXIO, POLLHUP, end of file) gives RTV_E_DEVICE
 * "port PATH disappeared".
 *
 * Threads: open/close/list are init-time; the _rt calls may run on a real-time thread, one
 * thread per port at a time.
 */
#ifndef RTV_HAL_SERIAL_H
#define RTV_HAL_SERIAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtv_serial rtv_serial;

typedef enum rtv_serial_backend {
    RTV_SERIAL_AUTO,          /* termios for a pty, libserialport otherwise (termios fallback) */
    RTV_SERIAL_LIBSERIALPORT,
    RTV_SERIAL_TERMIOS,
} rtv_serial_backend;

/* Opens path at baud (8N1, no flow control, raw), flushes both directions. *out is NULL on
 * error. Errors: RTV_E_DEVICE (no such port), RTV_E_OS (permission: names the dialout fix),
 * RTV_E_UNSUPPORTED (baud the back end cannot set). */
int rtv_serial_open(rtv_serial **out, const char *path, int baud, rtv_serial_backend backend);
/* Accepts NULL. Restores nothing on the device besides what close(2) does. */
void rtv_serial_close(rtv_serial *s);

/* Writes all n bytes before deadline_ns (CLOCK_MONOTONIC). RTV_OK, RTV_E_TIMEOUT, RTV_E_DEVICE. */
int rtv_serial_write_rt(rtv_serial *s, const uint8_t *buf, size_t n, int64_t deadline_ns);
/* Waits until at least one byte is available or deadline_ns passes, then reads what is there
 * (up to cap). Returns the byte count (0 = deadline passed) or RTV_E_DEVICE / RTV_E_OS. */
long rtv_serial_read_rt(rtv_serial *s, uint8_t *buf, size_t cap, int64_t deadline_ns);
/* Discards unread input (tcflush TCIFLUSH). */
int rtv_serial_flush_input_rt(rtv_serial *s);

const char *rtv_serial_path(const rtv_serial *s);
const char *rtv_serial_backend_name(const rtv_serial *s); /* "libserialport" | "termios" */
int rtv_serial_baud(const rtv_serial *s);
int rtv_serial_fd(const rtv_serial *s);
/* 1 when ASYNC_LOW_LATENCY is on, 0 when the driver lacks it (pty, CDC-ACM on some kernels). */
int rtv_serial_low_latency(const rtv_serial *s);

/* CLOCK_MONOTONIC in ns (the clock every deadline above uses). */
int64_t rtv_serial_now_ns(void);
/* Wire time of n bytes at baud, 8N1 = 10 bit-times per byte, in ns. */
int64_t rtv_serial_wire_ns(size_t n_bytes, int baud);

/* 1 if path names a pseudo-terminal slave (/dev/pts/N, or a link to one), 0 otherwise. */
int rtv_serial_is_pty(const char *path);

/* FTDI latency timer of the adapter behind path (symlinks resolved), in ms, from
 * /sys/bus/usb-serial/devices/<tty>/latency_timer; -1 when the port has none (CDC-ACM, pty).
 * A value above 1 delays every status packet by up to that many ms: fix_text tells the user
 * how to set it to 1 (udev rule). fix_text may be NULL. */
int rtv_serial_latency_timer_ms(const char *path, char *fix_text, size_t fix_cap);

/* One serial port found by libserialport (enumeration for `rtvla check`). */
typedef struct rtv_serial_info {
    char path[256];
    char description[128];
    char usb_serial[64];       /* "" if not USB or unknown */
    int usb_vid, usb_pid;      /* -1 if not USB */
    int latency_timer_ms;      /* -1 if none (see rtv_serial_latency_timer_ms) */
} rtv_serial_info;

/* Fills up to max entries, *n = number found (may exceed max). */
int rtv_serial_list(rtv_serial_info *out, int max, int *n);

#endif
