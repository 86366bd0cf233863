/* hal/bus.h — servo-bus transactions over a serial port, for both protocols.
 *
 * A bus owns one rtv_serial and speaks Feetech STS or Dynamixel 2.0 on it. Every transaction
 * flushes stale input, writes one instruction packet, and (unless none is due) collects the
 * status packets before a deadline computed from the wire time at the bus baud rate plus the
 * per-reply timeout. A missing, corrupt or wrong-length reply is retried immediately, up to
 * `retries` more times (default 2, LeRobot's budget); then the call fails with RTV_E_TIMEOUT
 * (no reply at all) or RTV_E_DEVICE (corrupt bytes, or a servo error on READ/WRITE), naming
 * the servo id and the register. Counters record every retry, corrupt packet and timeout.
 *
 * Servo error bits: on READ/WRITE/PING a non-zero ERROR byte fails the call (decoded to text);
 * on SYNC_READ the data is still returned (as LeRobot does), the bits are kept per servo in
 * rtv_bus_servo_error() and counted.
 *
 * Threads: open/close and the untimed helpers are init-time; *_rt calls use only the buffers
 * allocated at open and may run on the real-time thread. One thread per bus at a time.
 */
#ifndef RTV_HAL_BUS_H
#define RTV_HAL_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "hal/serial.h"

typedef enum rtv_bus_proto { RTV_BUS_FEETECH, RTV_BUS_DYNAMIXEL } rtv_bus_proto;

typedef struct rtv_bus rtv_bus;

typedef struct rtv_bus_counters {
    uint64_t transactions;   /* instruction packets sent (retries included) */
    uint64_t retries;        /* attempts beyond the first */
    uint64_t corrupt;        /* status packets that failed checksum/CRC or had a wrong length */
    uint64_t timeouts;       /* attempts that ended at the deadline with replies missing */
    uint64_t stray;          /* valid packets from an id not asked for (stale or echo) */
    uint64_t servo_errors;   /* status packets with a non-zero ERROR byte */
    uint64_t failures;       /* calls that failed after the whole retry budget */
} rtv_bus_counters;

/* Opens the port (rtv_serial_open, AUTO back end) and allocates every buffer. */
int rtv_bus_open(rtv_bus **out, const char *path, int baud, rtv_bus_proto proto, int retries);
void rtv_bus_close(rtv_bus *b); /* accepts NULL */

/* Per-reply timeout added to the wire time of each attempt (default 10000 us: covers a
 * CDC-ACM adapter's 1 ms USB frames and a servo's return delay with room to spare; an FTDI
 * adapter at its default 16 ms latency timer needs 20000 or, better, latency_timer = 1). */
void rtv_bus_set_timeout_us(rtv_bus *b, int timeout_us);
void rtv_bus_set_retries(rtv_bus *b, int retries);

/* PING id; *model gets the model number (Feetech: PING then READ of Model_Number, as the
 * vendor SDK does; Dynamixel: from the ping reply). model may be NULL. */
int rtv_bus_ping(rtv_bus *b, int id, int *model);
/* READ n bytes at addr of servo id into out. */
int rtv_bus_read(rtv_bus *b, int id, int addr, uint8_t *out, int n);
/* WRITE n bytes at addr; waits for the status reply unless id is broadcast (0xFE). */
int rtv_bus_write(rtv_bus *b, int id, int addr, const uint8_t *data, int n);
/* REG_WRITE (executed at ACTION) and ACTION (broadcast: no reply). */
int rtv_bus_reg_write(rtv_bus *b, int id, int addr, const uint8_t *data, int n);
int rtv_bus_action(rtv_bus *b, int id);
/* Unsigned little-endian helpers around rtv_bus_read/write (size 1, 2 or 4 bytes). */
int rtv_bus_read_u(rtv_bus *b, int id, int addr, int size, uint32_t *value);
int rtv_bus_write_u(rtv_bus *b, int id, int addr, int size, uint32_t value);

/* SYNC_READ len bytes at addr from n servos: out[i*len .. i*len+len) for ids[i]. */
int rtv_bus_sync_read_rt(rtv_bus *b, int addr, int len, const uint8_t *ids, int n, uint8_t *out);
/* SYNC_WRITE len bytes at addr: data[i*len ..] to ids[i]. No reply, no retry (as LeRobot). */
int rtv_bus_sync_write_rt(rtv_bus *b, int addr, int len, const uint8_t *ids, int n,
                          const uint8_t *data);

void rtv_bus_counters_get(const rtv_bus *b, rtv_bus_counters *out);
/* Last ERROR byte seen from servo id (0 = none). */
int rtv_bus_servo_error(const rtv_bus *b, int id);
rtv_bus_proto rtv_bus_protocol(const rtv_bus *b);
rtv_serial *rtv_bus_serial(rtv_bus *b);
/* Register name for messages ("Present_Position"), "?" if unknown. */
const char *rtv_bus_reg_name(const rtv_bus *b, int addr);
/* Decoded ERROR byte. */
const char *rtv_bus_error_text(const rtv_bus *b, int err, char *buf, size_t cap);

#endif
