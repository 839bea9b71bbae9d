/* field.c: field names, types and readers (see field.h). */
#include "field.h"

#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_CAN (1u << VSOC_EVENT_CAN)
#define K_IDS (1u << VSOC_EVENT_IDS)

static const struct {
    const char *name;
    vsoc_field_id_t id;
    vsoc_ftype_t type;
    uint8_t kinds;
} builtin[] = {
    {"vin", VSOC_F_VIN, VSOC_FT_STR, K_CAN | K_IDS},
    {"ts", VSOC_F_TS, VSOC_FT_FLOAT, K_CAN | K_IDS},
    {"type", VSOC_F_TYPE, VSOC_FT_STR, K_CAN | K_IDS},
    {"source", VSOC_F_SOURCE, VSOC_FT_STR, K_CAN | K_IDS},
    {"can.id", VSOC_F_CAN_ID, VSOC_FT_INT, K_CAN},
    {"can.ext", VSOC_F_CAN_EXT, VSOC_FT_BOOL, K_CAN},
    {"can.fd", VSOC_F_CAN_FD, VSOC_FT_BOOL, K_CAN},
    {"can.rtr", VSOC_F_CAN_RTR, VSOC_FT_BOOL, K_CAN},
    {"can.dlc", VSOC_F_CAN_DLC, VSOC_FT_INT, K_CAN},
    {"can.len", VSOC_F_CAN_LEN, VSOC_FT_INT, K_CAN},
    {"can.bus", VSOC_F_CAN_BUS, VSOC_FT_STR, K_CAN},
    {"can.data", VSOC_F_CAN_DATA, VSOC_FT_BYTES, K_CAN},
    {"j1939.pgn", VSOC_F_J1939_PGN, VSOC_FT_INT, K_CAN},
    {"j1939.sa", VSOC_F_J1939_SA, VSOC_FT_INT, K_CAN},
    {"j1939.da", VSOC_F_J1939_DA, VSOC_FT_INT, K_CAN},
    {"j1939.priority", VSOC_F_J1939_PRIORITY, VSOC_FT_INT, K_CAN},
    {"uds.sid", VSOC_F_UDS_SID, VSOC_FT_INT, K_CAN},
    {"uds.req_sid", VSOC_F_UDS_REQ_SID, VSOC_FT_INT, K_CAN},
    {"uds.nrc", VSOC_F_UDS_NRC, VSOC_FT_INT, K_CAN},
    {"uds.sub", VSOC_F_UDS_SUB, VSOC_FT_INT, K_CAN},
    {"uds.did", VSOC_F_UDS_DID, VSOC_FT_INT, K_CAN},
    {"baseline.score", VSOC_F_BASELINE_SCORE, VSOC_FT_FLOAT, K_CAN},
    {"baseline.reasons", VSOC_F_BASELINE_REASONS, VSOC_FT_REASONS, K_CAN},
    {"vehicle.speed_kph", VSOC_F_VEHICLE_SPEED, VSOC_FT_FLOAT, K_CAN | K_IDS},
    {"vehicle.state_age_ms", VSOC_F_VEHICLE_STATE_AGE, VSOC_FT_INT, K_CAN | K_IDS},
};
#define NBUILTIN (sizeof builtin / sizeof builtin[0])

const char *const vsoc_field_names[] = {
    "vin", "ts", "type", "source", "can.id", "can.ext", "can.fd", "can.rtr", "can.dlc",
    "can.len", "can.bus", "can.data", "j1939.pgn", "j1939.sa", "j1939.da", "j1939.priority",
    "uds.sid", "uds.req_sid", "uds.nrc", "uds.sub", "uds.did", "baseline.score",
    "baseline.reasons", "vehicle.speed_kph", "vehicle.state_age_ms",
};
const size_t vsoc_field_names_count = sizeof vsoc_field_names / sizeof vsoc_field_names[0];
_Static_assert(sizeof vsoc_field_names / sizeof vsoc_field_names[0] == NBUILTIN,
               "field name list matches the table");

static const char *const reason_names[] = {
    "unknown_id", "period_short", "period_long", "dlc", "payload", "counter", "checksum",
    "missing",
};
#define NREASONS (sizeof reason_names / sizeof reason_names[0])

uint32_t vsoc_reason_bit(const char *name)
{
    for (unsigned i = 0; i < NREASONS; i++)
        if (strcmp(name, reason_names[i]) == 0)
            return 1u << i;
    return 0;
}

const char *vsoc_reason_name(unsigned bit_index)
{
    return bit_index < NREASONS ? reason_names[bit_index] : NULL;
}

/* Namespaces that belong to vsoc: a name under them that is not built in is a typo, not a
 * JSON path. */
static const char *const reserved_ns[] = {"can.", "j1939.", "uds.", "baseline.", "vehicle."};

static int parse_byte_index(const char *s, const char **end, unsigned *out)
{
    unsigned v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (unsigned)(*s++ - '0');
        if (++digits > 3)
            return -1;
    }
    if (!digits)
        return -1;
    *end = s;
    *out = v;
    return 0;
}

