/* test_decode.c: J1939, UDS and CCVS1 speed decoding (engine/decode.c). Frames are built
 * directly, without the reader, so that a decoder test never depends on a parser. */
#include "decode.h"
#include "test.h"

/* A CAN event with id/ext and the payload given as hex ("037F2735"). */
static vsoc_event_t frame(uint32_t id, int ext, const char *hex)
{
    vsoc_event_t ev;
    vsoc_event_clear(&ev);
    ev.kind = VSOC_EVENT_CAN;
    ev.can.id = id;
    ev.can.ext = (uint8_t)ext;
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            TEST_FAIL_("bad hex in test: %s", hex);
        ev.can.data[i] = (uint8_t)v;
    }
    ev.can.len = (uint8_t)n;
    ev.can.dlc = (uint8_t)(n <= 8 ? n : 15);
    return ev;
}

static vsoc_event_t decoded(uint32_t id, int ext, const char *hex)
{
    vsoc_event_t ev = frame(id, ext, hex);
    vsoc_decode(&ev);
    return ev;
}

#define UDS_BITS (VSOC_HAS_UDS | VSOC_HAS_UDS_NRC | VSOC_HAS_UDS_SUB | VSOC_HAS_UDS_DID)

static void test_j1939_pdu2(void)
{
    /* CCVS1 from engine (SA 0): broadcast. */
    vsoc_event_t ev = decoded(0x18FEF100, 1, "FF000000FF6800CF");
    ASSERT(ev.derived & VSOC_HAS_J1939);
    ASSERT_EQ(ev.j1939.pgn, 65265);
    ASSERT_EQ(ev.j1939.sa, 0);
    ASSERT_EQ(ev.j1939.da, 255);
    ASSERT_EQ(ev.j1939.priority, 6);
    ASSERT_EQ(ev.derived & UDS_BITS, 0);

    /* EEC1, priority 3. */
    ev = decoded(0x0CF00400, 1, "F07D7D0000F0FFFF");
    ASSERT_EQ(ev.j1939.pgn, 61444);
    ASSERT_EQ(ev.j1939.priority, 3);
    ASSERT_EQ(ev.j1939.da, 0xFF);

    /* Data page bit with a PDU2 format: PGN 0x1FEF1. */
    ev = decoded(0x01FEF1AB, 1, "");
    ASSERT_EQ(ev.j1939.pgn, 0x1FEF1);
    ASSERT_EQ(ev.j1939.priority, 0);
    ASSERT_EQ(ev.j1939.sa, 0xAB);
    ASSERT_EQ(ev.j1939.da, 0xFF);

    /* PF 240 exactly is the first PDU2 format. */
    ev = decoded(0x18F00010, 1, "");
    ASSERT_EQ(ev.j1939.pgn, 0xF000);
    ASSERT_EQ(ev.j1939.da, 0xFF);
}

static void test_j1939_pdu1(void)
{
    /* Request (PGN 59904) to DA 0 from SA 0xF9: the PS byte is not part of the PGN. */
    vsoc_event_t ev = decoded(0x18EA00F9, 1, "EEFE00");
    ASSERT(ev.derived & VSOC_HAS_J1939);
    ASSERT_EQ(ev.j1939.pgn, 59904);
    ASSERT_EQ(ev.j1939.da, 0);
    ASSERT_EQ(ev.j1939.sa, 0xF9);
    ASSERT_EQ(ev.j1939.priority, 6);

    /* Global request (DA 0xFF) still a PDU1 PGN. */
    ev = decoded(0x18EAFF00, 1, "");
    ASSERT_EQ(ev.j1939.pgn, 59904);
    ASSERT_EQ(ev.j1939.da, 0xFF);

    /* PF 239, EDP and DP set, priority 7. */
    ev = decoded(0x1FEF1234, 1, "");
    ASSERT_EQ(ev.j1939.pgn, 0x3EF00);
    ASSERT_EQ(ev.j1939.da, 0x12);
    ASSERT_EQ(ev.j1939.sa, 0x34);
    ASSERT_EQ(ev.j1939.priority, 7);

    /* TP.CM (PGN 60416) and the DoS capture's ID 00000000 (PGN 0, DA 0, SA 0). */
    ev = decoded(0x1CECFF00, 1, "");
    ASSERT_EQ(ev.j1939.pgn, 60416);
    ASSERT_EQ(ev.j1939.priority, 7);
    ev = decoded(0x00000000, 1, "FFFFFFFFFFFFFFFF");
    ASSERT(ev.derived & VSOC_HAS_J1939);
    ASSERT_EQ(ev.j1939.pgn, 0);
    ASSERT_EQ(ev.j1939.da, 0);
    ASSERT_EQ(ev.j1939.sa, 0);
}

