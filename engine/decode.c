/* decode.c: J1939 and UDS fields derived from a raw CAN frame, and the CCVS1 speed.
 *
 * Everything here is a pure function of the frame: no allocation, no state, no logging, so
 * it is safe on the hot path and from any thread. A field is only derived from bytes that
 * are present in the frame (and, for ISO-TP, inside the length the PCI announces); a
 * truncated message yields fewer VSOC_HAS_* bits, never bytes from a previous frame. */
#include "decode.h"

#include <string.h>

#define DECODE_BITS                                                                        \
    (VSOC_HAS_J1939 | VSOC_HAS_UDS | VSOC_HAS_UDS_NRC | VSOC_HAS_UDS_SUB | VSOC_HAS_UDS_DID)

#define PGN_CCVS1 65265u /* Cruise Control/Vehicle Speed 1 (0xFEF1) */

int vsoc_decode_is_diag_id(uint32_t id, int ext)
{
    if (!ext)
        return id == 0x7DF || (id >= 0x7E0 && id <= 0x7EF);
    /* ISO 15765-4 normal fixed addressing: PGN 0xDA00 (physical) and 0xDB00 (functional)
     * at priority 6, i.e. 0x18DA<ta><sa> and 0x18DB<ta><sa>. */
    uint32_t hi = id & 0x1FFF0000u;
    return hi == 0x18DA0000u || hi == 0x18DB0000u;
}

static void decode_j1939(vsoc_event_t *ev)
{
    uint32_t id = ev->can.id;
    uint32_t edp = (id >> 25) & 1u, dp = (id >> 24) & 1u;
    uint32_t pf = (id >> 16) & 0xFFu, ps = (id >> 8) & 0xFFu;

    ev->j1939.priority = (uint8_t)((id >> 26) & 7u);
    ev->j1939.sa = (uint8_t)(id & 0xFFu);
    if (pf < 240) {
        /* PDU1: PS is the destination address and not part of the PGN. */
        ev->j1939.pgn = (edp << 17) | (dp << 16) | (pf << 8);
        ev->j1939.da = (uint8_t)ps;
    } else {
        /* PDU2: PS is the group extension; the message is broadcast. */
        ev->j1939.pgn = (edp << 17) | (dp << 16) | (pf << 8) | ps;
        ev->j1939.da = 0xFF;
    }
    ev->derived |= VSOC_HAS_J1939;
}

/* Services whose second byte is a sub-function (ISO 14229-1), as requests and as positive
 * responses (request + 0x40). Indexed by the request SID. */
static int has_subfunction(uint8_t req)
{
    switch (req) {
    case 0x10: case 0x11: case 0x19: case 0x27: case 0x28: case 0x29: case 0x31: case 0x3E:
    case 0x85: case 0x86: case 0x87:
        return 1;
    }
    return 0;
}

/* Returns the ISO-TP payload of a single frame or of a first frame and its usable length
 * (the announced length clipped to the bytes present), or NULL when the frame is neither. */
static const uint8_t *isotp_payload(const vsoc_can_frame_t *f, size_t *plen)
{
    const uint8_t *d = f->data;
    size_t len = f->len, want, off;

    if (len < 1)
        return NULL;
    switch (d[0] >> 4) {
    case 0: /* single frame */
        want = d[0] & 0x0Fu;
        off = 1;
        if (want == 0) {
            /* CAN FD escape: SF_DL 0 in the PCI, the real length in the next byte. Classic
             * CAN has no such form, so there SF_DL 0 is simply invalid. */
            if (!f->fd || len < 2)
                return NULL;
            want = d[1];
            off = 2;
        } else if (want > 7) {
            return NULL;
        }
        break;
    case 1: /* first frame: 12-bit FF_DL; the SID is the first data byte after it */
        if (len < 2)
            return NULL;
        want = ((size_t)(d[0] & 0x0Fu) << 8) | d[1];
        off = 2;
        if (want == 0) {
            /* ISO 15765-2:2016 escape for messages over 4095 bytes: a 32-bit FF_DL
             * follows, then the data. */
            if (len < 6)
                return NULL;
            want = ((size_t)d[2] << 24) | ((size_t)d[3] << 16) | ((size_t)d[4] << 8) | d[5];
            off = 6;
        }
        break;
    default: /* consecutive and flow-control frames carry no service byte */
        return NULL;
    }
    if (want == 0 || off >= len)
        return NULL;
    *plen = want < len - off ? want : len - off;
    return d + off;
}

static void decode_uds(vsoc_event_t *ev)
{
    size_t n;
    const uint8_t *p = isotp_payload(&ev->can, &n);
    if (!p)
        return;

    uint8_t sid = p[0], req;
    ev->uds.sid = sid;
    ev->derived |= VSOC_HAS_UDS;
    if (sid == 0x7F) {
        /* Negative response: 7F <rejected SID> <NRC>. No sub-function: the byte after the
         * rejected SID is the NRC. A truncated one leaves req_sid 0, which no service has. */
        if (n >= 2)
            ev->uds.req_sid = p[1];
        if (n >= 3) {
            ev->uds.nrc = p[2];
            ev->derived |= VSOC_HAS_UDS_NRC;
        }
        return;
    }
    /* Positive responses set bit 6 of the request SID: 0x50..0x7E answer 0x10..0x3E (and
     * 0x41..0x4A the OBD modes), 0xC3..0xC8 answer 0x83..0x88. */
    req = (sid & 0x40u) ? (uint8_t)(sid - 0x40u) : sid;
    ev->uds.req_sid = req;
    if (n >= 2 && has_subfunction(req)) {
        /* Bit 7 is suppressPosRspMsgIndicationBit, not part of the sub-function. */
        ev->uds.sub = p[1] & 0x7Fu;
        ev->derived |= VSOC_HAS_UDS_SUB;
    }
    if (n >= 3 && (sid == 0x22 || sid == 0x2E || sid == 0x62 || sid == 0x6E)) {
        /* For a ReadDataByIdentifier with several DIDs this is the first one. */
        ev->uds.did = (uint16_t)((p[1] << 8) | p[2]);
        ev->derived |= VSOC_HAS_UDS_DID;
    }
}

void vsoc_decode(vsoc_event_t *ev)
{
    if (ev->kind != VSOC_EVENT_CAN)
        return;
    ev->derived &= ~DECODE_BITS;
    /* Zero the values too, so that an event reused across frames never shows stale ones
     * even to a reader that forgets to test the bit. */
    memset(&ev->j1939, 0, sizeof ev->j1939);
    memset(&ev->uds, 0, sizeof ev->uds);
    if (ev->can.ext)
        decode_j1939(ev);
    /* A remote request has no payload on the wire, whatever len says. */
    if (!ev->can.rtr && vsoc_decode_is_diag_id(ev->can.id, ev->can.ext))
        decode_uds(ev);
}

int vsoc_decode_speed(const vsoc_event_t *ev, double *kph)
{
    if (ev->kind != VSOC_EVENT_CAN || !(ev->derived & VSOC_HAS_J1939) ||
        ev->j1939.pgn != PGN_CCVS1 || ev->can.rtr || ev->can.len < 3)
        return 0;
    unsigned raw = (unsigned)ev->can.data[1] | ((unsigned)ev->can.data[2] << 8);
    /* SAE J1939-71: 0xFB00..0xFFFF are error / not-available indicators. */
    if (raw >= 0xFB00u)
        return 0;
    *kph = raw / 256.0;
    return 1;
}
