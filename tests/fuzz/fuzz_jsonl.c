/* fuzz_jsonl.c: JSON Lines IDS events on arbitrary bytes: every line, and the whole input as
 * one line, through vsoc_parse_line(VSOC_FMT_JSONL). It must accept or report, never crash
 * or leak; an accepted event has a non-empty vin and type inside its document. */
#include "decode.h"
#include "file/reader.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void one(const char *p, size_t n)
{
    vsoc_event_t ev;
    const char *reason = NULL;
    vsoc_format_t det;
    vsoc_event_clear(&ev);
    if (vsoc_parse_line(VSOC_FMT_JSONL, p, n, &ev, &det, &reason) != 0) {
        if (!reason || strncmp(reason, "JSON: ", 6) != 0 || ev.doc || det != VSOC_FMT_UNKNOWN)
            abort();
        return;
    }
    if (ev.kind != VSOC_EVENT_IDS || !ev.doc || det != VSOC_FMT_JSONL || ev.ts_us < 0)
        abort();
    json_t *vin = json_object_get(ev.doc, "vin"), *type = json_object_get(ev.doc, "type");
    if (!json_is_string(vin) || json_string_value(vin) != ev.vin.p || !ev.vin.n ||
        json_string_length(vin) != ev.vin.n || !json_is_string(type) ||
        json_string_value(type) != ev.ids_type.p || !ev.ids_type.n)
        abort();
    vsoc_decode(&ev); /* does nothing for IDS events, which must stay as they are */
    if (ev.derived)
        abort();
    json_decref(ev.doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *e = p + size;
    one(p, size);
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(e - p);
        one(p, n);
        p += n + 1;
    }
    return 0;
}
