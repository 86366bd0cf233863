/* hal/packet.h — a decoded servo-bus packet and the parse results both codecs share.
 *
 * The parsers (rtv_feetech_parse, rtv_dxl_parse) are incremental over a receive buffer that
 * grows as bytes arrive: each call looks at buf[0..n), and reports how many leading bytes the
 * caller may drop (*used) together with one of the results below. Garbage before a header is
 * dropped; a corrupt packet drops its header so that a real packet inside it can be found. */
#ifndef RTV_HAL_PACKET_H
#define RTV_HAL_PACKET_H

#include <stddef.h>
#include <stdint.h>

typedef struct rtv_packet {
    int id;              /* servo id, 0xFE broadcast */
    int instr;           /* instruction (host -> servo); Dynamixel status: 0x55; Feetech status: 0 */
    int err;             /* status packets: the ERROR byte; 0 for instructions */
    const uint8_t *data; /* parameters / status data; points into buf (Feetech) or scratch (DXL) */
    size_t n;            /* bytes at data */
} rtv_packet;

enum rtv_parse_result {
    RTV_PARSE_NEED = 0,    /* no complete packet yet; drop *used bytes (garbage), read more */
    RTV_PARSE_OK = 1,      /* *pkt is valid; drop *used bytes (through the packet's end) */
    RTV_PARSE_CORRUPT = 2, /* a framed packet failed its checksum/CRC; drop *used bytes */
};

#endif