static void test_j1939_only_29bit(void)
{
    vsoc_event_t ev = decoded(0x123, 0, "1122");
    ASSERT_EQ(ev.derived & VSOC_HAS_J1939, 0);
    ASSERT_EQ(ev.j1939.pgn, 0);
}

static void test_bits_reset(void)
{
    /* Decoding clears its own bits and stale values, and leaves the engine's alone. */
    vsoc_event_t ev = frame(0x123, 0, "11");
    ev.derived = 0xFFFFFFFFu;
    ev.j1939.pgn = 1234;
    ev.uds.sid = 0x22;
    vsoc_decode(&ev);
    ASSERT_EQ(ev.derived & (VSOC_HAS_J1939 | UDS_BITS), 0);
    ASSERT(ev.derived & VSOC_HAS_BASELINE);
    ASSERT(ev.derived & VSOC_HAS_SPEED);
    ASSERT_EQ(ev.j1939.pgn, 0);
    ASSERT_EQ(ev.uds.sid, 0);

    /* Other kinds are left untouched. */
    vsoc_event_t ids;
    vsoc_event_clear(&ids);
    ids.kind = VSOC_EVENT_IDS;
    ids.derived = VSOC_HAS_J1939;
    ids.can.ext = 1;
    ids.can.id = 0x18FEF100;
    vsoc_decode(&ids);
    ASSERT_EQ(ids.derived, VSOC_HAS_J1939);
    ASSERT_EQ(ids.j1939.pgn, 0);
}

static void test_diag_ids(void)
{
    ASSERT(vsoc_decode_is_diag_id(0x7DF, 0));
    ASSERT(vsoc_decode_is_diag_id(0x7E0, 0));
    ASSERT(vsoc_decode_is_diag_id(0x7E8, 0));
    ASSERT(vsoc_decode_is_diag_id(0x7EF, 0));
    ASSERT(!vsoc_decode_is_diag_id(0x7DE, 0));
    ASSERT(!vsoc_decode_is_diag_id(0x7F0, 0));
    ASSERT(!vsoc_decode_is_diag_id(0x123, 0));
    ASSERT(!vsoc_decode_is_diag_id(0x7E0, 1)); /* "000007E0" is a 29-bit ID */
    ASSERT(vsoc_decode_is_diag_id(0x18DA10F1, 1));
    ASSERT(vsoc_decode_is_diag_id(0x18DAF110, 1));
    ASSERT(vsoc_decode_is_diag_id(0x18DB33F1, 1));
    ASSERT(vsoc_decode_is_diag_id(0x18DAFFFF, 1));
    ASSERT(!vsoc_decode_is_diag_id(0x18DC33F1, 1));
    ASSERT(!vsoc_decode_is_diag_id(0x18D9FFFF, 1));
    ASSERT(!vsoc_decode_is_diag_id(0x1CDA10F1, 1)); /* another priority is another PGN */
    ASSERT(!vsoc_decode_is_diag_id(0x18FEF100, 1));
}

