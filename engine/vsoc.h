/* vsoc.h: error codes, severity levels and small value types shared by every module.
 *
 * Conventions (see docs/design.md): functions return 0 or a negative VSOC_E* code;
 * constructors return NULL and fill an error out-parameter; every pointer parameter is
 * borrowed unless its comment says "taken". */
#ifndef VSOC_H
#define VSOC_H

#include <stddef.h>
#include <stdint.h>

#define VSOC_VERSION "0.1.0"

enum {
    VSOC_OK = 0,
    VSOC_ENOMEM = -1, /* allocation failed */
    VSOC_EINVAL = -2, /* invalid argument */
    VSOC_EPARSE = -3, /* malformed input */
    VSOC_EIO = -4,    /* read or write failed */
    VSOC_ENOENT = -5, /* not found */
    VSOC_ELIMIT = -6, /* a configured limit was reached */
};

/* Returns a static description of a VSOC_E* code. */
const char *vsoc_strerror(int code);

/* Rule levels; the numeric value is the OCSF severity_id. */
typedef enum {
    VSOC_LEVEL_INFORMATIONAL = 1,
    VSOC_LEVEL_LOW = 2,
    VSOC_LEVEL_MEDIUM = 3,
    VSOC_LEVEL_HIGH = 4,
    VSOC_LEVEL_CRITICAL = 5,
} vsoc_level_t;

/* Returns "informational".."critical", or NULL for an invalid level. */
const char *vsoc_level_name(vsoc_level_t level);
/* Returns the level for a name (case-sensitive), or 0 when unknown. */
vsoc_level_t vsoc_level_from_name(const char *name);

/* A borrowed, not necessarily NUL-terminated byte string. */
typedef struct vsoc_str {
    const char *p;
    size_t n;
} vsoc_str_t;

#endif
