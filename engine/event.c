/* event.c: event helpers. */
#include "event.h"

#include <string.h>

void vsoc_event_clear(vsoc_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->label = -1;
    ev->obs_byte = -1;
    ev->obs_period_ms = -1;
}