static void test_uds_negative_response(void)
{
    vsoc_event_t ev = decoded(0x7E8, 0, "037F273500000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS | VSOC_HAS_UDS_NRC);
    ASSERT_EQ(ev.uds.sid, 0x7F);
    ASSERT_EQ(ev.uds.req_sid, 0x27);
    ASSERT_EQ(ev.uds.nrc, 0x35);
    ASSERT_EQ(ev.derived & VSOC_HAS_J1939, 0);

    /* 7F with a sub-function service: still no sub (the byte is the NRC). */
    ev = decoded(0x7E8, 0, "037F107800000000");
    ASSERT_EQ(ev.uds.req_sid, 0x10);
    ASSERT_EQ(ev.uds.nrc, 0x78);
    ASSERT_EQ(ev.derived & VSOC_HAS_UDS_SUB, 0);

    /* Truncated by the ISO-TP length: the NRC is not there. */
    ev = decoded(0x7E8, 0, "027F273500000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    ASSERT_EQ(ev.uds.req_sid, 0x27);
    ASSERT_EQ(ev.uds.nrc, 0);

    /* Truncated by the frame. */
    ev = decoded(0x7E8, 0, "037F27");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    ASSERT_EQ(ev.uds.req_sid, 0x27);
    ev = decoded(0x7E8, 0, "037F");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    ASSERT_EQ(ev.uds.sid, 0x7F);
    ASSERT_EQ(ev.uds.req_sid, 0);
}

static void test_uds_subfunction(void)
{
    /* SecurityAccess requestSeed. */
    vsoc_event_t ev = decoded(0x7E0, 0, "0227010000000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS | VSOC_HAS_UDS_SUB);
    ASSERT_EQ(ev.uds.sid, 0x27);
    ASSERT_EQ(ev.uds.req_sid, 0x27);
    ASSERT_EQ(ev.uds.sub, 1);

    /* Its positive response (with the seed). */
    ev = decoded(0x7E8, 0, "0667011122334400");
    ASSERT_EQ(ev.uds.sid, 0x67);
    ASSERT_EQ(ev.uds.req_sid, 0x27);
    ASSERT_EQ(ev.uds.sub, 1);

    /* DiagnosticSessionControl extended with suppressPosRsp, sent functionally. */
    ev = decoded(0x7DF, 0, "0210830000000000");
    ASSERT_EQ(ev.uds.sid, 0x10);
    ASSERT_EQ(ev.uds.sub, 3);

    /* TesterPresent 3E 80. */
    ev = decoded(0x7E0, 0, "023E800000000000");
    ASSERT(ev.derived & VSOC_HAS_UDS_SUB);
    ASSERT_EQ(ev.uds.sub, 0);

    /* ECUReset, CommunicationControl, RoutineControl, ReadDTCInformation. */
    ASSERT_EQ(decoded(0x7E0, 0, "0211010000000000").uds.sub, 1);
    ASSERT_EQ(decoded(0x7E0, 0, "0328030100000000").uds.sub, 3);
    ASSERT_EQ(decoded(0x7E0, 0, "0431010203000000").uds.sub, 1);
    ASSERT_EQ(decoded(0x7E0, 0, "0319020800000000").uds.sub, 2);
    ASSERT_EQ(decoded(0x7E8, 0, "0351010000000000").uds.req_sid, 0x11);

    /* ControlDTCSetting 0x85 and its positive response 0xC5. */
    ev = decoded(0x7E0, 0, "0285020000000000");
    ASSERT_EQ(ev.uds.sid, 0x85);
    ASSERT_EQ(ev.uds.req_sid, 0x85);
    ASSERT_EQ(ev.uds.sub, 2);
    ev = decoded(0x7E8, 0, "02C5020000000000");
    ASSERT_EQ(ev.uds.sid, 0xC5);
    ASSERT_EQ(ev.uds.req_sid, 0x85);
    ASSERT_EQ(ev.uds.sub, 2);

    /* A service without a sub-function: no sub. */
    ev = decoded(0x7E0, 0, "0234000000000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);

    /* The sub byte lies beyond the single frame's length: not read. */
    ev = decoded(0x7E0, 0, "0127010000000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    ASSERT_EQ(ev.uds.sid, 0x27);
    ASSERT_EQ(ev.uds.sub, 0);
}

static void test_uds_did(void)
{
    vsoc_event_t ev = decoded(0x7E0, 0, "0322F19000000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS | VSOC_HAS_UDS_DID);
    ASSERT_EQ(ev.uds.sid, 0x22);
    ASSERT_EQ(ev.uds.req_sid, 0x22);
    ASSERT_EQ(ev.uds.did, 0xF190);

    ev = decoded(0x7E8, 0, "0662F19001020300");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS | VSOC_HAS_UDS_DID);
    ASSERT_EQ(ev.uds.sid, 0x62);
    ASSERT_EQ(ev.uds.req_sid, 0x22);
    ASSERT_EQ(ev.uds.did, 0xF190);

    /* Several DIDs: the first one. */
    ASSERT_EQ(decoded(0x7E0, 0, "0522F190F18C0000").uds.did, 0xF190);
    /* WriteDataByIdentifier and its response. */
    ASSERT_EQ(decoded(0x7E0, 0, "042EF19011000000").uds.did, 0xF190);
    ev = decoded(0x7E8, 0, "036EF19000000000");
    ASSERT_EQ(ev.uds.did, 0xF190);
    ASSERT_EQ(ev.uds.req_sid, 0x2E);

    /* Half a DID inside the ISO-TP length, or inside the frame: none. */
    ev = decoded(0x7E0, 0, "0222F19000000000");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    ev = decoded(0x7E0, 0, "0322F1");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    ASSERT_EQ(ev.uds.did, 0);
}

static void test_uds_isotp_framing(void)
{
    /* First frame: 12-bit length, SID after it. */
    vsoc_event_t ev = decoded(0x7E8, 0, "100A62F190010203");
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS | VSOC_HAS_UDS_DID);
    ASSERT_EQ(ev.uds.sid, 0x62);
    ASSERT_EQ(ev.uds.did, 0xF190);
    ev = decoded(0x7E8, 0, "1014590209AB"); /* ReadDTCInformation response */
    ASSERT_EQ(ev.uds.req_sid, 0x19);
    ASSERT_EQ(ev.uds.sub, 2);

    /* Consecutive and flow-control frames carry no service. */
    ASSERT_EQ(decoded(0x7E8, 0, "2101020304050607").derived & UDS_BITS, 0);
    ASSERT_EQ(decoded(0x7E0, 0, "3000000000000000").derived & UDS_BITS, 0);

    /* Single frame lengths 0 and 8..15 are invalid on classic CAN. */
    ASSERT_EQ(decoded(0x7E0, 0, "0022F19000000000").derived & UDS_BITS, 0);
    ASSERT_EQ(decoded(0x7E0, 0, "0822F19000000000").derived & UDS_BITS, 0);
    ASSERT_EQ(decoded(0x7E0, 0, "0F22F19000000000").derived & UDS_BITS, 0);
    /* A first frame too short to hold a SID. */
    ASSERT_EQ(decoded(0x7E8, 0, "100A").derived & UDS_BITS, 0);
    /* Empty frames. */
    ASSERT_EQ(decoded(0x7E8, 0, "").derived & UDS_BITS, 0);
    ASSERT_EQ(decoded(0x7E8, 0, "01").derived & UDS_BITS, 0);

    /* CAN FD single frame with the escape: length in byte 1. */
    ev = frame(0x7E0, 0, "000322F190CCCCCCCCCCCCCC");
    ev.can.fd = 1;
    vsoc_decode(&ev);
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS | VSOC_HAS_UDS_DID);
    ASSERT_EQ(ev.uds.sid, 0x22);
    ASSERT_EQ(ev.uds.did, 0xF190);
    /* ... and its length is respected. */
    ev = frame(0x7E0, 0, "000222F190CCCCCCCCCCCCCC");
    ev.can.fd = 1;
    vsoc_decode(&ev);
    ASSERT_EQ(ev.derived & UDS_BITS, VSOC_HAS_UDS);
    /* A CAN FD single frame with a short PCI works as on classic CAN. */
    ev = frame(0x7E8, 0, "037F2735");
    ev.can.fd = 1;
    vsoc_decode(&ev);
    ASSERT_EQ(ev.uds.nrc, 0x35);

    /* 29-bit normal fixed addressing: UDS and J1939 both. */
    ev = decoded(0x18DA10F1, 1, "0322F19000000000");
    ASSERT_EQ(ev.derived & (UDS_BITS | VSOC_HAS_J1939),
              VSOC_HAS_UDS | VSOC_HAS_UDS_DID | VSOC_HAS_J1939);
    ASSERT_EQ(ev.uds.did, 0xF190);
    ASSERT_EQ(ev.j1939.pgn, 0xDA00);
    ASSERT_EQ(ev.j1939.da, 0x10);
    ASSERT_EQ(ev.j1939.sa, 0xF1);
    ev = decoded(0x18DB33F1, 1, "023E800000000000");
    ASSERT_EQ(ev.uds.sid, 0x3E);
}

static void test_uds_only_diag(void)
{
    ASSERT_EQ(decoded(0x123, 0, "037F273500000000").derived & UDS_BITS, 0);
    ASSERT_EQ(decoded(0x7E0, 1, "0322F19000000000").derived & UDS_BITS, 0);
    ASSERT_EQ(decoded(0x18FEF100, 1, "0322F19000000000").derived & UDS_BITS, 0);

    /* A remote request has no payload to decode, whatever its data bytes hold. */
    vsoc_event_t ev = frame(0x7E0, 0, "0322F19000000000");
    ev.can.rtr = 1;
    vsoc_decode(&ev);
    ASSERT_EQ(ev.derived & UDS_BITS, 0);
}

static int speed_of(vsoc_event_t ev, double *kph)
{
    return vsoc_decode_speed(&ev, kph);
}

static void test_speed(void)
{
    double kph = -1;

    /* 0x3200 / 256 = 50 km/h. */
    vsoc_event_t ev = decoded(0x18FEF100, 1, "FF003200FF6800CF");
    ASSERT_EQ(vsoc_decode_speed(&ev, &kph), 1);
    ASSERT(kph == 50.0);

    /* Any source address. */
    ev = decoded(0x18FEF117, 1, "FF8025");
    ASSERT_EQ(vsoc_decode_speed(&ev, &kph), 1);
    ASSERT(kph == 0x2580 / 256.0);

    /* The frame from normal.log: 0 km/h is a valid reading. */
    ev = decoded(0x18FEF100, 1, "FF0000FCFF6800CF");
    ASSERT_EQ(vsoc_decode_speed(&ev, &kph), 1);
    ASSERT(kph == 0.0);

    /* The largest valid value, and the "not available" range. */
    ev = decoded(0x18FEF100, 1, "FFFFFA");
    ASSERT_EQ(vsoc_decode_speed(&ev, &kph), 1);
    ASSERT(kph == 0xFAFF / 256.0);
    kph = -1;
    ASSERT_EQ(speed_of(decoded(0x18FEF100, 1, "FF00FB"), &kph), 0);
    ASSERT_EQ(speed_of(decoded(0x18FEF100, 1, "FFFFFF"), &kph), 0);
    ASSERT(kph == -1);

    /* Too short, another PGN, an 11-bit frame, an undecoded event, a remote request. */
    ASSERT_EQ(speed_of(decoded(0x18FEF100, 1, "FF00"), &kph), 0);
    ASSERT_EQ(speed_of(decoded(0x18FEF000, 1, "FF0032"), &kph), 0);
    ASSERT_EQ(speed_of(decoded(0x7F1, 0, "FF0032"), &kph), 0);
    ev = frame(0x18FEF100, 1, "FF003200");
    ASSERT_EQ(vsoc_decode_speed(&ev, &kph), 0);
    ev = frame(0x18FEF100, 1, "FF003200");
    ev.can.rtr = 1;
    vsoc_decode(&ev);
    ASSERT_EQ(vsoc_decode_speed(&ev, &kph), 0);
    ASSERT(kph == -1);
}

int main(void)
{
    test_j1939_pdu2();
    test_j1939_pdu1();
    test_j1939_only_29bit();
    test_bits_reset();
    test_diag_ids();
    test_uds_negative_response();
    test_uds_subfunction();
    test_uds_did();
    test_uds_isotp_framing();
    test_uds_only_diag();
    test_speed();
    printf("test_decode: ok\n");
    return 0;
}
