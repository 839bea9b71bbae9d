/* event.h: the one event model every reader produces and every engine stage consumes.
 *
 * An event is a fixed-size value filled in place by a reader, without allocation. All string
 * members are borrowed slices (not NUL-terminated) that stay valid until the producer's
 * next call; the engine never keeps them beyond processing one event. */
#ifndef VSOC_EVENT_H
#define VSOC_EVENT_H

#include "vsoc.h"

#include <assert.h>
#include <stdint.h>

#define VSOC_CAN_MAX_LEN 64

typedef enum {
    VSOC_EVENT_CAN = 1, /* a raw CAN or CAN FD frame */
    VSOC_EVENT_IDS = 2, /* a security event from in-vehicle intrusion detection (JSON) */
} vsoc_event_kind_t;

/* A CAN frame as captured. len is the number of payload bytes present; dlc is the code as
 * it was on the wire (for classic CAN a DLC of 9..15 still carries 8 bytes). */
typedef struct vsoc_can_frame {
    uint32_t id;     /* 11-bit or 29-bit identifier, without flag bits */
    uint8_t ext;     /* 1 for a 29-bit identifier */
    uint8_t fd;      /* 1 for a CAN FD frame */
    uint8_t rtr;     /* 1 for a remote transmission request */
    uint8_t dlc;     /* data length code, 0..15 */
    uint8_t len;     /* payload bytes in data, 0..64 */
    uint8_t fd_flags;/* CAN FD flags nibble (BRS=1, ESI=2) */
    uint8_t pad[2];
    uint8_t data[VSOC_CAN_MAX_LEN];
} vsoc_can_frame_t;
_Static_assert(sizeof(vsoc_can_frame_t) == 76, "vsoc_can_frame_t layout");

/* J1939 fields derived from a 29-bit identifier (engine/decode.c). */
typedef struct vsoc_j1939 {
    uint32_t pgn;
    uint8_t sa;
    uint8_t da; /* 0xFF for PDU2 (broadcast) PGNs */
    uint8_t priority;
    uint8_t pad;
} vsoc_j1939_t;

/* UDS fields derived from an ISO-TP single frame (or first frame) on a diagnostic ID.
 * Which of them are present is in vsoc_event_t.derived (VSOC_HAS_UDS_*). */
typedef struct vsoc_uds {
    uint8_t sid;     /* the service byte as sent (0x7F for a negative response) */
    uint8_t req_sid; /* the request SID it belongs to (for 0x7F: the rejected request) */
    uint8_t nrc;     /* negative response code, for 0x7F */
    uint8_t sub;     /* sub-function without the suppress-positive-response bit */
    uint16_t did;    /* data identifier for Read/WriteDataByIdentifier */
    uint8_t pad[2];
} vsoc_uds_t;

/* Bits of vsoc_event_t.derived. */
#define VSOC_HAS_J1939 0x0001u
#define VSOC_HAS_UDS 0x0002u     /* uds.sid and uds.req_sid */
#define VSOC_HAS_UDS_NRC 0x0004u /* uds.nrc */
#define VSOC_HAS_UDS_SUB 0x0008u /* uds.sub */
#define VSOC_HAS_UDS_DID 0x0010u /* uds.did */
#define VSOC_HAS_SPEED 0x0020u   /* speed_kph and state_age_us are valid */
#define VSOC_HAS_BASELINE 0x0040u

typedef struct vsoc_event {
    vsoc_event_kind_t kind;
    uint32_t derived;    /* VSOC_HAS_* bits set by the decoders and the engine */
    int64_t ts_us;       /* event time in microseconds (epoch or capture-relative) */
    vsoc_str_t vin;      /* the vehicle: from the event or the reader's --vin */
    vsoc_str_t bus;      /* interface name, e.g. "can0"; empty when unknown */
    vsoc_str_t source;   /* where it came from: the capture's file name, a topic */
    vsoc_str_t line;     /* the raw input text without its newline, for evidence */
    uint64_t lineno;     /* 1-based line in source; 0 when not from a file */
    int32_t label;       /* a capture's ground-truth label (labelled format), else -1 */
    uint32_t pad0;

    vsoc_can_frame_t can;
    vsoc_j1939_t j1939;
    vsoc_uds_t uds;

    /* IDS events: the parsed JSON document (a jansson json_t *, borrowed) and its type. */
    void *doc;
    vsoc_str_t ids_type;

    /* Filled by the engine before matching. */
    double speed_kph;     /* vehicle.speed_kph, with VSOC_HAS_SPEED */
    int64_t state_age_us; /* age of that speed reading */
    double baseline_score;/* baseline.score, with VSOC_HAS_BASELINE */
    uint32_t baseline_reasons;
    int32_t obs_byte;     /* first payload byte out of its learnt range, or -1 */
    /* What the scorer saw against what the baseline expected, for an alert's evidence:
     * the period since the ID's previous frame (ms, < 0 when none) and the learnt p1/p50/
     * p99; the byte obs_byte's value and its learnt range. */
    double obs_period_ms, exp_p1_ms, exp_p50_ms, exp_p99_ms;
    uint8_t obs_value, exp_min, exp_max, pad1;
    uint32_t pad2;
} vsoc_event_t;

/* Resets an event to the empty state (kind 0, label -1). */
void vsoc_event_clear(vsoc_event_t *ev);

#endif
