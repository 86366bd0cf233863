/* hal/bus.c — transactions, deadlines and retries above the two packet codecs. */
#include "hal/bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal/dynamixel.h"
#include "hal/feetech.h"
#include "runtime/status.h"

#define RX_CAP 4096
#define MAX_IDS 253

struct rtv_bus {
    rtv_serial *port;
    rtv_bus_proto proto;
    int retries;
    int64_t timeout_ns;                   /* added to the wire time of each attempt */
    rtv_bus_counters c;                   /* w: bus thread (relaxed atomics) r: any */
    uint8_t serr[256];                    /* last ERROR byte per id */
    uint8_t params[2 * RTV_DXL_MAX_PACKET];
    uint8_t tx[3 * RTV_DXL_MAX_PACKET];   /* stuffing may grow a packet by a third */
    uint8_t rx[RX_CAP];
    uint8_t scratch[RTV_DXL_MAX_PACKET];  /* unstuffed Dynamixel data */
    size_t rx_n;
    uint8_t got[MAX_IDS];                 /* per expected reply: 0 missing, 1 ok */
};

static void inc(uint64_t *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }

int rtv_bus_open(rtv_bus **out, const char *path, int baud, rtv_bus_proto proto, int retries)
{
    *out = NULL;
    if (retries < 0 || retries > 100)
        return rtv_fail(RTV_E_ARG, "bus %s: retries %d, expected 0..100", path, retries);
    rtv_bus *b = calloc(1, sizeof(*b));
    if (!b) return rtv_fail(RTV_E_NOMEM, "bus %s: out of memory", path);
    int st = rtv_serial_open(&b->port, path, baud, RTV_SERIAL_AUTO);
    if (st) {
        free(b);
        return st;
    }
    b->proto = proto;
    b->retries = retries;
    b->timeout_ns = 10 * 1000000;
    *out = b;
    return RTV_OK;
}

void rtv_bus_close(rtv_bus *b)
{
    if (!b) return;
    rtv_serial_close(b->port);
    free(b);
}

void rtv_bus_set_timeout_us(rtv_bus *b, int timeout_us) { b->timeout_ns = (int64_t)timeout_us * 1000; }
void rtv_bus_set_retries(rtv_bus *b, int retries) { b->retries = retries < 0 ? 0 : retries; }
rtv_bus_proto rtv_bus_protocol(const rtv_bus *b) { return b->proto; }
rtv_serial *rtv_bus_serial(rtv_bus *b) { return b->port; }
int rtv_bus_servo_error(const rtv_bus *b, int id) { return id >= 0 && id < 256 ? b->serr[id] : 0; }