int vsoc_field_resolve(const char *name, vsoc_field_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!name[0]) {
        snprintf(err, errlen, "empty field name");
        return -1;
    }
    for (size_t i = 0; i < NBUILTIN; i++) {
        if (strcmp(name, builtin[i].name) == 0) {
            out->id = builtin[i].id;
            out->type = builtin[i].type;
            out->kinds = builtin[i].kinds;
            out->name = strdup(name);
            return out->name ? 0 : -1;
        }
    }
    if (strncmp(name, "can.data[", 9) == 0) {
        const char *p = name + 9;
        unsigned lo, hi;
        if (parse_byte_index(p, &p, &lo) != 0)
            goto bad_index;
        hi = lo + 1;
        if (*p == ':') {
            p++;
            if (parse_byte_index(p, &p, &hi) != 0)
                goto bad_index;
        }
        if (strcmp(p, "]") != 0)
            goto bad_index;
        if (lo >= VSOC_CAN_MAX_LEN || hi > VSOC_CAN_MAX_LEN || hi <= lo) {
            snprintf(err, errlen, "byte range in '%s' is outside 0..64 or empty", name);
            return -1;
        }
        if (hi - lo > 8) {
            snprintf(err, errlen, "'%s' spans %u bytes; at most 8 make one integer", name,
                     hi - lo);
            return -1;
        }
        out->id = VSOC_F_CAN_BYTES;
        out->type = VSOC_FT_INT;
        out->kinds = K_CAN;
        out->lo = (uint8_t)lo;
        out->hi = (uint8_t)hi;
        out->name = strdup(name);
        return out->name ? 0 : -1;
    bad_index:
        snprintf(err, errlen, "bad byte index in '%s' (use can.data[N] or can.data[N:M])", name);
        return -1;
    }
    for (size_t i = 0; i < sizeof reserved_ns / sizeof reserved_ns[0]; i++) {
        if (strncmp(name, reserved_ns[i], strlen(reserved_ns[i])) == 0) {
            const char *s = vsoc_did_you_mean(name, vsoc_field_names, vsoc_field_names_count);
            if (s)
                snprintf(err, errlen, "unknown field '%s' (did you mean '%s'?)", name, s);
            else
                snprintf(err, errlen, "unknown field '%s'", name);
            return -1;
        }
    }
    /* A JSON path: dotted segments of [A-Za-z0-9_-]. */
    out->id = VSOC_F_JSON;
    out->type = VSOC_FT_JSON;
    out->kinds = K_IDS;
    const char *seg = name;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (len == 0 || out->npath == VSOC_FIELD_MAX_PATH) {
            snprintf(err, errlen, "bad field '%s': empty segment or deeper than %d", name,
                     VSOC_FIELD_MAX_PATH);
            vsoc_field_fini(out);
            return -1;
        }
        for (size_t k = 0; k < len; k++) {
            char c = seg[k];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '@' || c == '$')) {
                const char *s =
                    vsoc_did_you_mean(name, vsoc_field_names, vsoc_field_names_count);
                if (s)
                    snprintf(err, errlen, "unknown field '%s' (did you mean '%s'?)", name, s);
                else
                    snprintf(err, errlen, "bad character '%c' in field '%s'", c, name);
                vsoc_field_fini(out);
                return -1;
            }
        }
        out->path[out->npath] = strndup(seg, len);
        if (!out->path[out->npath]) {
            vsoc_field_fini(out);
            return -1;
        }
        out->npath++;
        if (!dot)
            break;
        seg = dot + 1;
    }
    out->name = strdup(name);
    return out->name ? 0 : -1;
}

void vsoc_field_fini(vsoc_field_t *f)
{
    if (!f)
        return;
    free(f->name);
    for (unsigned i = 0; i < f->npath; i++)
        free(f->path[i]);
    memset(f, 0, sizeof *f);
}

static int json_to_value(const json_t *j, vsoc_value_t *out)
{
    out->json = j;
    out->is_list = 0;
    switch (json_typeof(j)) {
    case JSON_STRING:
        out->type = VSOC_FT_STR;
        out->s = json_string_value(j);
        out->n = json_string_length(j);
        return 1;
    case JSON_INTEGER:
        out->type = VSOC_FT_INT;
        out->i = (int64_t)json_integer_value(j);
        out->f = (double)out->i;
        return 1;
    case JSON_REAL:
        out->type = VSOC_FT_FLOAT;
        out->f = json_real_value(j);
        return 1;
    case JSON_TRUE:
    case JSON_FALSE:
        out->type = VSOC_FT_BOOL;
        out->i = json_is_true(j);
        return 1;
    case JSON_ARRAY:
        out->type = VSOC_FT_STR;
        out->is_list = 1;
        return 1;
    case JSON_OBJECT:
        /* Present, but only "exists" can say anything about an object. */
        out->type = VSOC_FT_JSON;
        return 1;
    case JSON_NULL:
        return 0;
    }
    return 0;
}

