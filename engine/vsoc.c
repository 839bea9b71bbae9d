/* vsoc.c: error strings and level names. */
#include "vsoc.h"

#include <string.h>

const char *vsoc_strerror(int code)
{
    switch (code) {
    case VSOC_OK: return "success";
    case VSOC_ENOMEM: return "out of memory";
    case VSOC_EINVAL: return "invalid argument";
    case VSOC_EPARSE: return "malformed input";
    case VSOC_EIO: return "input/output error";
    case VSOC_ENOENT: return "not found";
    case VSOC_ELIMIT: return "limit reached";
    }
    return "unknown error";
}

static const char *const level_names[] = {NULL, "informational", "low", "medium", "high",
                                          "critical"};

const char *vsoc_level_name(vsoc_level_t level)
{
    if (level < VSOC_LEVEL_INFORMATIONAL || level > VSOC_LEVEL_CRITICAL)
        return NULL;
    return level_names[level];
}

vsoc_level_t vsoc_level_from_name(const char *name)
{
    for (int i = VSOC_LEVEL_INFORMATIONAL; i <= VSOC_LEVEL_CRITICAL; i++)
        if (strcmp(name, level_names[i]) == 0)
            return (vsoc_level_t)i;
    return (vsoc_level_t)0;
}
