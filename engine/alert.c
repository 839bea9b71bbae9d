/* alert.c: an alert as an OCSF Detection Finding (class_uid 2004), one JSON object.
 *
 * Only values derived from events and rules go in (no wall clock, no host name), and keys
 * are written in a fixed order, so the same input gives byte-identical output. */
#include "engine.h"
#include "rule_internal.h"
#include "field.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OCSF_VERSION "1.3.0"

static const char *const severity_names[] = {"Unknown", "Informational", "Low", "Medium",
                                             "High", "Critical"};

static json_t *str_n(const char *s, size_t n)
{
    /* Captures may hold any bytes; jansson refuses invalid UTF-8, so fall back to a
     * Latin-1 reading that keeps every byte visible. */
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *buf = malloc(n * 2 + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            buf[o++] = (char)c;
        } else {
            buf[o++] = (char)(0xC0 | (c >> 6));
            buf[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

/* Identifier-like fields read better in hex, as analysts write them. */
static int hex_field(vsoc_field_id_t id)
{
    return id == VSOC_F_CAN_ID || id == VSOC_F_UDS_SID || id == VSOC_F_UDS_REQ_SID ||
           id == VSOC_F_UDS_NRC || id == VSOC_F_UDS_SUB || id == VSOC_F_UDS_DID ||
           id == VSOC_F_J1939_SA || id == VSOC_F_J1939_DA;
}

static json_t *value_json(const vsoc_field_t *f, const vsoc_value_t *v)
{
    char buf[32];
    switch (v->type) {
    case VSOC_FT_INT:
        if (hex_field(f->id)) {
            snprintf(buf, sizeof buf, "0x%llX", (unsigned long long)v->i);
            return json_string(buf);
        }
        return json_integer(v->i);
    case VSOC_FT_BOOL:
        return json_boolean(v->i);
    case VSOC_FT_FLOAT:
        return json_real(v->f);
    case VSOC_FT_STR:
    case VSOC_FT_BYTES:
        return str_n(v->s, v->n);
    default:
        return json_null();
    }
}

/* Expected against observed, in the spirit of OCSF anomaly analyses: what the baseline
 * learnt for the frame's ID and what this frame did. */
static json_t *baseline_json(const vsoc_event_t *ev)
{
    json_t *b = json_object();
    json_object_set_new(b, "score", json_real(ev->baseline_score));
    json_t *rs = json_array();
    for (unsigned i = 0; i < 32; i++) {
        const char *n = vsoc_reason_name(i);
        if (!n)
            break;
        if (ev->baseline_reasons >> i & 1)
            json_array_append_new(rs, json_string(n));
    }
    json_object_set_new(b, "reasons", rs);
    if (ev->baseline_reasons == vsoc_reason_bit("unknown_id")) {
        json_object_set_new(b, "expected", json_string("no frame with this ID on this bus"));
        return b;
    }
    if (ev->obs_period_ms >= 0) {
        json_t *p = json_object();
        json_object_set_new(p, "observed_ms", json_real(ev->obs_period_ms));
        json_object_set_new(p, "expected_p1_ms", json_real(ev->exp_p1_ms));
        json_object_set_new(p, "expected_p50_ms", json_real(ev->exp_p50_ms));
        json_object_set_new(p, "expected_p99_ms", json_real(ev->exp_p99_ms));
        json_object_set_new(b, "period", p);
    }
    if (ev->obs_byte >= 0) {
        json_t *p = json_object();
        json_object_set_new(p, "byte", json_integer(ev->obs_byte));
        json_object_set_new(p, "observed", json_integer(ev->obs_value));
        json_object_set_new(p, "expected_min", json_integer(ev->exp_min));
        json_object_set_new(p, "expected_max", json_integer(ev->exp_max));
        json_object_set_new(b, "payload", p);
    }
    return b;
}

static json_t *event_json(const vsoc_event_t *ev)
{
    json_t *o = json_object();
    char buf[160];
    if (ev->kind == VSOC_EVENT_CAN) {
        json_object_set_new(o, "type", json_string("can"));
        snprintf(buf, sizeof buf, ev->can.ext ? "0x%08X" : "0x%03X", ev->can.id);
        json_object_set_new(o, "can_id", json_string(buf));
        json_object_set_new(o, "ext", json_boolean(ev->can.ext));
        if (ev->can.fd)
            json_object_set_new(o, "fd", json_true());
        if (ev->can.rtr)
            json_object_set_new(o, "rtr", json_true());
        json_object_set_new(o, "dlc", json_integer(ev->can.dlc));
        static const char hx[] = "0123456789ABCDEF";
        size_t n = 0;
        for (unsigned i = 0; i < ev->can.len && n + 2 < sizeof buf; i++) {
            buf[n++] = hx[ev->can.data[i] >> 4];
            buf[n++] = hx[ev->can.data[i] & 15];
        }
        json_object_set_new(o, "data", json_stringn(buf, n));
        if (ev->derived & VSOC_HAS_J1939) {
            json_t *j = json_object();
            json_object_set_new(j, "pgn", json_integer(ev->j1939.pgn));
            json_object_set_new(j, "sa", json_integer(ev->j1939.sa));
            json_object_set_new(j, "da", json_integer(ev->j1939.da));
            json_object_set_new(j, "priority", json_integer(ev->j1939.priority));
            json_object_set_new(o, "j1939", j);
        }
        if (ev->derived & VSOC_HAS_UDS) {
            json_t *u = json_object();
            snprintf(buf, sizeof buf, "0x%02X", ev->uds.sid);
            json_object_set_new(u, "sid", json_string(buf));
            snprintf(buf, sizeof buf, "0x%02X", ev->uds.req_sid);
            json_object_set_new(u, "req_sid", json_string(buf));
            if (ev->derived & VSOC_HAS_UDS_NRC) {
                snprintf(buf, sizeof buf, "0x%02X", ev->uds.nrc);
                json_object_set_new(u, "nrc", json_string(buf));
            }
            if (ev->derived & VSOC_HAS_UDS_SUB) {
                snprintf(buf, sizeof buf, "0x%02X", ev->uds.sub);
                json_object_set_new(u, "sub", json_string(buf));
            }
            if (ev->derived & VSOC_HAS_UDS_DID) {
                snprintf(buf, sizeof buf, "0x%04X", ev->uds.did);
                json_object_set_new(u, "did", json_string(buf));
            }
            json_object_set_new(o, "uds", u);
        }
        if (ev->bus.n)
            json_object_set_new(o, "bus", str_n(ev->bus.p, ev->bus.n));
    } else {
        json_object_set_new(o, "type", str_n(ev->ids_type.p, ev->ids_type.n));
    }
    if (ev->derived & VSOC_HAS_BASELINE)
        json_object_set_new(o, "baseline", baseline_json(ev));
    if (ev->derived & VSOC_HAS_SPEED)
        json_object_set_new(o, "speed_kph", json_real(ev->speed_kph));
    if (ev->source.n)
        json_object_set_new(o, "source", str_n(ev->source.p, ev->source.n));
    if (ev->lineno)
        json_object_set_new(o, "line", json_integer((json_int_t)ev->lineno));
    return o;
}

/* The finding of alert a. uid, count and the window (first_us .. last_us) are passed apart
 * because a fleet alert takes them from the fleet counter; fleet is NULL for any other. */
static char *finding_json(const vsoc_alert_t *a, const char *uid, uint64_t count,
                          int64_t first_us, int64_t last_us, const vsoc_fleet_result_t *fleet)
{
    const vsoc_rule_t *r = a->rule;
    int sev = (int)r->level;
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "activity_id", json_integer(1));
    json_object_set_new(o, "activity_name", json_string("Create"));
    json_object_set_new(o, "category_uid", json_integer(2));
    json_object_set_new(o, "category_name", json_string("Findings"));
    json_object_set_new(o, "class_uid", json_integer(2004));
    json_object_set_new(o, "class_name", json_string("Detection Finding"));
    json_object_set_new(o, "type_uid", json_integer(200401));
    json_object_set_new(o, "time", json_integer(a->time_us / 1000));
    json_object_set_new(o, "start_time", json_integer(first_us / 1000));
    json_object_set_new(o, "end_time", json_integer(last_us / 1000));
    json_object_set_new(o, "severity_id", json_integer(sev));
    json_object_set_new(o, "severity", json_string(severity_names[sev]));
    json_object_set_new(o, "status_id", json_integer(1));
    json_object_set_new(o, "status", json_string("New"));
    json_object_set_new(o, "count", json_integer((json_int_t)count));
    json_object_set_new(o, "message", json_string(r->title));

    json_t *md = json_object();
    json_object_set_new(md, "version", json_string(OCSF_VERSION));
    json_t *prod = json_object();
    json_object_set_new(prod, "name", json_string("vsoc"));
    json_object_set_new(prod, "vendor_name", json_string("vsoc"));
    json_object_set_new(prod, "version", json_string(VSOC_VERSION));
    json_object_set_new(md, "product", prod);
    if (r->ntags) {
        json_t *labels = json_array();
        for (size_t i = 0; i < r->ntags; i++)
            json_array_append_new(labels, json_string(r->tags[i]));
        json_object_set_new(md, "labels", labels);
    }
    json_object_set_new(o, "metadata", md);

    json_t *fi = json_object();
    json_object_set_new(fi, "uid", json_string(uid));
    json_object_set_new(fi, "title", json_string(r->title));
    if (r->description)
        json_object_set_new(fi, "desc", json_string(r->description));
    json_object_set_new(fi, "first_seen_time", json_integer(first_us / 1000));
    json_object_set_new(fi, "last_seen_time", json_integer(last_us / 1000));
    json_t *an = json_object();
    json_object_set_new(an, "uid", json_string(r->id));
    json_object_set_new(an, "name", json_string(r->title));
    json_object_set_new(an, "type_id", json_integer(1));
    json_object_set_new(an, "type", json_string("Rule"));
    json_object_set_new(fi, "analytic", an);
    const char *corr = vsoc_rule_correlation(r);
    json_t *types = json_array();
    json_array_append_new(types, json_string(corr ? corr : "match"));
    json_object_set_new(fi, "types", types);
    json_object_set_new(o, "finding_info", fi);

    json_t *evd = json_object();
    json_object_set_new(evd, "count", json_integer((json_int_t)count));
    json_object_set_new(evd, "first_seen_time", json_integer(first_us / 1000));
    json_object_set_new(evd, "last_seen_time", json_integer(last_us / 1000));
    if (a->ngroup) {
        json_t *grp = json_object();
        for (size_t i = 0; i < a->ngroup; i++)
            json_object_set_new(grp, a->group_fields[i]->name,
                                a->group_present[i]
                                    ? value_json(a->group_fields[i], &a->group_vals[i])
                                    : json_null());
        json_object_set_new(evd, "group", grp);
    }
    if (a->suppressed)
        json_object_set_new(evd, "suppressed", json_integer((json_int_t)a->suppressed));
    json_object_set_new(evd, "event", event_json(a->event));
    json_t *samples = json_array();
    for (size_t i = 0; i < a->nsamples; i++)
        json_array_append_new(samples, str_n(a->samples[i].p, a->samples[i].n));
    json_object_set_new(evd, "samples", samples);
    json_t *evs = json_array();
    json_t *ev = json_object();
    json_object_set_new(ev, "data", evd);
    json_array_append_new(evs, ev);
    json_object_set_new(o, "evidences", evs);

    json_t *veh = json_object();
    json_object_set_new(veh, "vin", str_n(a->vin.p, a->vin.n));
    if (fleet) {
        json_t *fl = json_object();
        json_object_set_new(fl, "vehicles", json_integer((json_int_t)fleet->vehicles));
        json_t *vins = json_array();
        for (size_t i = 0; i < fleet->nvins && i < VSOC_FLEET_SAMPLES; i++)
            json_array_append_new(vins, str_n(fleet->vins[i], strlen(fleet->vins[i])));
        json_object_set_new(fl, "vins", vins);
        json_object_set_new(veh, "fleet", fl);
    }
    json_object_set_new(o, "vehicle", veh);

    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s;
}

char *vsoc_alert_json(const vsoc_alert_t *a)
{
    return finding_json(a, a->uid, a->count, a->first_us, a->last_us, NULL);
}

char *vsoc_fleet_alert_json(const vsoc_alert_t *hit, const vsoc_fleet_result_t *res)
{
    /* The hit that raises an alert is its vehicle's latest, so it is never older than
     * first_us; res may come from another counter (Redis), so the window is still kept
     * from ending before it starts. */
    int64_t last = hit->time_us > res->first_us ? hit->time_us : res->first_us;
    return finding_json(hit, res->uid, res->vehicles, res->first_us, last, res);
}