void rtv_bus_counters_get(const rtv_bus *b, rtv_bus_counters *o)
{
    const uint64_t *src = (const uint64_t *)&b->c;
    uint64_t *dst = (uint64_t *)o;
    for (size_t i = 0; i < sizeof(*o) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

const char *rtv_bus_reg_name(const rtv_bus *b, int addr)
{
    return b->proto == RTV_BUS_FEETECH ? rtv_feetech_reg_name(addr) : rtv_dxl_reg_name(addr);
}

const char *rtv_bus_error_text(const rtv_bus *b, int err, char *buf, size_t cap)
{
    return b->proto == RTV_BUS_FEETECH ? rtv_feetech_error_text(err, buf, cap)
                                       : rtv_dxl_error_text(err, buf, cap);
}

static size_t encode(rtv_bus *b, int id, int instr, size_t np)
{
    return b->proto == RTV_BUS_FEETECH
               ? rtv_feetech_encode(b->tx, sizeof(b->tx), id, instr, b->params, np)
               : rtv_dxl_encode(b->tx, sizeof(b->tx), id, instr, b->params, np);
}

static int parse(rtv_bus *b, rtv_packet *pkt, size_t *used)
{
    return b->proto == RTV_BUS_FEETECH
               ? rtv_feetech_parse(b->rx, b->rx_n, 1, pkt, used)
               : rtv_dxl_parse(b->rx, b->rx_n, 1, pkt, b->scratch, sizeof(b->scratch), used);
}

static void drop(rtv_bus *b, size_t n)
{
    if (n >= b->rx_n) {
        b->rx_n = 0;
        return;
    }
    memmove(b->rx, b->rx + n, b->rx_n - n);
    b->rx_n -= n;
}

/* What one transaction expects back: n replies from ids, each with len data bytes, copied to
 * out + i*len. what/addr name it in errors. fail_on_err: a non-zero ERROR byte fails the call. */
typedef struct expect {
    const uint8_t *ids;
    int n, len;
    uint8_t *out;
    const char *what;
    int addr, fail_on_err;
} expect;

static void describe_missing(const rtv_bus *b, const expect *e, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < e->n && k + 8 < cap; i++)
        if (!b->got[i]) k += (size_t)snprintf(buf + k, cap - k, "%s%d", k ? ", " : "", e->ids[i]);
}

static const char *where(const rtv_bus *b, const expect *e, char *buf, size_t cap)
{
    if (e->addr < 0) snprintf(buf, cap, "%s", e->what);
    else snprintf(buf, cap, "%s, %s @%d", e->what, rtv_bus_reg_name(b, e->addr), e->addr);
    return buf;
}

/* Files one parsed status packet against what e expects; returns 1 if it was an awaited reply. */
static int take(rtv_bus *b, const expect *e, const rtv_packet *pkt, int *corrupt_last)
{
    int idx = -1;
    for (int i = 0; i < e->n; i++)
        if (e->ids[i] == pkt->id && !b->got[i]) { idx = i; break; }
    if (idx < 0) {
        inc(&b->c.stray);
        return 0;
    }
    if ((int)pkt->n != e->len && !(pkt->err && e->fail_on_err)) {
        inc(&b->c.corrupt);
        *corrupt_last = 1;
        return 0;
    }
    if (pkt->err) inc(&b->c.servo_errors);
    b->serr[pkt->id] = (uint8_t)pkt->err;
    if (e->len) {
        uint8_t *dst = e->out + (size_t)idx * (size_t)e->len;
        if ((int)pkt->n == e->len) memcpy(dst, pkt->data, (size_t)e->len);
        else memset(dst, 0, (size_t)e->len); /* an error status without data (DXL access error) */
    }
    b->got[idx] = 1;
    return 1;
}

static int txn(rtv_bus *b, int id, int instr, size_t np, const expect *e)
{
    size_t tx_n = encode(b, id, instr, np);
    if (!tx_n)
        return rtv_fail(RTV_E_ARG, "bus %s: %s packet for id %d too long (%zu parameter bytes)",
                        rtv_serial_path(b->port), e->what, id, np);
    size_t per_reply = (size_t)e->len + (b->proto == RTV_BUS_FEETECH ? 6 : 11);
    int64_t budget = rtv_serial_wire_ns(tx_n + per_reply * (size_t)e->n, rtv_serial_baud(b->port)) +
                     b->timeout_ns + (int64_t)e->n * 100000;
    int corrupt_last = 0, any_bytes = 0, attempts = 0;
    for (int attempt = 0; attempt <= b->retries; attempt++) {
        attempts++;
        if (attempt) inc(&b->c.retries);
        inc(&b->c.transactions);
        int st = rtv_serial_flush_input_rt(b->port);
        if (st) return st;
        b->rx_n = 0;
        memset(b->got, 0, (size_t)e->n);
        int64_t t0 = rtv_serial_now_ns(), deadline = t0 + budget;
        if ((st = rtv_serial_write_rt(b->port, b->tx, tx_n, deadline))) return st;
        if (e->n == 0) return RTV_OK;
        int n_got = 0;
        corrupt_last = 0;
        any_bytes = 0;
        while (n_got < e->n) {
            if (b->rx_n == sizeof(b->rx)) drop(b, sizeof(b->rx) / 2); /* garbage flood */
            long r = rtv_serial_read_rt(b->port, b->rx + b->rx_n, sizeof(b->rx) - b->rx_n, deadline);
            if (r < 0) return (int)r;
            if (r == 0) break;
            b->rx_n += (size_t)r;
            for (;;) {
                rtv_packet pkt;
                size_t used = 0;
                int pr = parse(b, &pkt, &used);
                if (pr == RTV_PARSE_NEED) {
                    drop(b, used);
                    break;
                }
                if (pr == RTV_PARSE_CORRUPT) {
                    drop(b, used);
                    inc(&b->c.corrupt);
                    corrupt_last = 1;
                    continue;
                }
                /* pkt.data may point into rx: use it before dropping the bytes */
                n_got += take(b, e, &pkt, &corrupt_last);
                drop(b, used);
            }
        }
        if (n_got == e->n) {
            if (e->fail_on_err) {
                for (int i = 0; i < e->n; i++) {
                    int err = b->serr[e->ids[i]];
                    if (!err) continue;
                    char text[160], wh[96];
                    inc(&b->c.failures);
                    return rtv_fail(RTV_E_DEVICE, "bus %s: servo %d (%s): status error 0x%02X: %s",
                                    rtv_serial_path(b->port), e->ids[i], where(b, e, wh, sizeof(wh)),
                                    err, rtv_bus_error_text(b, err, text, sizeof(text)));
                }
            }
            return RTV_OK;
        }
        inc(&b->c.timeouts);
        any_bytes = b->rx_n > 0; /* part of a packet was left at the deadline */
    }
    inc(&b->c.failures);
    char missing[256];
    describe_missing(b, e, missing, sizeof(missing));
    int n_missing = 0;
    for (int i = 0; i < e->n; i++) n_missing += !b->got[i];
    double ms = (double)budget / 1e6;
    char wh[96];
    where(b, e, wh, sizeof(wh));
    if (corrupt_last)
        return rtv_fail(RTV_E_DEVICE, "bus %s: servo%s %s (%s): corrupt status packet "
                        "(checksum or length) after %d attempts", rtv_serial_path(b->port),
                        n_missing > 1 ? "s" : "", missing, wh, attempts);
    return rtv_fail(RTV_E_TIMEOUT, "bus %s: servo%s %s (%s): %s after %d attempts of "
                    "%.1f ms (powered? right id and baud %d?)", rtv_serial_path(b->port),
                    n_missing > 1 ? "s" : "", missing, wh,
                    any_bytes ? "incomplete status packet" : "no status packet", attempts, ms,
                    rtv_serial_baud(b->port));
}

static size_t put_addr_len(rtv_bus *b, int addr, int len)
{
    if (b->proto == RTV_BUS_FEETECH) {
        b->params[0] = (uint8_t)addr;
        b->params[1] = (uint8_t)len;
        return 2;
    }
    b->params[0] = (uint8_t)(addr & 0xFF);
    b->params[1] = (uint8_t)(addr >> 8);
    b->params[2] = (uint8_t)(len & 0xFF);
    b->params[3] = (uint8_t)(len >> 8);
    return 4;
}

static int check_id(const rtv_bus *b, int id, int broadcast_ok)
{
    int max = b->proto == RTV_BUS_FEETECH ? 253 : 252;
    if ((id >= 0 && id <= max) || (broadcast_ok && id == 0xFE)) return RTV_OK;
    return rtv_fail(RTV_E_ARG, "bus %s: servo id %d, expected 0..%d", rtv_serial_path(b->port), id, max);
}

static int check_span(const rtv_bus *b, int addr, int n)
{
    int amax = b->proto == RTV_BUS_FEETECH ? 255 : 65535;
    int nmax = b->proto == RTV_BUS_FEETECH ? 240 : 1000;
    if (addr >= 0 && addr <= amax && n >= 1 && n <= nmax) return RTV_OK;
    return rtv_fail(RTV_E_ARG, "bus %s: register %d, %d bytes: expected address 0..%d and "
                    "1..%d bytes", rtv_serial_path(b->port), addr, n, amax, nmax);
}

int rtv_bus_ping(rtv_bus *b, int id, int *model)
{
    int st = check_id(b, id, 0);
    if (st) return st;
    uint8_t one = (uint8_t)id, data[3] = { 0 };
    if (b->proto == RTV_BUS_DYNAMIXEL) {
        expect e = { &one, 1, 3, data, "ping", -1, 1 };
        if ((st = txn(b, id, RTV_DXL_PING, 0, &e))) return st;
        if (model) *model = data[0] | data[1] << 8;
        return RTV_OK;
    }
    expect e = { &one, 1, 0, data, "ping", -1, 1 };
    if ((st = txn(b, id, RTV_FT_PING, 0, &e))) return st;
    if (!model) return RTV_OK;
    uint32_t m = 0;
    st = rtv_bus_read_u(b, id, RTV_STS_MODEL_NUMBER, 2, &m);
    *model = (int)m;
    return st;
}

int rtv_bus_read(rtv_bus *b, int id, int addr, uint8_t *out, int n)
{
    int st = check_id(b, id, 0);
    if (st || (st = check_span(b, addr, n))) return st;
    uint8_t one = (uint8_t)id;
    size_t np = put_addr_len(b, addr, n);
    expect e = { &one, 1, n, out, "read", addr, 1 };
    return txn(b, id, b->proto == RTV_BUS_FEETECH ? RTV_FT_READ : RTV_DXL_READ, np, &e);
}

static int write_like(rtv_bus *b, int id, int instr_ft, int instr_dxl, int addr,
                      const uint8_t *data, int n, const char *what)
{
    int st = check_id(b, id, 1);
    if (st || (st = check_span(b, addr, n))) return st;
    size_t np;
    if (b->proto == RTV_BUS_FEETECH) {
        b->params[0] = (uint8_t)addr;
        np = 1;
    } else {
        b->params[0] = (uint8_t)(addr & 0xFF);
        b->params[1] = (uint8_t)(addr >> 8);
        np = 2;
    }
    memcpy(b->params + np, data, (size_t)n);
    np += (size_t)n;
    uint8_t one = (uint8_t)id;
    expect e = { &one, id == 0xFE ? 0 : 1, 0, NULL, what, addr, 1 };
    return txn(b, id, b->proto == RTV_BUS_FEETECH ? instr_ft : instr_dxl, np, &e);
}

int rtv_bus_write(rtv_bus *b, int id, int addr, const uint8_t *data, int n)
{
    return write_like(b, id, RTV_FT_WRITE, RTV_DXL_WRITE, addr, data, n, "write");
}

int rtv_bus_reg_write(rtv_bus *b, int id, int addr, const uint8_t *data, int n)
{
    return write_like(b, id, RTV_FT_REG_WRITE, RTV_DXL_REG_WRITE, addr, data, n, "reg_write");
}

int rtv_bus_action(rtv_bus *b, int id)
{
    int st = check_id(b, id, 1);
    if (st) return st;
    uint8_t one = (uint8_t)id;
    expect e = { &one, id == 0xFE ? 0 : 1, 0, NULL, "action", -1, 1 };
    return txn(b, id, b->proto == RTV_BUS_FEETECH ? RTV_FT_ACTION : RTV_DXL_ACTION, 0, &e);
}

int rtv_bus_read_u(rtv_bus *b, int id, int addr, int size, uint32_t *value)
{
    uint8_t d[4] = { 0 };
    if (size != 1 && size != 2 && size != 4)
        return rtv_fail(RTV_E_ARG, "bus: register size %d, expected 1, 2 or 4", size);
    int st = rtv_bus_read(b, id, addr, d, size);
    if (st) return st;
    *value = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    return RTV_OK;
}

int rtv_bus_write_u(rtv_bus *b, int id, int addr, int size, uint32_t value)
{
    uint8_t d[4] = { (uint8_t)value, (uint8_t)(value >> 8), (uint8_t)(value >> 16), (uint8_t)(value >> 24) };
    if (size != 1 && size != 2 && size != 4)
        return rtv_fail(RTV_E_ARG, "bus: register size %d, expected 1, 2 or 4", size);
    return rtv_bus_write(b, id, addr, d, size);
}

int rtv_bus_sync_read_rt(rtv_bus *b, int addr, int len, const uint8_t *ids, int n, uint8_t *out)
{
    int st = check_span(b, addr, len);
    if (st) return st;
    if (n < 1 || n > MAX_IDS) return rtv_fail(RTV_E_ARG, "bus: sync read of %d servos, expected 1..%d", n, MAX_IDS);
    size_t np = put_addr_len(b, addr, len);
    memcpy(b->params + np, ids, (size_t)n);
    np += (size_t)n;
    expect e = { ids, n, len, out, "sync read", addr, 0 };
    return txn(b, 0xFE, b->proto == RTV_BUS_FEETECH ? RTV_FT_SYNC_READ : RTV_DXL_SYNC_READ, np, &e);
}

int rtv_bus_sync_write_rt(rtv_bus *b, int addr, int len, const uint8_t *ids, int n,
                          const uint8_t *data)
{
    int st = check_span(b, addr, len);
    if (st) return st;
    if (n < 1 || n > MAX_IDS || (size_t)n * (size_t)(len + 1) + 4 > sizeof(b->params))
        return rtv_fail(RTV_E_ARG, "bus: sync write of %d servos x %d bytes does not fit a packet", n, len);
    size_t np = put_addr_len(b, addr, len);
    for (int i = 0; i < n; i++) {
        b->params[np++] = ids[i];
        memcpy(b->params + np, data + (size_t)i * (size_t)len, (size_t)len);
        np += (size_t)len;
    }
    expect e = { ids, 0, 0, NULL, "sync write", addr, 0 };
    return txn(b, 0xFE, b->proto == RTV_BUS_FEETECH ? RTV_FT_SYNC_WRITE : RTV_DXL_SYNC_WRITE, np, &e);
}
