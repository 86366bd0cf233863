#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_buf[RTV_ERR_MAX];

int rtv_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
    va_end(ap);
    return code;
}

int rtv_fail_prefix(int code, const char *fmt, ...)
{
    char prefix[RTV_ERR_MAX];
    char old[RTV_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof(old));
    snprintf(err_buf, sizeof(err_buf), "%s: %s", prefix, old);
    return code;
}

const char *rtv_last_error(void) { return err_buf; }

void rtv_clear_error(void) { err_buf[0] = 0; }

const char *rtv_status_name(int code)
{
    switch (code) {
    case RTV_OK: return "ok";
    case RTV_E_ARG: return "bad argument";
    case RTV_E_INPUT: return "bad input";
    case RTV_E_OS: return "system error";
    case RTV_E_NOMEM: return "out of memory";
    case RTV_E_UNSUPPORTED: return "unsupported";
    case RTV_E_DEVICE: return "device error";
    case RTV_E_TIMEOUT: return "timeout";
    }
    return "unknown error";
}
