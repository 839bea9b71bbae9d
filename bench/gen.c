/* gen.c: vsoc-gen, a synthetic in-vehicle traffic generator with attack injection.
 *
 * It writes a capture the replay reader accepts: candump -l ("log"), the spaced candump
 * layout of the reference captures ("spaced"), or IDS security events as JSON Lines ("jsonl").
 * The README demo sample, the end-to-end tests and the benchmarks are made with it; the
 * manual is docs/vsoc-gen.md.
 *
 * Invariants:
 * - Deterministic: the output is a pure function of the command line. The program has its
 *   own PRNG (xoshiro256** seeded through splitmix64), keeps time as integer microseconds,
 *   uses integer arithmetic for everything that reaches the output (no libm, no floating
 *   point whose rounding could differ between machines or compilers) and never reads a
 *   clock. samples/regen.sh --check relies on this.
 * - Lines come out in non-decreasing time order. Every source (one periodic message, the
 *   request/response pair, one attack) sits in a binary min-heap keyed by (next due time,
 *   source index); ties go to the lower index, so the order never depends on heap history.
 * - Attacks do not perturb normal traffic. Each attack draws from its own PRNG stream and
 *   the vehicle model advances only with normal frames, so the normal lines of an attacked
 *   capture are exactly the lines of the clean capture with the same seed and length: the
 *   attack lines are the ground truth.
 * - Depends on libc only (not on the engine library), so the samples can be regenerated
 *   with nothing but a C compiler.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GEN_VERSION "0.1.0"
#define GEN_DEFAULT_START 1764064800LL /* 2025-11-25T10:00:00Z */
#define GEN_DEFAULT_VIN "TESTVIN0000000001"
#define GEN_NEVER INT64_MAX
#define US_PER_S 1000000LL
#define US_PER_MS 1000LL

enum { EXIT_OK = 0, EXIT_IO = 1, EXIT_USAGE = 2 };

/* ------------------------------------------------------------------------------------------
 * PRNG: xoshiro256** (Blackman and Vigna), seeded with splitmix64. One stream per purpose,
 * derived from (seed, stream number), so adding a consumer never shifts another's numbers.
 * ---------------------------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* A number in [0, n) (n > 0), by multiply-shift; the bias (< n / 2^32) does not matter here. */
