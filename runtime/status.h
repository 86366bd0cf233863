/* runtime/status.h — status codes and the per-thread error message.
 *
 * Every fallible rtvla function returns int: RTV_OK (0) or one of the negative codes below,
 * whose meaning is fixed. The function that detects the failure formats one message with
 * rtv_fail() (file, field or device named; expected vs got) into a fixed per-thread buffer and
 * returns the code; callers either pass the code up unchanged or add context with
 * rtv_fail_prefix(). Nothing here allocates, so rtv_fail is safe on a real-time thread.
 * Programmer bugs are asserts, never status codes.
 */
#ifndef RTV_STATUS_H
#define RTV_STATUS_H

enum rtv_status {
    RTV_OK = 0,
    RTV_E_ARG = -1,         /* bad argument or CLI/config value */
    RTV_E_INPUT = -2,       /* bad input file or bytes (checkpoint, tokenizer, image, packet) */
    RTV_E_OS = -3,          /* an OS call failed (errno in the message) */
    RTV_E_NOMEM = -4,       /* out of memory (host or device) */
    RTV_E_UNSUPPORTED = -5, /* valid but not supported here (feature, dtype, driver) */
    RTV_E_DEVICE = -6,      /* hardware misbehaved: servo, camera, GPU */
    RTV_E_TIMEOUT = -7,     /* a device did not answer in time */
};

#define RTV_ERR_MAX 1024

/* Formats the message (printf-style) into this thread's buffer and returns code. */
int rtv_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "<prefix>: " to this thread's current message and returns code. */
int rtv_fail_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* This thread's last message ("" if none). Valid until the next rtv_fail on this thread. */
const char *rtv_last_error(void);
void rtv_clear_error(void);
/* Short name of a code: "bad argument", "bad input", ... */
const char *rtv_status_name(int code);

#endif