size_t vsoc_field_json_len(const vsoc_value_t *list)
{
    return json_array_size((const json_t *)list->json);
}

int vsoc_field_json_elem(const vsoc_value_t *list, size_t i, vsoc_value_t *out)
{
    const json_t *e = json_array_get((const json_t *)list->json, i);
    if (!e || json_is_array(e))
        return 0;
    return json_to_value(e, out);
}

static const char hexdig[] = "0123456789ABCDEF";

int vsoc_field_get(const vsoc_field_t *f, const vsoc_event_t *ev, vsoc_value_t *out,
                   char *hexbuf)
{
    const int can = ev->kind == VSOC_EVENT_CAN;
    out->is_list = 0;
    out->type = f->type;
    switch (f->id) {
    case VSOC_F_VIN:
        out->s = ev->vin.p;
        out->n = ev->vin.n;
        return 1;
    case VSOC_F_TS:
        out->f = (double)ev->ts_us / 1e6;
        return 1;
    case VSOC_F_TYPE:
        if (can) {
            out->s = "can";
            out->n = 3;
        } else {
            out->s = ev->ids_type.p;
            out->n = ev->ids_type.n;
        }
        return 1;
    case VSOC_F_SOURCE:
        out->s = ev->source.p;
        out->n = ev->source.n;
        return 1;
    case VSOC_F_CAN_BUS:
        if (!can)
            return 0;
        out->s = ev->bus.p;
        out->n = ev->bus.n;
        return 1;
    case VSOC_F_CAN_ID: out->i = ev->can.id; return can;
    case VSOC_F_CAN_EXT: out->i = ev->can.ext; return can;
    case VSOC_F_CAN_FD: out->i = ev->can.fd; return can;
    case VSOC_F_CAN_RTR: out->i = ev->can.rtr; return can;
    case VSOC_F_CAN_DLC: out->i = ev->can.dlc; return can;
    case VSOC_F_CAN_LEN: out->i = ev->can.len; return can;
    case VSOC_F_CAN_DATA:
        if (!can)
            return 0;
        for (unsigned i = 0; i < ev->can.len; i++) {
            hexbuf[2 * i] = hexdig[ev->can.data[i] >> 4];
            hexbuf[2 * i + 1] = hexdig[ev->can.data[i] & 15];
        }
        hexbuf[2 * ev->can.len] = 0;
        out->s = hexbuf;
        out->n = 2u * ev->can.len;
        return 1;
    case VSOC_F_CAN_BYTES: {
        if (!can || ev->can.len < f->hi)
            return 0;
        uint64_t v = 0;
        for (unsigned i = f->lo; i < f->hi; i++)
            v = (v << 8) | ev->can.data[i];
        out->i = (int64_t)v;
        return 1;
    }
    case VSOC_F_J1939_PGN: out->i = ev->j1939.pgn; return !!(ev->derived & VSOC_HAS_J1939);
    case VSOC_F_J1939_SA: out->i = ev->j1939.sa; return !!(ev->derived & VSOC_HAS_J1939);
    case VSOC_F_J1939_DA: out->i = ev->j1939.da; return !!(ev->derived & VSOC_HAS_J1939);
    case VSOC_F_J1939_PRIORITY:
        out->i = ev->j1939.priority;
        return !!(ev->derived & VSOC_HAS_J1939);
    case VSOC_F_UDS_SID: out->i = ev->uds.sid; return !!(ev->derived & VSOC_HAS_UDS);
    case VSOC_F_UDS_REQ_SID: out->i = ev->uds.req_sid; return !!(ev->derived & VSOC_HAS_UDS);
    case VSOC_F_UDS_NRC: out->i = ev->uds.nrc; return !!(ev->derived & VSOC_HAS_UDS_NRC);
    case VSOC_F_UDS_SUB: out->i = ev->uds.sub; return !!(ev->derived & VSOC_HAS_UDS_SUB);
    case VSOC_F_UDS_DID: out->i = ev->uds.did; return !!(ev->derived & VSOC_HAS_UDS_DID);
    case VSOC_F_BASELINE_SCORE:
        out->f = ev->baseline_score;
        return !!(ev->derived & VSOC_HAS_BASELINE);
    case VSOC_F_BASELINE_REASONS:
        out->i = ev->baseline_reasons;
        return !!(ev->derived & VSOC_HAS_BASELINE);
    case VSOC_F_VEHICLE_SPEED:
        out->f = ev->speed_kph;
        return !!(ev->derived & VSOC_HAS_SPEED);
    case VSOC_F_VEHICLE_STATE_AGE:
        out->i = ev->state_age_us / 1000;
        return !!(ev->derived & VSOC_HAS_SPEED);
    case VSOC_F_JSON: {
        if (ev->kind != VSOC_EVENT_IDS || !ev->doc)
            return 0;
        const json_t *j = ev->doc;
        for (unsigned i = 0; i < f->npath && j; i++)
            j = json_is_object(j) ? json_object_get(j, f->path[i]) : NULL;
        if (!j)
            return 0;
        return json_to_value(j, out);
    }
    }
    return 0;
}