static inline uint32_t rng_below(rng_t *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* A number in [lo, hi]. */
static inline int32_t rng_range(rng_t *r, int32_t lo, int32_t hi)
{
    return lo + (int32_t)rng_below(r, (uint32_t)(hi - lo + 1));
}

/* PRNG streams. Attack i uses STREAM_ATTACK + i. */
enum {
    STREAM_TRAFFIC = 1, /* period jitter, payload noise, initial phases */
    STREAM_VEHICLE = 2, /* the drive cycle */
    STREAM_ATTACK = 100,
};

/* ------------------------------------------------------------------------------------------
 * Vehicle model: a truck on a drive cycle (cruise, decelerate, stop, accelerate, ...).
 * Integer units: speed in 1/256 km/h (the CCVS1 encoding), time in 10 ms steps.
 * ---------------------------------------------------------------------------------------- */

#define VEH_STEP_US (10 * US_PER_MS)
#define KMH(x) ((int32_t)(x) * 256)

typedef enum { PH_CRUISE, PH_ACCEL, PH_DECEL, PH_STOP } phase_t;

typedef struct vehicle {
    int64_t t_us;        /* time of the last step */
    int32_t speed;       /* 1/256 km/h */
    int32_t target;      /* 1/256 km/h */
    int32_t accel;       /* change of speed in the last step, 1/256 km/h per 10 ms */
    int32_t rate;        /* |acceleration| of the current phase, same unit */
    int32_t hold;        /* steps left in PH_CRUISE or PH_STOP */
    phase_t phase;
    uint32_t rpm;
    uint8_t gear;        /* 0 = neutral */
    uint8_t torque;      /* actual engine torque, % */
    uint8_t pedal;       /* accelerator pedal, % */
    uint8_t brake;       /* service brake demand, % */
    uint8_t retarder;    /* retarder torque, % */
    int32_t steer;       /* steering wheel angle, 0.1 degree, + = left */
    int32_t steer_goal;
    int32_t coolant;     /* 0.1 degC */
    uint64_t dist;       /* distance in 1/92160 m (speed units x steps) */
    uint64_t fuel;       /* fuel used in 1/3,600,000 L (0.1 L/h x steps) */
    uint32_t fuel_rate;  /* 0.1 L/h */
    rng_t rng;
} vehicle_t;

/* Lower edge of each gear of a 12-speed box, km/h. */
static const int32_t k_gear_lo[13] = {0, 0, 6, 10, 15, 20, 26, 33, 41, 50, 60, 70, 80};
/* Gear ratios x 1000. */
static const uint16_t k_gear_ratio[13] = {0,    14940, 11730, 9040, 7090, 5520, 4350,
                                          3400, 2650,  2060,  1580, 1230, 1000};

static void vehicle_derive(vehicle_t *v);

static void vehicle_init(vehicle_t *v, uint64_t seed)
{
    memset(v, 0, sizeof(*v));
    rng_seed(&v->rng, seed, STREAM_VEHICLE);
    /* Start cruising, so that even a short capture shows a moving vehicle. */
    v->phase = PH_CRUISE;
    v->target = KMH(rng_range(&v->rng, 55, 75));
    v->speed = v->target;
    v->hold = rng_range(&v->rng, 2500, 4000); /* 25..40 s */
    v->coolant = 820 + rng_range(&v->rng, 0, 30);
    v->steer_goal = 0;
    vehicle_derive(v);
}

static void vehicle_next_phase(vehicle_t *v)
{
    rng_t *r = &v->rng;
    switch (v->phase) {
    case PH_CRUISE:
        if (rng_below(r, 100) < 30) {
            v->target = 0;
        } else {
            v->target = KMH(rng_range(r, 25, 90));
        }
        v->phase = v->target < v->speed ? PH_DECEL : PH_ACCEL;
        v->rate = v->phase == PH_DECEL ? rng_range(r, 4, 12) : rng_range(r, 3, 9);
        break;
    case PH_ACCEL:
    case PH_DECEL:
        if (v->target == 0) {
            v->phase = PH_STOP;
            v->hold = rng_range(r, 500, 1500); /* 5..15 s */
        } else {
            v->phase = PH_CRUISE;
            v->hold = rng_range(r, 1000, 4000); /* 10..40 s */
        }
        break;
    case PH_STOP:
        v->target = KMH(rng_range(r, 30, 90));
        v->phase = PH_ACCEL;
        v->rate = rng_range(r, 3, 9);
        break;
    }
}

/* One 10 ms step of the drive cycle. */
static void vehicle_step(vehicle_t *v)
{
    rng_t *r = &v->rng;
    int32_t before = v->speed;

    switch (v->phase) {
    case PH_CRUISE:
        /* Wander around the set speed: +-1 km/h a second, followed at 0.3 km/h/s. */
        if (v->hold % 100 == 0) {
            int32_t t = v->target + rng_range(r, -256, 256);
            if (t < KMH(20))
                t = KMH(20);
            if (t > KMH(90))
                t = KMH(90);
            v->target = t;
        }
        if (v->speed < v->target)
            v->speed += v->target - v->speed < 1 ? v->target - v->speed : 1;
        else if (v->speed > v->target)
            v->speed -= v->speed - v->target < 1 ? v->speed - v->target : 1;
        if (--v->hold <= 0)
            vehicle_next_phase(v);
        break;
    case PH_ACCEL:
        v->speed += v->rate;
        if (v->speed >= v->target) {
            v->speed = v->target;
            vehicle_next_phase(v);
        }
        break;
    case PH_DECEL:
        v->speed -= v->rate;
        if (v->speed <= v->target) {
            v->speed = v->target;
            vehicle_next_phase(v);
        }
        break;
    case PH_STOP:
        v->speed = 0;
        if (--v->hold <= 0)
            vehicle_next_phase(v);
        break;
    }
    v->accel = v->speed - before;
    vehicle_derive(v);

    /* Steering: slow random targets, smaller at speed, followed at 1 degree per second. */
    if (rng_below(r, 400) == 0) {
        int32_t lim = (v->speed >> 8) > 50 ? 30 : 300;
        v->steer_goal = rng_range(r, -lim, lim);
    }
    if (v->steer < v->steer_goal)
        v->steer++;
    else if (v->steer > v->steer_goal)
        v->steer--;

    /* Coolant warms towards 88 degC; distance and fuel integrate. */
    if (v->coolant < 880 && rng_below(r, 200) == 0)
        v->coolant++;
    v->dist += (uint64_t)v->speed;
    v->fuel += v->fuel_rate;
}

/* Gear, engine speed, torque, pedals and fuel rate from the speed and the phase. */
static void vehicle_derive(vehicle_t *v)
{
    int32_t kmh = v->speed >> 8;
    if (v->speed == 0) {
        v->gear = v->phase == PH_STOP ? 0 : 1;
        v->rpm = 650;
    } else {
        uint8_t g = 1;
        while (g < 12 && kmh >= k_gear_lo[g + 1])
            g++;
        v->gear = g;
        int32_t lo = k_gear_lo[g], hi = g < 12 ? k_gear_lo[g + 1] : 100;
        int32_t span = (hi - lo) * 256;
        v->rpm = (uint32_t)(1000 + (int64_t)(v->speed - lo * 256) * 900 / span);
    }
    switch (v->phase) {
    case PH_ACCEL:
        v->torque = (uint8_t)(60 + v->rate * 3);
        v->pedal = (uint8_t)(50 + v->rate * 4);
        v->brake = 0;
        v->retarder = 0;
        break;
    case PH_CRUISE:
        v->torque = (uint8_t)(25 + kmh / 4);
        v->pedal = (uint8_t)(20 + kmh / 5);
        v->brake = 0;
        v->retarder = 0;
        break;
    case PH_DECEL:
        v->torque = 0;
        v->pedal = 0;
        v->brake = v->rate > 7 ? (uint8_t)(v->rate * 4) : 0;
        v->retarder = v->rate > 7 ? 0 : (uint8_t)(v->rate * 8);
        break;
    case PH_STOP:
        v->torque = 8;
        v->pedal = 0;
        v->brake = 15;
        v->retarder = 0;
        break;
    }
    v->fuel_rate = 30 + (uint32_t)v->torque * 4 + v->rpm / 100; /* 0.1 L/h */
}

/* Advances the model to time t (never backwards). */
static inline void vehicle_advance(vehicle_t *v, int64_t t)
{
    while (v->t_us + VEH_STEP_US <= t) {
        v->t_us += VEH_STEP_US;
        vehicle_step(v);
    }
}

static inline uint32_t vehicle_meters(const vehicle_t *v)
{
    return (uint32_t)(v->dist / 92160u);
}

/* Fuel level in 0.01 %: a 400 L tank at 75 % that is refilled every 280 L. */
static inline uint32_t vehicle_fuel_level(const vehicle_t *v)
{
    uint32_t used_l = (uint32_t)(v->fuel / 3600000u) % 280u;
    return 7500u - used_l * 25u;
}

/* ------------------------------------------------------------------------------------------
 * Frames.
 * ---------------------------------------------------------------------------------------- */

typedef struct frame {
    uint32_t id;
    uint8_t ext; /* 29-bit identifier */
    uint8_t dlc; /* 0..15; for classic CAN 9..15 still carry 8 bytes */
    uint8_t len; /* payload bytes, 0..8 */
    uint8_t data[8];
} frame_t;

static inline void put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void put_le32(uint8_t *p, uint32_t v)
{
    put_le16(p, v);
    put_le16(p + 2, v >> 16);
}

static inline void put_be16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint8_t clamp_u8(int32_t v)
{
    return (uint8_t)(v < 0 ? 0 : v > 250 ? 250 : v);
}

/* Rolling counter in the low nibble of byte 6, and byte 7 = (sum of bytes 0..6 and of the
 * identifier's two low bytes) mod 256: the usual "alive counter + checksum" of body and
 * chassis messages, which a receiver uses to reject stale or corrupted frames. */
static inline void seal_sum8(frame_t *f, uint8_t counter)
{
    f->data[6] = (uint8_t)((f->data[6] & 0xF0) | (counter & 0x0F));
    uint32_t sum = (f->id & 0xFF) + ((f->id >> 8) & 0xFF);
    for (int i = 0; i < 7; i++)
        sum += f->data[i];
    f->data[7] = (uint8_t)sum;
}

/* J1939-71 style message counter (low nibble of byte 7) and 4-bit checksum (high nibble)
 * over bytes 0..6, the counter and the four identifier bytes, as TSC1 and AEBS1 carry. */
static inline void seal_j1939(frame_t *f, uint8_t counter)
{
    uint32_t sum = counter & 0x0F;
    for (int i = 0; i < 7; i++)
        sum += f->data[i];
    for (int i = 0; i < 4; i++)
        sum += (f->id >> (8 * i)) & 0xFF;
    uint32_t cks = ((sum >> 4) + sum) & 0x0F;
    f->data[7] = (uint8_t)((cks << 4) | (counter & 0x0F));
}

/* ------------------------------------------------------------------------------------------
 * Normal traffic: the message table.
 * ---------------------------------------------------------------------------------------- */

typedef enum {
    PL_STATIC, /* the template, unchanged */
    PL_EEC1, PL_ETC1, PL_VDC2, PL_ETC8, PL_PROP_ENG, PL_PROP_TRN, PL_PROP_ABS, PL_HRW,
    PL_EEC3, PL_PROP_CAB, PL_PROP_BODY, PL_EEC2, PL_TCO1, PL_AEBS1, PL_TC1, PL_EGF1,
    PL_AT1IG1, PL_AT1OG1, PL_CCVS1, PL_ETC2, PL_EBC1, PL_EBC2, PL_LFE, PL_VD, PL_ERC1,
    PL_ACC1, PL_OEL, PL_EFLP1, PL_IC1, PL_ET1, PL_AMB, PL_VEP1, PL_VDHR, PL_DD, PL_TIRE,
    PL_LFC, PL_ET2, PL_TURBO, PL_BRAKES,
    PL_C_STEER, PL_C_WHEELS, PL_C_ENGINE, PL_C_BRAKE, PL_C_IMU, PL_C_THROTTLE, PL_C_GEAR,
    PL_C_BODY, PL_C_CLIMATE, PL_C_ODO,
} payload_t;

#define SEAL_NONE 0
#define SEAL_SUM8 1
#define SEAL_J1939 2

typedef struct msg_def {
    const char *name;
    uint32_t id;
    uint8_t ext;
    uint16_t period_ms;
    payload_t pl;
    uint8_t seal;
    uint8_t tmpl[8];
    const char *what;
} msg_def_t;

#define J(id) (id), 1
#define S(id) (id), 0

/* ~45 J1939 messages (29-bit; PGN and source address as a heavy truck carries them:
 * 0x00 engine, 0x03 transmission, 0x0B brakes/ESC, 0x17 instrument cluster, 0x21 body,
 * 0x29 retarder, 0x2A ACC/AEBS radar, 0x30 air, 0x31 cab, 0x33 tyres, 0x3D aftertreatment,
 * 0xEE tachograph) plus 10 11-bit gateway messages: about 2,000 frames/s together. */
static const msg_def_t k_msgs[] = {
    /* 10 ms */
    {"EEC1", J(0x0CF00400), 10, PL_EEC1, SEAL_NONE, {0xF1, 0x7D, 0x7D, 0, 0, 0x00, 0xF0, 0x7D},
     "Electronic Engine Controller 1: torque, engine speed (PGN 61444)"},
    {"ETC1", J(0x0CF00203), 10, PL_ETC1, SEAL_NONE, {0xC1, 0, 0, 0x00, 0xF7, 0, 0, 0x03},
     "Electronic Transmission Controller 1: shaft speeds (PGN 61442)"},
    {"VDC2", J(0x18F0090B), 10, PL_VDC2, SEAL_NONE, {0, 0, 0xE0, 0, 0, 0, 0, 0x7D},
     "Vehicle Dynamic Stability Control 2: steering, yaw, acceleration (PGN 61449)"},
    {"ETC8", J(0x0CF00C03), 10, PL_ETC8, SEAL_NONE, {0xE8, 0x03, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF},
     "Electronic Transmission Controller 8: converter ratio and input speed (PGN 61452)"},
    {"PropB-ENG", J(0x0CFF0000), 10, PL_PROP_ENG, SEAL_SUM8, {0, 0, 0, 0, 0, 0, 0x50, 0},
     "engine proprietary B (PGN 65280), counter and checksum"},
    {"PropB-TRN", J(0x0CFF0103), 10, PL_PROP_TRN, SEAL_SUM8, {0, 0, 0, 0, 0xFF, 0xFF, 0x30, 0},
     "transmission proprietary B (PGN 65281), counter and checksum"},
    {"PropB-ABS", J(0x18FF020B), 10, PL_PROP_ABS, SEAL_SUM8, {0, 0, 0, 0, 0xFF, 0xFF, 0x60, 0},
     "brake controller proprietary B (PGN 65282), counter and checksum"},
    /* 20 ms */
    {"HRW", J(0x18FE6E0B), 20, PL_HRW, SEAL_NONE, {0},
     "High Resolution Wheel Speed (PGN 65134)"},
    {"EEC3", J(0x18FEDF00), 20, PL_EEC3, SEAL_NONE,
     {0x8A, 0xA0, 0x28, 0x7D, 0x7D, 0xFF, 0xFF, 0xF5},
     "Electronic Engine Controller 3 (PGN 65247)"},
    {"PropB-CAB", J(0x18FF4831), 20, PL_PROP_CAB, SEAL_SUM8,
     {0x00, 0x04, 0x00, 0xFF, 0xFF, 0xFF, 0x10, 0},
     "cab controller proprietary B (PGN 65352), counter and checksum"},
    {"PropB-BODY", J(0x18FF5021), 20, PL_PROP_BODY, SEAL_SUM8,
     {0x00, 0x00, 0x01, 0x00, 0xFF, 0xFF, 0x20, 0},
     "body controller proprietary B (PGN 65360), counter and checksum"},
    /* 50 ms */
    {"EEC2", J(0x0CF00300), 50, PL_EEC2, SEAL_NONE, {0xF1, 0, 0, 0xFF, 0xFF, 0x0F, 0x86, 0xFF},
     "Electronic Engine Controller 2: accelerator pedal, load (PGN 61443)"},
    {"TCO1", J(0x0CFE6CEE), 50, PL_TCO1, SEAL_NONE, {0x03, 0x00, 0x00, 0xC1, 0x00, 0x00, 0, 0},
     "Tachograph: driver states, tachograph speed (PGN 65132)"},
    {"AEBS1", J(0x0CF02F2A), 50, PL_AEBS1, SEAL_J1939,
     {0xF3, 0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0},
     "Advanced Emergency Braking System 1 (PGN 61487), counter and checksum"},
    {"TC1", J(0x0C010305), 50, PL_TC1, SEAL_NONE, {0xFF, 0xFF, 0x7D, 0xFF, 0xFF, 0xF3, 0xFF, 0xFF},
     "Transmission Control 1 from the shift console 0x05 to the transmission (PGN 256)"},
    {"EGF1", J(0x0CF00A00), 50, PL_EGF1, SEAL_NONE, {0x00, 0x00, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF},
     "Engine Gas Flow Rate: inlet air mass flow (PGN 61450)"},
    {"AT1IG1", J(0x18F00E3D), 50, PL_AT1IG1, SEAL_NONE, {0, 0, 0xFF, 0xFF, 0x1F, 0x1F, 0xFF, 0xFF},
     "Aftertreatment 1 Intake Gas 1: NOx (PGN 61454)"},
    {"AT1OG1", J(0x18F00F3D), 50, PL_AT1OG1, SEAL_NONE, {0, 0, 0xFF, 0xFF, 0x1F, 0x1F, 0xFF, 0xFF},
     "Aftertreatment 1 Outlet Gas 1: NOx (PGN 61455)"},
    /* 100 ms */
    {"CCVS1", J(0x18FEF100), 100, PL_CCVS1, SEAL_NONE, {0xF3, 0, 0, 0xC0, 0x00, 0, 0x1F, 0xFF},
     "Cruise Control/Vehicle Speed 1: wheel-based speed, bytes 1-2 LE / 256 km/h (PGN 65265)"},
    {"ETC2", J(0x18F00503), 100, PL_ETC2, SEAL_NONE, {0, 0, 0, 0, 0x44, 0x20, 0x44, 0x20},
     "Electronic Transmission Controller 2: gears (PGN 61445)"},
    {"EBC1", J(0x18F0010B), 100, PL_EBC1, SEAL_NONE, {0xC0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Electronic Brake Controller 1: brake pedal (PGN 61441)"},
    {"EBC2", J(0x18FEBF0B), 100, PL_EBC2, SEAL_NONE, {0, 0, 0x7D, 0x7D, 0x7D, 0x7D, 0xFF, 0xFF},
     "Wheel Speed Information (PGN 65215)"},
    {"LFE", J(0x18FEF200), 100, PL_LFE, SEAL_NONE, {0, 0, 0, 0, 0x9A, 0x05, 0, 0xFF},
     "Fuel Economy (Liquid): fuel rate (PGN 65266)"},
    {"VD", J(0x18FEE000), 100, PL_VD, SEAL_NONE, {0},
     "Vehicle Distance (PGN 65248)"},
    {"ERC1", J(0x18F00029), 100, PL_ERC1, SEAL_NONE,
     {0xF0, 0x7D, 0x7D, 0xFF, 0xFF, 0xFF, 0x7D, 0xFF},
     "Electronic Retarder Controller 1 (PGN 61440)"},
    {"ACC1", J(0x18FE6F2A), 100, PL_ACC1, SEAL_NONE, {0, 0, 0, 0xF9, 0x00, 0xFA, 0xFF, 0xFF},
     "Adaptive Cruise Control 1 (PGN 65135)"},
    {"EBC5", J(0x18FDC40B), 100, PL_STATIC, SEAL_NONE,
     {0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Electronic Brake Controller 5 (PGN 64964)"},
    {"OEL", J(0x0CFDCC21), 100, PL_OEL, SEAL_NONE, {0xF0, 0xF0, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Operators External Light Controls: turn signal switch (PGN 64972)"},
    {"ETC7", J(0x18FE4A03), 100, PL_STATIC, SEAL_NONE,
     {0x03, 0x1F, 0x4F, 0xFF, 0xFF, 0xF3, 0xFF, 0xFF},
     "Electronic Transmission Controller 7 (PGN 65098)"},
    /* 500 ms */
    {"EFL/P1", J(0x18FEEF00), 500, PL_EFLP1, SEAL_NONE,
     {0x7D, 0xFF, 0xE1, 0, 0xFF, 0xFF, 0x32, 0xFA},
     "Engine Fluid Level/Pressure 1: oil pressure (PGN 65263)"},
    {"IC1", J(0x18FEF600), 500, PL_IC1, SEAL_NONE, {0x0A, 0, 0x55, 0x32, 0x10, 0, 0, 0xFF},
     "Inlet/Exhaust Conditions 1: boost, exhaust temperature (PGN 65270)"},
    /* 1 s */
    {"ET1", J(0x18FEEE00), 1000, PL_ET1, SEAL_NONE, {0, 0x4B, 0, 0, 0xFF, 0xFF, 0x55, 0xFF},
     "Engine Temperature 1: coolant, fuel, oil (PGN 65262)"},
    {"AMB", J(0x18FEF500), 1000, PL_AMB, SEAL_NONE, {0xC9, 0xD0, 0x24, 0, 0, 0x34, 0xFF, 0xFF},
     "Ambient Conditions (PGN 65269)"},
    {"VEP1", J(0x18FEF700), 1000, PL_VEP1, SEAL_NONE, {0x82, 0x28, 0x34, 0x02, 0, 0, 0, 0},
     "Vehicle Electrical Power 1: battery potential (PGN 65271)"},
    {"VDHR", J(0x18FEC1EE), 1000, PL_VDHR, SEAL_NONE, {0},
     "High Resolution Vehicle Distance (PGN 65217)"},
    {"DD", J(0x18FEFC17), 1000, PL_DD, SEAL_NONE, {0xC8, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Dash Display: fuel level (PGN 65276)"},
    {"DM1", J(0x18FECA00), 1000, PL_STATIC, SEAL_NONE,
     {0x00, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF},
     "Active Diagnostic Trouble Codes: none active (PGN 65226)"},
    {"CM1", J(0x18E0FF17), 1000, PL_STATIC, SEAL_NONE,
     {0x00, 0xC0, 0x24, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Cab Message 1 to all (PGN 57344)"},
    {"TIRE", J(0x18FEF433), 1000, PL_TIRE, SEAL_NONE, {0, 0, 0, 0, 0x00, 0xFF, 0xFF, 0xFF},
     "Tire Condition, one wheel per message in turn (PGN 65268)"},
    {"SHUTDN", J(0x18FEE400), 1000, PL_STATIC, SEAL_NONE,
     {0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Shutdown (PGN 65252)"},
    {"LFC", J(0x18FEE900), 1000, PL_LFC, SEAL_NONE, {0},
     "Fuel Consumption (Liquid) (PGN 65257)"},
    {"ET2", J(0x18FEA400), 1000, PL_ET2, SEAL_NONE, {0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF},
     "Engine Temperature 2: ECU temperature (PGN 65188)"},
    {"TC", J(0x18FEDD00), 1000, PL_TURBO, SEAL_NONE, {0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
     "Turbocharger: turbo speed (PGN 65245)"},
    {"B", J(0x18FEFA0B), 1000, PL_BRAKES, SEAL_NONE, {0, 0, 0, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF},
     "Brakes: application and air pressures (PGN 65274)"},
    {"AIR1", J(0x18FEAE30), 1000, PL_STATIC, SEAL_NONE,
     {0x7D, 0x7A, 0x7D, 0x7C, 0x78, 0x78, 0xFC, 0xFF},
     "Air Supply Pressure (PGN 65198)"},
    /* 11-bit gateway messages (passenger-car style: big-endian signals, counter, checksum) */
    {"STEER", S(0x110), 10, PL_C_STEER, SEAL_SUM8, {0, 0, 0, 0, 0x00, 0x00, 0x00, 0},
     "steering angle and rate, counter and checksum"},
    {"WHEELS", S(0x120), 10, PL_C_WHEELS, SEAL_SUM8, {0},
     "wheel speeds 0.01 km/h, counter and checksum"},
    {"ENGINE", S(0x130), 10, PL_C_ENGINE, SEAL_SUM8, {0},
     "engine speed, torque, pedal, coolant, counter and checksum"},
    {"BRAKE", S(0x140), 10, PL_C_BRAKE, SEAL_SUM8, {0},
     "brake pressure and switch, counter and checksum"},
    {"IMU", S(0x180), 10, PL_C_IMU, SEAL_SUM8, {0},
     "yaw rate, lateral and longitudinal acceleration, counter and checksum"},
    {"THROTTLE", S(0x1A0), 10, PL_C_THROTTLE, SEAL_SUM8, {0},
     "pedal and throttle position, counter and checksum"},
    {"GEAR", S(0x280), 10, PL_C_GEAR, SEAL_SUM8, {0},
     "gear and selector, counter and checksum"},
    {"BODY", S(0x2C0), 10, PL_C_BODY, SEAL_SUM8, {0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0},
     "doors, lights, wipers, indicators, counter and checksum"},
    {"CLIMATE", S(0x300), 50, PL_C_CLIMATE, SEAL_SUM8,
     {0x7B, 0x2A, 0x03, 0x01, 0x00, 0x00, 0x00, 0},
     "cabin climate, counter and checksum"},
    {"ODO", S(0x3E0), 100, PL_C_ODO, SEAL_NONE, {0},
     "odometer 0.1 km, fuel level, outside temperature"},
};

#undef J
#undef S

#define N_MSGS (sizeof(k_msgs) / sizeof(k_msgs[0]))

/* The one legitimate J1939 request: every 10 s the instrument cluster (0x17) asks the
 * engine (0x00) for its hours (PGN 65253) and the engine answers 8 ms later. */
#define HOURS_REQ_ID 0x18EA0017u
#define HOURS_ID 0x18FEE500u
#define HOURS_PERIOD_US (10 * US_PER_S)

#define ODOMETER_BASE_M 412345600u /* 412,345.6 km on the clock at the start */
#define FUEL_TOTAL_BASE_HL 1024600u /* 512,300 L in 0.5 L units */

/* Fills f with message m's payload at the vehicle's current state. noise is 16 random bits
 * for least-significant-bit jitter; counter is the message's own rolling counter. */
static void msg_fill(const msg_def_t *m, const vehicle_t *v, uint32_t noise, uint8_t counter,
                     frame_t *f)
{
    uint8_t *d = f->data;
    uint32_t n1 = noise & 0x3, n2 = (noise >> 2) & 0x3, n3 = (noise >> 4) & 0x7;
    int32_t kmh = v->speed >> 8;
    uint32_t rpm8 = v->rpm * 8 + n3;
    uint32_t out_rpm8 = (uint32_t)((int64_t)v->speed * 104 / 256);
    uint32_t meters = vehicle_meters(v);

    f->id = m->id;
    f->ext = m->ext;
    f->dlc = 8;
    f->len = 8;
    memcpy(d, m->tmpl, 8);

    switch (m->pl) {
    case PL_STATIC:
        break;
    case PL_EEC1:
        d[0] = (uint8_t)(0xF0 | (v->pedal ? 1 : 0));
        d[1] = (uint8_t)(125 + v->pedal * 8 / 10);
        d[2] = (uint8_t)(125 + v->torque);
        put_le16(d + 3, rpm8);
        d[7] = (uint8_t)(125 + v->torque);
        break;
    case PL_ETC1:
        d[0] = v->gear ? 0xC1 : 0xC0;
        put_le16(d + 1, out_rpm8 + (out_rpm8 ? n1 : 0));
        put_le16(d + 5, v->gear ? rpm8 : 0);
        break;
    case PL_VDC2: {
        int32_t yaw = (int32_t)((int64_t)v->speed * v->steer / 5150);
        int32_t lat = (int32_t)((int64_t)yaw * v->speed / 3688);
        put_le16(d, (uint32_t)(32127 + v->steer * 178722 / 100000));
        put_le16(d + 3, (uint32_t)(32112 + yaw + (int32_t)n1 - 1));
        put_le16(d + 5, (uint32_t)(32127 + lat + (int32_t)n2 - 1));
        d[7] = clamp_u8(125 + v->accel);
        break;
    }
    case PL_ETC8:
        put_le16(d + 2, v->gear ? rpm8 : 0);
        break;
    case PL_PROP_ENG:
        put_be16(d, v->rpm);
        d[2] = v->torque;
        d[3] = (uint8_t)(v->coolant / 10 + 40);
        put_be16(d + 4, 100 + (uint32_t)v->torque * 2 + n1);
        break;
    case PL_PROP_TRN:
        d[0] = v->gear;
        d[1] = (uint8_t)v->phase;
        put_be16(d + 2, out_rpm8 / 8);
        break;
    case PL_PROP_ABS:
        put_be16(d, (uint32_t)v->speed);
        d[2] = v->brake;
        d[3] = v->phase == PH_STOP ? 1 : 0;
        break;
    case PL_HRW:
        for (int i = 0; i < 4; i++) {
            uint32_t w = (uint32_t)v->speed;
            if (w)
                w += (noise >> (2 * i)) & 3;
            put_le16(d + 2 * i, w);
        }
        break;
    case PL_EEC3:
        d[0] = (uint8_t)(130 + v->rpm / 200);
        break;
    case PL_PROP_CAB:
        d[0] = v->phase == PH_STOP ? 0x01 : 0x00;
        d[2] = (uint8_t)(v->steer > 150 ? 1 : v->steer < -150 ? 2 : 0);
        break;
    case PL_PROP_BODY:
        d[0] = kmh > 0 ? 0x10 : 0x00;
        break;
    case PL_EEC2:
        d[0] = (uint8_t)(0xF0 | (v->pedal ? 0 : 1));
        d[1] = (uint8_t)(v->pedal * 5 / 2);
        d[2] = v->torque;
        break;
    case PL_TCO1:
        d[0] = kmh > 0 ? 0x03 : 0x01;
        d[3] = kmh > 0 ? 0xC1 : 0xC0;
        put_le16(d + 6, (uint32_t)v->speed);
        break;
    case PL_AEBS1:
        break;
    case PL_TC1:
        d[2] = (uint8_t)(125 + v->gear);
        break;
    case PL_EGF1:
        put_le16(d + 2, (200 + v->rpm * (20 + v->torque) / 60) * 20 + n3);
        break;
    case PL_AT1IG1:
        put_le16(d, (uint32_t)(300 + v->torque * 5 + 200) * 20 + n3);
        break;
    case PL_AT1OG1:
        put_le16(d, (uint32_t)(30 + v->torque / 2 + 200) * 20 + n3);
        break;
    case PL_CCVS1:
        d[0] = v->phase == PH_STOP ? 0xF7 : 0xF3;
        put_le16(d + 1, (uint32_t)v->speed);
        d[3] = v->brake ? 0xD0 : 0xC0;
        d[5] = (uint8_t)(v->phase == PH_CRUISE ? v->target >> 8 : 0);
        break;
    case PL_ETC2:
        d[0] = (uint8_t)(125 + v->gear);
        put_le16(d + 1, k_gear_ratio[v->gear]);
        d[3] = (uint8_t)(125 + v->gear);
        if (!v->gear) {
            d[4] = d[6] = 0x4E; /* "N " */
        }
        break;
    case PL_EBC1:
        d[1] = (uint8_t)(v->brake * 5 / 2);
        break;
    case PL_EBC2:
        put_le16(d, (uint32_t)v->speed);
        break;
    case PL_LFE: {
        uint32_t econ = v->fuel_rate ? (uint32_t)v->speed * 20 / v->fuel_rate : 0;
        put_le16(d, v->fuel_rate * 2 + n1);
        put_le16(d + 2, econ > 0xFAFF ? 0xFAFF : econ);
        d[6] = (uint8_t)(v->pedal * 5 / 2);
        break;
    }
    case PL_VD:
        put_le32(d, meters / 125);
        put_le32(d + 4, (ODOMETER_BASE_M + meters) / 125);
        break;
    case PL_ERC1:
        d[0] = (uint8_t)(0xF0 | (v->retarder ? 1 : 0));
        d[1] = (uint8_t)(125 - v->retarder);
        d[2] = (uint8_t)(125 - v->retarder);
        break;
    case PL_ACC1:
        d[0] = clamp_u8(kmh + 3 + (int32_t)n3);
        d[1] = (uint8_t)(50 + n3 * 2);
        d[2] = (uint8_t)(v->target >> 8);
        break;
    case PL_OEL:
        d[1] = (uint8_t)(0xF0 | (v->steer > 150 ? 1 : v->steer < -150 ? 2 : 0));
        break;
    case PL_EFLP1:
        d[3] = (uint8_t)((150 + v->rpm / 10) / 4);
        break;
    case PL_IC1:
        d[1] = v->torque;
        put_le16(d + 5, (uint32_t)(250 + v->torque * 2 + 273) * 32 + n3);
        break;
    case PL_ET1:
        d[0] = (uint8_t)(v->coolant / 10 + 40);
        put_le16(d + 2, (uint32_t)((v->coolant + 50) * 32 / 10 + 273 * 32));
        break;
    case PL_AMB:
        put_le16(d + 3, (12 + 273) * 32 + (noise & 0x1F));
        break;
    case PL_VEP1:
        put_le16(d + 4, 556 + n3);
        put_le16(d + 6, 556 + n3);
        break;
    case PL_VDHR:
        put_le32(d, (ODOMETER_BASE_M + meters) / 5);
        put_le32(d + 4, meters / 5);
        break;
    case PL_DD:
        d[1] = (uint8_t)(vehicle_fuel_level(v) / 40);
        break;
    case PL_TIRE: {
        static const uint8_t loc[6] = {0x00, 0x01, 0x10, 0x11, 0x12, 0x13};
        uint8_t w = loc[counter % 6];
        d[0] = w;
        d[1] = (uint8_t)((w < 0x10 ? 850 : 800) / 4 + n1);
        put_le16(d + 2, (uint32_t)(25 + kmh / 6 + 273) * 32 + n3);
        break;
    }
    case PL_LFC: {
        uint32_t half_l = (uint32_t)(v->fuel / 1800000u);
        put_le32(d, half_l);
        put_le32(d + 4, FUEL_TOTAL_BASE_HL + half_l);
        break;
    }
    case PL_ET2:
        put_le16(d + 2, (55 + 273) * 32 + n3);
        break;
    case PL_TURBO:
        put_le16(d + 1, (20000 + (uint32_t)v->torque * 800) / 4 + n3);
        break;
    case PL_BRAKES:
        d[0] = (uint8_t)(v->brake * 2);
        d[1] = (uint8_t)(125 - n1);
        d[2] = (uint8_t)(124 - n2);
        break;
    case PL_C_STEER:
        put_be16(d, (uint32_t)(uint16_t)(int16_t)v->steer);
        put_be16(d + 2, v->steer_goal > v->steer   ? 10u
                        : v->steer_goal < v->steer ? 0xFFF6u
                                                   : 0u);
        break;
    case PL_C_WHEELS: {
        uint32_t w = (uint32_t)((int64_t)v->speed * 100 / 256);
        put_be16(d, w ? w + n1 : 0);
        put_be16(d + 2, w ? w + n2 : 0);
        put_be16(d + 4, w);
        break;
    }
    case PL_C_ENGINE:
        put_be16(d, v->rpm + (n3 >> 1));
        d[2] = v->torque;
        d[3] = v->pedal;
        d[4] = (uint8_t)(v->coolant / 10 + 40);
        break;
    case PL_C_BRAKE:
        put_be16(d, (uint32_t)v->brake * 6 + (v->brake ? n1 : 0));
        d[2] = v->brake ? 1 : 0;
        break;
    case PL_C_IMU: {
        int32_t yaw = (int32_t)((int64_t)v->speed * v->steer / 5150);
        put_be16(d, (uint32_t)(uint16_t)(int16_t)(yaw * 2 + (int32_t)n1 - 1));
        int32_t lat = (int32_t)((int64_t)yaw * v->speed / 1800);
        put_be16(d + 2, (uint32_t)(uint16_t)(int16_t)(lat + (int32_t)n2 - 1));
        put_be16(d + 4, (uint32_t)(uint16_t)(int16_t)(v->accel * 11 + (int32_t)(n3 & 3) - 1));
        break;
    }
    case PL_C_THROTTLE:
        d[0] = (uint8_t)(v->pedal * 5 / 2);
        d[1] = (uint8_t)(v->pedal * 5 / 2 + (v->pedal ? n1 : 0));
        break;
    case PL_C_GEAR:
        d[0] = v->gear;
        d[1] = v->gear ? 0x44 : 0x4E; /* 'D' / 'N' */
        put_be16(d + 2, out_rpm8 / 8);
        break;
    case PL_C_BODY:
        d[3] = (uint8_t)(v->steer > 150 ? 1 : v->steer < -150 ? 2 : 0);
        break;
    case PL_C_CLIMATE:
        d[0] = (uint8_t)(0x7B + (n1 == 3 ? 1 : 0));
        break;
    case PL_C_ODO: {
        uint32_t tenth_km = (ODOMETER_BASE_M + meters) / 100;
        d[0] = (uint8_t)(tenth_km >> 24);
        d[1] = (uint8_t)(tenth_km >> 16);
        d[2] = (uint8_t)(tenth_km >> 8);
        d[3] = (uint8_t)tenth_km;
        d[4] = (uint8_t)(vehicle_fuel_level(v) / 100);
        d[5] = 12 + 40;
        break;
    }
    }

    if (m->seal == SEAL_SUM8)
        seal_sum8(f, counter);
    else if (m->seal == SEAL_J1939)
        seal_j1939(f, counter);
}

/* ------------------------------------------------------------------------------------------
 * Attacks.
 * ---------------------------------------------------------------------------------------- */

typedef enum {
    ATK_DOS, ATK_DOS11, ATK_FUZZ, ATK_UDS_BRUTEFORCE, ATK_UDS_SESSION, ATK_UDS_DOWNLOAD,
    ATK_REQUEST_OVERLOAD, ATK_ADDRESS_CLAIM, ATK_TSC1, ATK_BAD_DLC,
    ATK_SECOC_FAIL, ATK_FIREWALL, ATK_LOGIN, ATK_OPEN_PORT,
} attack_kind_t;

typedef struct attack_def {
    const char *name;
    attack_kind_t kind;
    int ids;           /* 1: an IDS (jsonl) attack, 0: a CAN attack */
    const char *what;  /* one line for --list-attacks */
    const char *rules; /* the rule family it should trigger */
} attack_def_t;

static const attack_def_t k_attacks[] = {
    {"dos", ATK_DOS, 0, "29-bit ID 00000000, data 8 x 00, every 0.5 ms",
     "can/: DoS, highest-priority ID flood (unknown ID, rate)"},
    {"dos11", ATK_DOS11, 0, "11-bit ID 000, data 8 x 00, every 0.5 ms",
     "can/: DoS, highest-priority ID flood (unknown ID, rate)"},
    {"fuzz", ATK_FUZZ, 0, "random 29-bit IDs, random DLC 0..8 and data, every 1 ms",
     "can/: fuzzing (many distinct unknown IDs: value_count)"},
    {"uds-bruteforce", ATK_UDS_BRUTEFORCE, 0,
     "SecurityAccess sendKey on 7E0 every 200 ms, 7F 27 35 on 7E8 5 ms later "
     "(last quarter 7F 27 36)",
     "uds/: SecurityAccess brute force (NRC 0x35/0x36)"},
    {"uds-session", ATK_UDS_SESSION, 0,
     "DiagnosticSessionControl 10 03 and ECUReset 11 01 on 7DF every 100 ms, answered on 7E8",
     "uds/: diagnostic session / ECU reset while driving"},
    {"uds-download", ATK_UDS_DOWNLOAD, 0,
     "RequestDownload 34 on 7E0, TransferData 36 first frames every 20 ms, RequestTransferExit 37",
     "uds/: firmware download (reflash)"},
    {"request-overload", ATK_REQUEST_OVERLOAD, 0,
     "J1939 Request (PGN 59904) 18EAxxF9 from SA F9, 3 bytes, every 1 ms",
     "j1939/: request overload"},
    {"address-claim", ATK_ADDRESS_CLAIM, 0,
     "J1939 Address Claimed (PGN 60928) 18EEFFxx, random SA and NAME, every 2 ms",
     "j1939/: address claim spoofing / storm"},
    {"tsc1", ATK_TSC1, 0,
     "J1939 TSC1 (PGN 0) 0C000027 from SA 27, engine speed request 3000 rpm, every 10 ms",
     "j1939/: TSC1 from an unexpected source address"},
    {"bad-dlc", ATK_BAD_DLC, 0,
     "11-bit ID 123, DLC 9..15 with 8 data bytes (log format only), every 20 ms",
     "can/: invalid DLC"},
    {"secoc-fail", ATK_SECOC_FAIL, 1, "secoc.verification_failed from BCM, 20 per second",
     "ids/: SecOC verification failures (spoofed frames)"},
    {"firewall", ATK_FIREWALL, 1, "firewall.drop from 203.0.113.7, random ports, 50 per second",
     "ids/: port scan / firewall drop storm"},
    {"login", ATK_LOGIN, 1, "auth.login_failed ssh root from 198.51.100.23, 2 per second",
     "ids/: SSH login brute force"},
    {"open-port", ATK_OPEN_PORT, 1, "net.listen TCU tcp/23 telnetd, once at START",
     "ids/: unexpected listening port (telnet)"},
};

#define N_ATTACKS (sizeof(k_attacks) / sizeof(k_attacks[0]))

/* IDS background events: rare and benign. */
typedef struct ids_bg_def {
    int64_t first_us;
    int64_t period_us;
    const char *json; /* fields after "type" */
} ids_bg_def_t;

static const ids_bg_def_t k_ids_bg[] = {
    {1000 * US_PER_MS, 60 * US_PER_S,
     "\"type\":\"net.listen\",\"ecu\":\"TCU\",\"port\":443,\"proto\":\"tcp\","
     "\"process\":\"telematicsd\""},
    {1001 * US_PER_MS, 60 * US_PER_S,
     "\"type\":\"net.listen\",\"ecu\":\"TCU\",\"port\":8883,\"proto\":\"tcp\","
     "\"process\":\"vsoc-agent\""},
    {20 * US_PER_S, 600 * US_PER_S,
     "\"type\":\"auth.login_ok\",\"ecu\":\"TCU\",\"service\":\"ssh\",\"user\":\"svc-ota\","
     "\"src_ip\":\"10.0.0.5\""},
};

#define N_IDS_BG (sizeof(k_ids_bg) / sizeof(k_ids_bg[0]))

/* ------------------------------------------------------------------------------------------
 * Sources and the heap.
 * ---------------------------------------------------------------------------------------- */

typedef enum { SRC_MSG, SRC_HOURS, SRC_ATTACK, SRC_IDS_BG } source_type_t;

typedef struct source {
    source_type_t type;
    uint32_t index;   /* into k_msgs, k_attacks or k_ids_bg */
    int64_t due;      /* next event time, us from the capture start; GEN_NEVER when done */
    int64_t start;    /* attack window [start, end) */
    int64_t end;
    int64_t cycle;    /* start of the current request/response cycle */
    uint32_t n;       /* events (cycles) so far */
    uint32_t total;   /* uds-bruteforce: planned cycles; secoc-fail: first freshness */
    uint32_t phase;   /* step inside a multi-frame cycle */
    uint8_t counter;  /* rolling counter / block sequence counter */
    uint8_t saved[8];
    rng_t rng;
} source_t;

typedef struct heap_entry {
    int64_t due;
    uint32_t src;
} heap_entry_t;

typedef struct heap {
    heap_entry_t *e;
    uint32_t n;
} heap_t;

static inline int heap_less(const heap_entry_t *a, const heap_entry_t *b)
{
    return a->due < b->due || (a->due == b->due && a->src < b->src);
}

static void heap_sift_down(heap_t *h, uint32_t i)
{
    heap_entry_t x = h->e[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && heap_less(&h->e[c + 1], &h->e[c]))
            c++;
        if (!heap_less(&h->e[c], &x))
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    h->e[i] = x;
}

static void heap_build(heap_t *h)
{
    for (uint32_t i = h->n / 2; i-- > 0;)
        heap_sift_down(h, i);
}

/* ------------------------------------------------------------------------------------------
 * Output: one large buffer, written with fwrite when nearly full.
 * ---------------------------------------------------------------------------------------- */

#define OUT_CAP (1u << 20)
#define OUT_SLACK 512u /* room for the longest line */

typedef enum { FMT_LOG, FMT_SPACED, FMT_JSONL } format_t;

typedef struct gen {
    /* options */
    format_t fmt;
    int64_t end_us;      /* GEN_NEVER without a time limit */
    uint64_t max_frames; /* 0 = no limit */
    uint64_t seed;
    int64_t start_epoch;
    const char *iface;
    size_t iface_len;
    const char *vin;
    const char *out_path;
    /* state */
    vehicle_t veh;
    rng_t traffic;
    source_t *src;
    uint32_t n_src;
    heap_t heap;
    int indent_sff; /* spaced: candump indents 11-bit IDs once it has seen a 29-bit one */
    uint64_t written;
    /* output */
    FILE *fp;
    char *buf;
    size_t len;
    int io_err;
    char json_prefix[128]; /* {"vin":"...","ts": */
    size_t json_prefix_len;
    /* the epoch seconds of the last line, as text (they change once a second) */
    int64_t sec_cached;
    char sec_text[24];
    size_t sec_len;
} gen_t;

static const char k_hex[] = "0123456789ABCDEF";
static char k_hex2[256][2];
static char k_dec2[100][2];

static void tables_init(void)
{
    for (int i = 0; i < 256; i++) {
        k_hex2[i][0] = k_hex[i >> 4];
        k_hex2[i][1] = k_hex[i & 15];
    }
    for (int i = 0; i < 100; i++) {
        k_dec2[i][0] = (char)('0' + i / 10);
        k_dec2[i][1] = (char)('0' + i % 10);
    }
}

static void out_flush(gen_t *g)
{
    if (g->len && !g->io_err) {
        if (fwrite(g->buf, 1, g->len, g->fp) != g->len)
            g->io_err = errno ? errno : EIO;
    }
    g->len = 0;
}

static inline char *out_reserve(gen_t *g)
{
    if (g->len > OUT_CAP - OUT_SLACK)
        out_flush(g);
    return g->buf + g->len;
}

static inline void out_commit(gen_t *g, const char *end)
{
    g->len = (size_t)(end - g->buf);
}

/* Unsigned decimal, at least min_digits wide (zero padded). */
static char *put_udec(char *p, uint64_t v, int min_digits)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < min_digits)
        tmp[n++] = '0';
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Exactly six digits. */
static inline char *put_usec6(char *p, uint32_t us)
{
    memcpy(p, k_dec2[us / 10000], 2);
    memcpy(p + 2, k_dec2[(us / 100) % 100], 2);
    memcpy(p + 4, k_dec2[us % 100], 2);
    return p + 6;
}

static inline char *put_id(char *p, const frame_t *f)
{
    if (f->ext) {
        memcpy(p, k_hex2[(f->id >> 24) & 0x1F], 2);
        memcpy(p + 2, k_hex2[(f->id >> 16) & 0xFF], 2);
        memcpy(p + 4, k_hex2[(f->id >> 8) & 0xFF], 2);
        memcpy(p + 6, k_hex2[f->id & 0xFF], 2);
        return p + 8;
    }
    p[0] = k_hex[(f->id >> 8) & 0x7];
    memcpy(p + 1, k_hex2[f->id & 0xFF], 2);
    return p + 3;
}

/* candump -l: "(1764064800.000000) can0 18FEF100#FFFFFFFFFFFFFFFF" with "_X" for DLC 9..15. */
static void write_log(gen_t *g, int64_t t, const frame_t *f)
{
    char *p = out_reserve(g);
    int64_t sec = g->start_epoch + t / US_PER_S;
    if (sec != g->sec_cached) {
        g->sec_cached = sec;
        g->sec_len = (size_t)(put_udec(g->sec_text, (uint64_t)sec, 1) - g->sec_text);
    }
    *p++ = '(';
    memcpy(p, g->sec_text, g->sec_len);
    p += g->sec_len;
    *p++ = '.';
    p = put_usec6(p, (uint32_t)(t % US_PER_S));
    *p++ = ')';
    *p++ = ' ';
    memcpy(p, g->iface, g->iface_len);
    p += g->iface_len;
    *p++ = ' ';
    p = put_id(p, f);
    *p++ = '#';
    for (int i = 0; i < f->len; i++) {
        memcpy(p, k_hex2[f->data[i]], 2);
        p += 2;
    }
    if (f->dlc > 8) {
        *p++ = '_';
        *p++ = k_hex[f->dlc];
    }
    *p++ = '\n';
    out_commit(g, p);
}

/* The spaced layout of candump -ta as in the reference captures, with the time relative to
 * the capture start: " (000.005001)  can0  18FEDF00   [8]  8A A0 28 7D 7D FF FF F5". */
static void write_spaced(gen_t *g, int64_t t, const frame_t *f)
{
    char *p = out_reserve(g);
    if (f->ext)
        g->indent_sff = 1;
    *p++ = ' ';
    *p++ = '(';
    p = put_udec(p, (uint64_t)(t / US_PER_S), 3);
    *p++ = '.';
    p = put_usec6(p, (uint32_t)(t % US_PER_S));
    memcpy(p, ")  ", 3);
    p += 3;
    memcpy(p, g->iface, g->iface_len);
    p += g->iface_len;
    *p++ = ' ';
    *p++ = ' ';
    if (!f->ext && g->indent_sff) {
        memcpy(p, "     ", 5);
        p += 5;
    }
    p = put_id(p, f);
    memcpy(p, "   [", 4);
    p += 4;
    *p++ = (char)('0' + f->len);
    *p++ = ']';
    *p++ = ' ';
    for (int i = 0; i < f->len; i++) {
        *p++ = ' ';
        memcpy(p, k_hex2[f->data[i]], 2);
        p += 2;
    }
    *p++ = '\n';
    out_commit(g, p);
}

/* Starts a JSON line: {"vin":"...","ts":1764064800.123, and returns where the rest goes. */
static char *json_begin(gen_t *g, int64_t t)
{
    char *p = out_reserve(g);
    int64_t ms = t / US_PER_MS;
    memcpy(p, g->json_prefix, g->json_prefix_len);
    p += g->json_prefix_len;
    p = put_udec(p, (uint64_t)(g->start_epoch + ms / 1000), 1);
    *p++ = '.';
    p = put_udec(p, (uint64_t)(ms % 1000), 3);
    *p++ = ',';
    return p;
}

static void json_end(gen_t *g, char *p)
{
    *p++ = '}';
    *p++ = '\n';
    out_commit(g, p);
}

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* ------------------------------------------------------------------------------------------
 * Emitting: each call produces the event due now and schedules the source's next one.
 * ---------------------------------------------------------------------------------------- */

static void set_frame(frame_t *f, uint32_t id, int ext, const char *hex)
{
    f->id = id;
    f->ext = (uint8_t)ext;
    f->len = (uint8_t)(strlen(hex) / 2);
    f->dlc = f->len;
    for (int i = 0; i < f->len; i++) {
        int hi = hex[2 * i], lo = hex[2 * i + 1];
        hi = hi <= '9' ? hi - '0' : hi - 'A' + 10;
        lo = lo <= '9' ? lo - '0' : lo - 'A' + 10;
        f->data[i] = (uint8_t)(hi << 4 | lo);
    }
}

static void rand_bytes(rng_t *r, uint8_t *d, int n)
{
    uint64_t x = rng_next(r);
    for (int i = 0; i < n; i++) {
        d[i] = (uint8_t)x;
        x >>= 8;
    }
}

/* Next cycle of a repeating attack, or GEN_NEVER once the window is over. */
static inline int64_t next_cycle(source_t *s, int64_t period)
{
    s->cycle += period;
    return s->cycle < s->end ? s->cycle : GEN_NEVER;
}

static void emit_attack_can(source_t *s, int64_t t, frame_t *f)
{
    rng_t *r = &s->rng;
    memset(f, 0, sizeof(*f));
    switch (k_attacks[s->index].kind) {
    case ATK_DOS:
    case ATK_DOS11:
        f->ext = k_attacks[s->index].kind == ATK_DOS;
        f->dlc = f->len = 8;
        s->due = next_cycle(s, 500);
        break;
    case ATK_FUZZ: {
        uint64_t x = rng_next(r);
        f->id = (uint32_t)x & 0x1FFFFFFFu;
        f->ext = 1;
        f->dlc = f->len = (uint8_t)((x >> 32) % 9);
        rand_bytes(r, f->data, f->len);
        s->due = next_cycle(s, 1000);
        break;
    }
    case ATK_UDS_BRUTEFORCE:
        if (s->phase == 0) {
            /* SecurityAccess sendKey (27 02) with a guessed 4-byte key. */
            set_frame(f, 0x7E0, 0, "0627020000000000");
            rand_bytes(r, f->data + 3, 4);
            s->phase = 1;
            s->due = t + 5 * US_PER_MS;
        } else {
            /* invalidKey, then exceededNumberOfAttempts for the last quarter. */
            uint32_t last = s->total / 4 ? s->total / 4 : 1;
            set_frame(f, 0x7E8, 0,
                      s->n + last >= s->total ? "037F273600000000" : "037F273500000000");
            s->n++;
            s->phase = 0;
            s->due = next_cycle(s, 200 * US_PER_MS);
        }
        break;
    case ATK_UDS_SESSION:
        switch (s->phase) {
        case 0:
            set_frame(f, 0x7DF, 0, "0210030000000000"); /* extendedDiagnosticSession */
            break;
        case 1:
            set_frame(f, 0x7E8, 0, "065003003201F400"); /* positive, P2 50 ms, P2* 5 s */
            break;
        case 2:
            set_frame(f, 0x7DF, 0, "0211010000000000"); /* ECUReset hardReset */
            break;
        default:
            set_frame(f, 0x7E8, 0, "0251010000000000");
            break;
        }
        if (++s->phase < 4) {
            s->due = t + 2 * US_PER_MS;
        } else {
            s->phase = 0;
            s->due = next_cycle(s, 100 * US_PER_MS);
        }
        break;
    case ATK_UDS_DOWNLOAD:
        switch (s->phase) {
        case 0: /* RequestDownload: ALFID 0x22, memory address 0x8000, size 0x1000 */
            set_frame(f, 0x7E0, 0, "0734002280001000");
            s->phase = 1;
            s->due = t + 5 * US_PER_MS;
            break;
        case 1: /* positive response, maxNumberOfBlockLength 0x0102 */
            set_frame(f, 0x7E8, 0, "0474200102000000");
            s->counter = 1;
            s->cycle += 20 * US_PER_MS;
            s->phase = s->cycle + 20 * US_PER_MS < s->end ? 2 : 6;
            s->due = s->cycle;
            break;
        case 2: /* TransferData first frame: 10 bytes = 36, block counter, 8 data bytes */
            set_frame(f, 0x7E0, 0, "100A360000000000");
            f->data[3] = s->counter;
            rand_bytes(r, f->data + 4, 4);
            rand_bytes(r, s->saved, 4);
            s->phase = 3;
            s->due = t + 1 * US_PER_MS;
            break;
        case 3: /* flow control from the ECU: continue, no block limit, no gap */
            set_frame(f, 0x7E8, 0, "3000000000000000");
            s->phase = 4;
            s->due = t + 1 * US_PER_MS;
            break;
        case 4: /* consecutive frame with the last 4 data bytes */
            set_frame(f, 0x7E0, 0, "2100000000000000");
            memcpy(f->data + 1, s->saved, 4);
            s->phase = 5;
            s->due = t + 3 * US_PER_MS;
            break;
        case 5: /* TransferData positive response */
            set_frame(f, 0x7E8, 0, "0276000000000000");
            f->data[2] = s->counter++;
            s->cycle += 20 * US_PER_MS;
            s->phase = s->cycle + 20 * US_PER_MS < s->end ? 2 : 6;
            s->due = s->cycle;
            break;
        case 6: /* RequestTransferExit */
            set_frame(f, 0x7E0, 0, "0137000000000000");
            s->phase = 7;
            s->due = t + 5 * US_PER_MS;
            break;
        default:
            set_frame(f, 0x7E8, 0, "0177000000000000");
            s->due = GEN_NEVER;
            break;
        }
        break;
    case ATK_REQUEST_OVERLOAD: {
        static const uint8_t da[6] = {0x00, 0x03, 0x0B, 0x17, 0x21, 0xFF};
        static const uint32_t pgn[5] = {65262, 65259, 65260, 65253, 65242};
        uint64_t x = rng_next(r);
        f->id = 0x18EA00F9u | (uint32_t)da[(x & 0xFFFF) % 6] << 8;
        f->ext = 1;
        f->dlc = f->len = 3;
        uint32_t p = pgn[((x >> 16) & 0xFFFF) % 5];
        f->data[0] = (uint8_t)p;
        f->data[1] = (uint8_t)(p >> 8);
        f->data[2] = (uint8_t)(p >> 16);
        s->due = next_cycle(s, 1 * US_PER_MS);
        break;
    }
    case ATK_ADDRESS_CLAIM: {
        uint32_t sa = rng_below(r, 0xFE);
        f->id = 0x18EEFF00u | sa;
        f->ext = 1;
        f->dlc = f->len = 8;
        rand_bytes(r, f->data, 8);
        s->due = next_cycle(s, 2 * US_PER_MS);
        break;
    }
    case ATK_TSC1:
        /* Speed control, highest priority, 3000 rpm (0x5DC0 x 0.125), torque n/a. */
        set_frame(f, 0x0C000027u, 1, "01C05DFFFFFFFF00");
        seal_j1939(f, s->counter++);
        s->due = next_cycle(s, 10 * US_PER_MS);
        break;
    case ATK_BAD_DLC:
        f->id = 0x123;
        f->len = 8;
        f->dlc = (uint8_t)(9 + rng_below(r, 7));
        rand_bytes(r, f->data, 8);
        s->due = next_cycle(s, 20 * US_PER_MS);
        break;
    default:
        s->due = GEN_NEVER;
        break;
    }
}

static void emit_can(gen_t *g, source_t *s, int64_t t, frame_t *f)
{
    switch (s->type) {
    case SRC_MSG: {
        const msg_def_t *m = &k_msgs[s->index];
        int64_t period = (int64_t)m->period_ms * US_PER_MS;
        uint64_t x = rng_next(&g->traffic);
        /* Interval jitter of +-2 % of the period. */
        int64_t j = (int64_t)((x >> 40) % 4001) - 2000;
        vehicle_advance(&g->veh, t);
        msg_fill(m, &g->veh, (uint32_t)x & 0xFFFF, s->counter++, f);
        s->due = t + period + period * j / 100000;
        break;
    }
    case SRC_HOURS:
        if (s->phase == 0) {
            set_frame(f, HOURS_REQ_ID, 1, "E5FE00");
            s->phase = 1;
            s->due = t + 8 * US_PER_MS;
        } else {
            /* Engine total hours, 0.05 h: 12,345.6 h at the start. */
            memset(f, 0, sizeof(*f));
            f->id = HOURS_ID;
            f->ext = 1;
            f->dlc = f->len = 8;
            put_le32(f->data, 246912u + (uint32_t)(t / (180 * US_PER_S)));
            put_le32(f->data + 4, 0xFFFFFFFFu);
            s->phase = 0;
            s->cycle += HOURS_PERIOD_US;
            s->due = s->cycle;
        }
        break;
    case SRC_ATTACK:
        emit_attack_can(s, t, f);
        break;
    default:
        s->due = GEN_NEVER;
        break;
    }
}

static void emit_ids(gen_t *g, source_t *s, int64_t t)
{
    char *p = json_begin(g, t);
    if (s->type == SRC_IDS_BG) {
        const ids_bg_def_t *b = &k_ids_bg[s->index];
        p = put_str(p, b->json);
        s->due = t + b->period_us;
        json_end(g, p);
        return;
    }
    rng_t *r = &s->rng;
    switch (k_attacks[s->index].kind) {
    case ATK_SECOC_FAIL:
        p = put_str(p, "\"type\":\"secoc.verification_failed\",\"ecu\":\"BCM\",\"can_id\":291,"
                       "\"freshness\":");
        p = put_udec(p, (uint64_t)s->total + s->n++, 1);
        s->due = next_cycle(s, (45 + rng_below(r, 11)) * US_PER_MS);
        break;
    case ATK_FIREWALL:
        p = put_str(p, "\"type\":\"firewall.drop\",\"iface\":\"eth0\",\"src_ip\":\"203.0.113.7\","
                       "\"dst_ip\":\"10.0.0.2\",\"dst_port\":");
        p = put_udec(p, 1 + rng_below(r, 65535), 1);
        p = put_str(p, ",\"proto\":\"tcp\"");
        s->due = next_cycle(s, (10 + rng_below(r, 21)) * US_PER_MS);
        break;
    case ATK_LOGIN:
        p = put_str(p, "\"type\":\"auth.login_failed\",\"ecu\":\"TCU\",\"service\":\"ssh\","
                       "\"user\":\"root\",\"src_ip\":\"198.51.100.23\"");
        s->due = next_cycle(s, (450 + rng_below(r, 101)) * US_PER_MS);
        break;
    case ATK_OPEN_PORT:
    default:
        p = put_str(p, "\"type\":\"net.listen\",\"ecu\":\"TCU\",\"port\":23,\"proto\":\"tcp\","
                       "\"process\":\"telnetd\"");
        s->due = GEN_NEVER;
        break;
    }
    json_end(g, p);
}

/* ------------------------------------------------------------------------------------------
 * Command line.
 * ---------------------------------------------------------------------------------------- */

typedef struct attack_opt {
    uint32_t kind;  /* index into k_attacks */
    int64_t start;  /* us */
    int64_t dur;    /* us */
    const char *text;
} attack_opt_t;

static void usage(FILE *fp)
{
    fputs("Usage: vsoc-gen [OPTION]...\n"
          "Write synthetic in-vehicle traffic (a J1939 truck bus) with optional attacks, to\n"
          "standard output or --out FILE. The output depends only on the options: the same\n"
          "command line gives byte-identical output on every machine.\n"
          "\n"
          "  --seconds S          capture length in seconds, decimals allowed (default 10)\n"
          "  --frames N           stop after N lines; with --seconds too, whichever comes first\n"
          "  --seed N             PRNG seed, decimal or 0x hex (default 1)\n"
          "  --format F           log     candump -l: (1764064800.000000) can0 18FEF100#FF...\n"
          "                       spaced  candump -ta layout, time from the capture start:\n"
          "                                (000.005001)  can0  18FEDF00   [8]  8A A0 ...\n"
          "                       jsonl   IDS security events, one JSON object a line\n"
          "                       (default log)\n"
          "  --start EPOCH        capture start, Unix seconds (default 1764064800,\n"
          "                       2025-11-25T10:00:00Z); log and jsonl only\n"
          "  --iface NAME         CAN interface name written on each line (default can0)\n"
          "  --vin VIN            vehicle of the jsonl events (default " GEN_DEFAULT_VIN ")\n"
          "  --attack KIND@START[+DURATION]\n"
          "                       inject an attack from START for DURATION seconds (relative to\n"
          "                       the capture start; default duration 2); repeatable\n"
          "  --out FILE           write to FILE instead of standard output\n"
          "  --list-attacks       list the attack kinds and exit\n"
          "  --list-messages      list the normal traffic's messages and exit\n"
          "  --help               show this help and exit\n"
          "  --version            show the version and exit\n"
          "\n"
          "Normal traffic: ~45 periodic J1939 messages and 10 11-bit messages, ~2,000 frames/s,\n"
          "period jitter +-2 %, signals that follow a drive cycle (CCVS1 speed 0..90 km/h).\n"
          "Attack frames never change the normal frames: the normal lines of an attacked capture\n"
          "equal the clean capture with the same seed.\n"
          "\n"
          "Examples:\n"
          "  vsoc-gen --seconds 20 --attack dos@5+1 --attack uds-bruteforce@10+3 > demo.log\n"
          "  vsoc-gen --frames 5000000 --format spaced --out big.log\n"
          "  vsoc-gen --format jsonl --seconds 60 --attack login@10+10 > ids.jsonl\n"
          "\n"
          "Exit status: 0 on success, 1 when the output cannot be written, 2 on a usage error.\n"
          "Manual: docs/vsoc-gen.md\n",
          fp);
}

static void list_attacks(void)
{
    printf("%-17s %-6s %s\n", "KIND", "FORMAT", "WHAT (and the rule family it should trigger)");
    for (size_t i = 0; i < N_ATTACKS; i++) {
        const attack_def_t *a = &k_attacks[i];
        printf("%-17s %-6s %s\n", a->name, a->ids ? "jsonl" : "can", a->what);
        printf("%-17s %-6s -> %s\n", "", "", a->rules);
    }
}

static void list_messages(void)
{
    uint32_t fps10 = 0; /* frames per 10 s, to print a rate with one decimal */
    printf("%-10s %-8s %-4s %9s  %s\n", "NAME", "ID", "BITS", "PERIOD", "WHAT");
    for (size_t i = 0; i < N_MSGS; i++) {
        const msg_def_t *m = &k_msgs[i];
        printf("%-10s %0*" PRIX32 "%*s %-4s %6u ms  %s\n", m->name, m->ext ? 8 : 3, m->id,
               m->ext ? 0 : 5, "", m->ext ? "29" : "11", (unsigned)m->period_ms, m->what);
        fps10 += 10000u / m->period_ms;
    }
    printf("%-10s %08" PRIX32 " %-4s %6s s   %s\n", "Request", HOURS_REQ_ID, "29", "10",
           "Request PGN 65253 (engine hours) from the cluster 0x17 to the engine, 3 bytes");
    printf("%-10s %08" PRIX32 " %-4s %6s s   %s\n", "HOURS", HOURS_ID, "29", "10",
           "Engine Hours, the engine's answer 8 ms after the request (PGN 65253)");
    printf("\n%zu periodic messages, %u.%u frames/s on average.\n", N_MSGS, fps10 / 10,
           fps10 % 10);
}

/* Parses a non-negative decimal number of seconds ("10", "0.5", "2.000001") into
 * microseconds. Returns 0, or -1 if text is not such a number. */
static int parse_seconds(const char *text, int64_t *us)
{
    const char *p = text;
    int64_t whole = 0, frac = 0;
    int digits = 0, fdigits = 0;
    while (*p >= '0' && *p <= '9') {
        if (whole > (INT64_MAX / US_PER_S - 10) / 10)
            return -1;
        whole = whole * 10 + (*p++ - '0');
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (fdigits == 6)
                return -1;
            frac = frac * 10 + (*p++ - '0');
            fdigits++;
        }
    }
    if (*p || (digits == 0 && fdigits == 0))
        return -1;
    while (fdigits++ < 6)
        frac *= 10;
    *us = whole * US_PER_S + frac;
    return 0;
}

/* Decimal, or hex with 0x (not octal: a seed of 010 is ten). */
static int parse_u64(const char *text, uint64_t *v)
{
    char *end;
    int hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
    if (!*text || *text == '-' || *text == '+' || (hex && !text[2]))
        return -1;
    errno = 0;
    unsigned long long x = strtoull(text, &end, hex ? 16 : 10);
    if (errno || *end)
        return -1;
    *v = x;
    return 0;
}

static int parse_attack(const char *text, attack_opt_t *a)
{
    const char *at = strchr(text, '@');
    if (!at) {
        fprintf(stderr, "vsoc-gen: --attack '%s': expected KIND@START[+DURATION]\n", text);
        return -1;
    }
    size_t klen = (size_t)(at - text);
    size_t i;
    for (i = 0; i < N_ATTACKS; i++) {
        if (strlen(k_attacks[i].name) == klen && !strncmp(k_attacks[i].name, text, klen))
            break;
    }
    if (i == N_ATTACKS) {
        fprintf(stderr,
                "vsoc-gen: --attack '%s': unknown attack kind '%.*s' (see --list-attacks)\n",
                text, (int)klen, text);
        return -1;
    }
    char num[64];
    const char *plus = strchr(at + 1, '+');
    size_t slen = plus ? (size_t)(plus - at - 1) : strlen(at + 1);
    if (slen >= sizeof(num)) {
        fprintf(stderr, "vsoc-gen: --attack '%s': START too long\n", text);
        return -1;
    }
    memcpy(num, at + 1, slen);
    num[slen] = '\0';
    if (parse_seconds(num, &a->start) < 0) {
        fprintf(stderr, "vsoc-gen: --attack '%s': START '%s' is not a number of seconds\n", text,
                num);
        return -1;
    }
    a->dur = 2 * US_PER_S;
    if (plus && (parse_seconds(plus + 1, &a->dur) < 0 || a->dur <= 0)) {
        fprintf(stderr, "vsoc-gen: --attack '%s': DURATION '%s' is not a positive number of "
                "seconds\n", text, plus + 1);
        return -1;
    }
    a->kind = (uint32_t)i;
    a->text = text;
    return 0;
}

/* Escapes s as the body of a JSON string into out (cap bytes). Returns -1 if it does not fit. */
static int json_escape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (n + 7 > cap)
            return -1;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            out[n++] = '\\';
            out[n++] = 'u';
            out[n++] = '0';
            out[n++] = '0';
            out[n++] = k_hex[c >> 4];
            out[n++] = k_hex[c & 15];
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return 0;
}

/* Creates the sources for the chosen format and attacks. Returns 0 or -1 (out of memory). */
static int sources_init(gen_t *g, const attack_opt_t *atk, uint32_t n_atk)
{
    uint32_t cap = (uint32_t)(N_MSGS + 1 + N_IDS_BG) + n_atk;
    g->src = calloc(cap, sizeof(*g->src));
    g->heap.e = calloc(cap, sizeof(*g->heap.e));
    if (!g->src || !g->heap.e)
        return -1;

    if (g->fmt == FMT_JSONL) {
        for (uint32_t i = 0; i < N_IDS_BG; i++) {
            source_t *s = &g->src[g->n_src++];
            s->type = SRC_IDS_BG;
            s->index = i;
            s->due = k_ids_bg[i].first_us;
        }
    } else {
        for (uint32_t i = 0; i < N_MSGS; i++) {
            source_t *s = &g->src[g->n_src++];
            s->type = SRC_MSG;
            s->index = i;
            /* A random phase inside the first period, as ECUs boot at different times. */
            s->due = rng_below(&g->traffic, k_msgs[i].period_ms * 1000u);
            s->counter = (uint8_t)rng_below(&g->traffic, 16);
        }
        source_t *h = &g->src[g->n_src++];
        h->type = SRC_HOURS;
        h->cycle = h->due = 3 * US_PER_S + 250 * US_PER_MS;
    }

    for (uint32_t i = 0; i < n_atk; i++) {
        const attack_def_t *d = &k_attacks[atk[i].kind];
        if (d->kind == ATK_BAD_DLC && g->fmt == FMT_SPACED) {
            fprintf(stderr, "vsoc-gen: warning: --attack %s skipped: the spaced format cannot "
                    "show a DLC above 8 (use --format log)\n", atk[i].text);
            continue;
        }
        source_t *s = &g->src[g->n_src++];
        s->type = SRC_ATTACK;
        s->index = atk[i].kind;
        s->start = s->cycle = s->due = atk[i].start;
        s->end = atk[i].start + atk[i].dur;
        rng_seed(&s->rng, g->seed, STREAM_ATTACK + i);
        if (d->kind == ATK_UDS_BRUTEFORCE)
            s->total = (uint32_t)((atk[i].dur + 200 * US_PER_MS - 1) / (200 * US_PER_MS));
        else if (d->kind == ATK_SECOC_FAIL)
            s->total = 4096 + rng_below(&s->rng, 60000); /* first freshness value */
        else if (d->kind == ATK_TSC1)
            s->counter = (uint8_t)rng_below(&s->rng, 16);
    }

    g->heap.n = g->n_src;
    for (uint32_t i = 0; i < g->n_src; i++) {
        g->heap.e[i].due = g->src[i].due;
        g->heap.e[i].src = i;
    }
    heap_build(&g->heap);
    return 0;
}

static void run(gen_t *g)
{
    heap_t *h = &g->heap;
    frame_t f;
    while (h->n) {
        int64_t t = h->e[0].due;
        if (t >= g->end_us || (g->max_frames && g->written >= g->max_frames))
            break;
        source_t *s = &g->src[h->e[0].src];
        if (g->fmt == FMT_JSONL) {
            emit_ids(g, s, t);
        } else {
            emit_can(g, s, t, &f);
            if (g->fmt == FMT_LOG)
                write_log(g, t, &f);
            else
                write_spaced(g, t, &f);
        }
        g->written++;
        if (s->due == GEN_NEVER) {
            h->e[0] = h->e[--h->n];
        } else {
            h->e[0].due = s->due;
        }
        if (h->n)
            heap_sift_down(h, 0);
    }
    out_flush(g);
}

int main(int argc, char **argv)
{
    gen_t g;
    memset(&g, 0, sizeof(g));
    g.fmt = FMT_LOG;
    g.seed = 1;
    g.start_epoch = GEN_DEFAULT_START;
    g.iface = "can0";
    g.vin = GEN_DEFAULT_VIN;
    g.sec_cached = -1;
    int64_t seconds_us = -1;
    attack_opt_t *atk = calloc((size_t)argc + 1, sizeof(*atk));
    uint32_t n_atk = 0;
    int rc = EXIT_USAGE;

    if (!atk) {
        fputs("vsoc-gen: out of memory\n", stderr);
        return EXIT_IO;
    }
    tables_init();

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        /* Options that take a value accept "--opt VALUE" and "--opt=VALUE". */
        static const char *const with_value[] = {"--seconds", "--frames", "--seed", "--format",
                                                  "--start", "--iface", "--vin", "--attack",
                                                  "--out"};
        char name[32];
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        if (nlen >= sizeof(name))
            nlen = sizeof(name) - 1;
        memcpy(name, a, nlen);
        name[nlen] = '\0';
        int takes = 0;
        for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++)
            if (!strcmp(name, with_value[k]))
                takes = 1;
        if (takes) {
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                fprintf(stderr, "vsoc-gen: %s needs a value (see --help)\n", name);
                goto out;
            }
        }

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = EXIT_OK;
            goto out;
        } else if (!strcmp(a, "--version")) {
            puts("vsoc-gen " GEN_VERSION);
            rc = EXIT_OK;
            goto out;
        } else if (!strcmp(a, "--list-attacks")) {
            list_attacks();
            rc = EXIT_OK;
            goto out;
        } else if (!strcmp(a, "--list-messages")) {
            list_messages();
            rc = EXIT_OK;
            goto out;
        } else if (!strcmp(name, "--seconds")) {
            if (parse_seconds(val, &seconds_us) < 0 || seconds_us <= 0) {
                fprintf(stderr, "vsoc-gen: --seconds '%s': expected a positive number\n", val);
                goto out;
            }
        } else if (!strcmp(name, "--frames")) {
            if (parse_u64(val, &g.max_frames) < 0 || g.max_frames == 0) {
                fprintf(stderr, "vsoc-gen: --frames '%s': expected a positive integer\n", val);
                goto out;
            }
        } else if (!strcmp(name, "--seed")) {
            if (parse_u64(val, &g.seed) < 0) {
                fprintf(stderr, "vsoc-gen: --seed '%s': expected an unsigned integer\n", val);
                goto out;
            }
        } else if (!strcmp(name, "--format")) {
            if (!strcmp(val, "log"))
                g.fmt = FMT_LOG;
            else if (!strcmp(val, "spaced"))
                g.fmt = FMT_SPACED;
            else if (!strcmp(val, "jsonl"))
                g.fmt = FMT_JSONL;
            else {
                fprintf(stderr, "vsoc-gen: --format '%s': expected log, spaced or jsonl\n", val);
                goto out;
            }
        } else if (!strcmp(name, "--start")) {
            uint64_t e;
            if (parse_u64(val, &e) < 0 || e > 9999999999ULL) {
                fprintf(stderr, "vsoc-gen: --start '%s': expected Unix seconds\n", val);
                goto out;
            }
            g.start_epoch = (int64_t)e;
        } else if (!strcmp(name, "--iface")) {
            size_t n = strlen(val);
            if (n == 0 || n > 15 || strpbrk(val, " \t\r\n#()[]")) {
                fprintf(stderr, "vsoc-gen: --iface '%s': expected 1..15 characters without "
                        "spaces or #()[]\n", val);
                goto out;
            }
            g.iface = val;
        } else if (!strcmp(name, "--vin")) {
            if (!*val || strlen(val) > 64) {
                fprintf(stderr, "vsoc-gen: --vin '%s': expected 1..64 characters\n", val);
                goto out;
            }
            g.vin = val;
        } else if (!strcmp(name, "--attack")) {
            if (parse_attack(val, &atk[n_atk]) < 0)
                goto out;
            n_atk++;
        } else if (!strcmp(name, "--out")) {
            g.out_path = val;
        } else {
            fprintf(stderr, "vsoc-gen: unknown option '%s' (see --help)\n", a);
            goto out;
        }
    }

    for (uint32_t i = 0; i < n_atk; i++) {
        const attack_def_t *d = &k_attacks[atk[i].kind];
        if (d->ids != (g.fmt == FMT_JSONL)) {
            fprintf(stderr, "vsoc-gen: --attack %s: a %s attack needs %s\n", atk[i].text,
                    d->ids ? "jsonl (IDS event)" : "CAN",
                    d->ids ? "--format jsonl" : "--format log or spaced");
            goto out;
        }
    }
    if (seconds_us < 0 && !g.max_frames)
        seconds_us = 10 * US_PER_S;
    g.end_us = seconds_us < 0 ? GEN_NEVER : seconds_us;
    for (uint32_t i = 0; i < n_atk; i++) {
        if (atk[i].start >= g.end_us)
            fprintf(stderr, "vsoc-gen: warning: --attack %s starts after the capture ends\n",
                    atk[i].text);
    }

    {
        char esc[64 * 6 + 1];
        if (json_escape(g.vin, esc, sizeof(esc)) < 0 ||
            strlen(esc) + 32 > sizeof(g.json_prefix)) {
            fprintf(stderr, "vsoc-gen: --vin '%s': too long once escaped\n", g.vin);
            goto out;
        }
        g.json_prefix_len = (size_t)snprintf(g.json_prefix, sizeof(g.json_prefix),
                                             "{\"vin\":\"%s\",\"ts\":", esc);
    }
    g.iface_len = strlen(g.iface);

    rc = EXIT_IO;
    vehicle_init(&g.veh, g.seed);
    rng_seed(&g.traffic, g.seed, STREAM_TRAFFIC);
    g.buf = malloc(OUT_CAP);
    if (!g.buf || sources_init(&g, atk, n_atk) < 0) {
        fputs("vsoc-gen: out of memory\n", stderr);
        goto out;
    }
    if (g.out_path) {
        g.fp = fopen(g.out_path, "wb");
        if (!g.fp) {
            fprintf(stderr, "vsoc-gen: cannot open '%s': %s\n", g.out_path, strerror(errno));
            goto out;
        }
    } else {
        g.fp = stdout;
    }

    errno = 0;
    run(&g);
    if (fflush(g.fp) != 0 && !g.io_err)
        g.io_err = errno ? errno : EIO;
    if (g.fp != stdout && fclose(g.fp) != 0 && !g.io_err)
        g.io_err = errno ? errno : EIO;
    if (g.io_err) {
        fprintf(stderr, "vsoc-gen: cannot write '%s': %s\n",
                g.out_path ? g.out_path : "standard output", strerror(g.io_err));
        goto out;
    }
    rc = EXIT_OK;

out:
    free(g.buf);
    free(g.src);
    free(g.heap.e);
    free(atk);
    return rc;
}
