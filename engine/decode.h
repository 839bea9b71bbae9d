/* decode.h: derive protocol fields from a raw CAN frame, in place and without allocation.
 *
 * J1939: every 29-bit frame gets j1939.pgn/sa/da/priority (SAE J1939-21 PDU1/PDU2 rules).
 * UDS: ISO-TP single frames (and the first frame of a multi-frame message) on diagnostic
 * IDs (11-bit 0x7DF and 0x7E0-0x7EF; 29-bit 0x18DAxxxx and 0x18DBxxxx) get uds.* fields.
 * Vehicle state: J1939 CCVS1 (PGN 65265) wheel-based speed, bytes 1-2 little-endian / 256. */
#ifndef VSOC_DECODE_H
#define VSOC_DECODE_H

#include "event.h"

/* Fills ev->j1939 / ev->uds and sets the matching VSOC_HAS_* bits in ev->derived for a CAN
 * event; clears those bits first. Does nothing for other kinds. Thread-safe. */
void vsoc_decode(vsoc_event_t *ev);

/* Returns 1 and sets *kph when ev is a J1939 CCVS1 frame with a valid wheel-based speed,
 * else 0. Call after vsoc_decode(). */
int vsoc_decode_speed(const vsoc_event_t *ev, double *kph);

/* Returns 1 when a CAN ID is a UDS diagnostic ID as listed above. */
int vsoc_decode_is_diag_id(uint32_t id, int ext);

#endif
