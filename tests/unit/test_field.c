/* test_field.c: field names resolve to the right reader, and each reader takes the right
 * bytes (or says the field is absent). */
#include "field.h"
#include "test.h"

#include <jansson.h>

static void test_resolve(void)
{
    vsoc_field_t f;
    char err[256];
    ASSERT_EQ(vsoc_field_resolve("can.data[2:4]", &f, err, sizeof err), 0);
    ASSERT_EQ(f.id, VSOC_F_CAN_BYTES);
    ASSERT_EQ(f.lo, 2);
    ASSERT_EQ(f.hi, 4);
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("can.data[7]", &f, err, sizeof err), 0);
    ASSERT_EQ(f.hi, 8);
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("can.data[4:2]", &f, err, sizeof err), -1);
    ASSERT(strstr(err, "outside") != NULL);
    ASSERT_EQ(vsoc_field_resolve("can.data[0:12]", &f, err, sizeof err), -1);
    ASSERT_EQ(vsoc_field_resolve("uds.nrcc", &f, err, sizeof err), -1);
    ASSERT(strstr(err, "did you mean 'uds.nrc'") != NULL);
    ASSERT_EQ(vsoc_field_resolve("context.port", &f, err, sizeof err), 0);
    ASSERT_EQ(f.id, VSOC_F_JSON);
    ASSERT_EQ(f.npath, 2);
    ASSERT_STREQ(f.path[1], "port");
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("a..b", &f, err, sizeof err), -1);
}

static void test_get(void)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.can.id = 0x18FEF100;
    ev.can.ext = 1;
    ev.can.len = 3;
    ev.can.data[0] = 0xDE;
    ev.can.data[1] = 0xAD;
    ev.can.data[2] = 0x01;
    char hex[160], err[128];
    vsoc_value_t v;
    vsoc_field_t f;
    ASSERT_EQ(vsoc_field_resolve("can.data", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 1);
    ASSERT_STRN_EQ(v.s, v.n, "DEAD01");
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("can.data[1:3]", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 1);
    ASSERT_EQ(v.i, 0xAD01);
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("can.data[3]", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 0); /* beyond the payload: absent */
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("j1939.pgn", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 0); /* not decoded yet: absent */
    ev.derived |= VSOC_HAS_J1939;
    ev.j1939.pgn = 65265;
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 1);
    ASSERT_EQ(v.i, 65265);
    vsoc_field_fini(&f);

    json_t *doc = json_loads("{\"context\":{\"port\":23,\"tags\":[\"a\",\"b\"]},\"n\":null}", 0, NULL);
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_IDS;
    ev.doc = doc;
    ASSERT_EQ(vsoc_field_resolve("context.port", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 1);
    ASSERT_EQ(v.type, VSOC_FT_INT);
    ASSERT_EQ(v.i, 23);
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("context.tags", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 1);
    ASSERT(v.is_list);
    ASSERT_EQ(vsoc_field_json_len(&v), 2);
    vsoc_value_t el;
    ASSERT_EQ(vsoc_field_json_elem(&v, 1, &el), 1);
    ASSERT_STRN_EQ(el.s, el.n, "b");
    vsoc_field_fini(&f);
    ASSERT_EQ(vsoc_field_resolve("n", &f, err, sizeof err), 0);
    ASSERT_EQ(vsoc_field_get(&f, &ev, &v, hex), 0); /* JSON null is absent */
    vsoc_field_fini(&f);
    json_decref(doc);
}

int main(void)
{
    test_resolve();
    test_get();
    printf("test_field: ok\n");
    return 0;
}
