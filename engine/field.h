/* field.h: the fields a rule can name, resolved once at compile time to a small descriptor,
 * and read from an event on the hot path without allocation.
 *
 * Built-in fields are listed in docs/rules.md; any other dotted name is a path into an IDS
 * event's JSON document. */
#ifndef VSOC_FIELD_H
#define VSOC_FIELD_H

#include "event.h"

typedef enum {
    VSOC_FT_INT = 1,
    VSOC_FT_BOOL,
    VSOC_FT_FLOAT,
    VSOC_FT_STR,
    VSOC_FT_BYTES,   /* can.data: compared as upper-case hex text */
    VSOC_FT_REASONS, /* baseline.reasons: a set of names */
    VSOC_FT_JSON,    /* a path into an IDS document: type known only per event */
} vsoc_ftype_t;

typedef enum {
    VSOC_F_VIN = 1,
    VSOC_F_TS,
    VSOC_F_TYPE,
    VSOC_F_SOURCE,
    VSOC_F_CAN_ID,
    VSOC_F_CAN_EXT,
    VSOC_F_CAN_FD,
    VSOC_F_CAN_RTR,
    VSOC_F_CAN_DLC,
    VSOC_F_CAN_LEN,
    VSOC_F_CAN_BUS,
    VSOC_F_CAN_DATA,
    VSOC_F_CAN_BYTES, /* can.data[N] or can.data[N:M] */
    VSOC_F_J1939_PGN,
    VSOC_F_J1939_SA,
    VSOC_F_J1939_DA,
    VSOC_F_J1939_PRIORITY,
    VSOC_F_UDS_SID,
    VSOC_F_UDS_REQ_SID,
    VSOC_F_UDS_NRC,
    VSOC_F_UDS_SUB,
    VSOC_F_UDS_DID,
    VSOC_F_BASELINE_SCORE,
    VSOC_F_BASELINE_REASONS,
    VSOC_F_VEHICLE_SPEED,
    VSOC_F_VEHICLE_STATE_AGE,
    VSOC_F_JSON,
} vsoc_field_id_t;

#define VSOC_FIELD_MAX_PATH 8

/* A resolved field. Owns path and name (vsoc_field_fini frees them). */
typedef struct vsoc_field {
    vsoc_field_id_t id;
    vsoc_ftype_t type;
    uint8_t lo, hi;   /* can.data[lo:hi] byte range, hi exclusive */
    uint8_t npath;
    uint8_t kinds;    /* event kinds that carry it: bit (1 << vsoc_event_kind_t) */
    char *name;       /* as written in the rule */
    char *path[VSOC_FIELD_MAX_PATH];
} vsoc_field_t;

/* A value read from an event. Strings and JSON nodes are borrowed from the event. */
typedef struct vsoc_value {
    vsoc_ftype_t type; /* never VSOC_FT_JSON: JSON values arrive as their concrete type */
    int is_list;       /* a JSON array: json holds it, match any element */
    int64_t i;         /* INT, BOOL (0/1), REASONS (bit set) */
    double f;          /* FLOAT */
    const char *s;     /* STR, BYTES (hex text) */
    size_t n;
    const void *json;  /* the json_t node for JSON paths */
} vsoc_value_t;

/* Resolves a field name. Returns 0, or -1 with a message in err (with a did-you-mean when
 * the name looks like a mistyped built-in field). */
int vsoc_field_resolve(const char *name, vsoc_field_t *out, char *err, size_t errlen);
void vsoc_field_fini(vsoc_field_t *f);

/* Reads f from ev. hexbuf (at least 129 bytes) receives can.data's hex text when needed.
 * Returns 1 with *out filled, or 0 when the event does not carry the field. */
int vsoc_field_get(const vsoc_field_t *f, const vsoc_event_t *ev, vsoc_value_t *out,
                   char *hexbuf);

/* Reads one element of a JSON array value into *out; returns 0 when absent or not scalar. */
int vsoc_field_json_elem(const vsoc_value_t *list, size_t i, vsoc_value_t *out);
size_t vsoc_field_json_len(const vsoc_value_t *list);

/* baseline.reasons names and bits. Returns the bit for a name or 0. */
uint32_t vsoc_reason_bit(const char *name);
const char *vsoc_reason_name(unsigned bit_index); /* NULL past the last */

/* The list of built-in field names, for suggestions and docs. */
extern const char *const vsoc_field_names[];
extern const size_t vsoc_field_names_count;

#endif
