/* ring.h: a bounded single-producer, single-consumer queue of fixed-size slots, the only
 * channel between the service's threads on the per-event path (docs/serve.md).
 *
 * One thread claims and publishes (slot by slot, or staged and flushed in batches), one
 * other thread peeks and releases; neither locks. Each
 * side keeps a cached copy of the other side's index, so a slot costs one acquire load only
 * when the cache says the ring looks full (producer) or empty (consumer). Slots are written
 * in place: claim returns the slot, publish makes it visible.
 *
 * A consumer that finds the ring empty may sleep in cli_ring_wait; the producer wakes it in
 * cli_ring_publish or cli_ring_flush only when it said it would sleep, so the mutex is taken
 * when a thread goes idle, never per slot. */
#ifndef VSOC_CLI_RING_H
#define VSOC_CLI_RING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cli_ring {
    _Alignas(64) _Atomic size_t head; /* next slot to read: written by the consumer */
    size_t cached_tail;               /* consumer's copy of tail */
    _Alignas(64) _Atomic size_t tail; /* next slot to read up to: written by the producer */
    size_t cached_head;               /* producer's copy of head */
    size_t wtail;                     /* producer's next slot to write (>= tail: staged) */
    _Alignas(64) size_t mask;
    size_t elem;
    unsigned char *buf;
    _Atomic int sleeping;             /* the consumer waits in cli_ring_wait */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} cli_ring_t;

/* Initialises a ring of cap slots (a power of two) of elem bytes. Returns 0 or -1 (ENOMEM). */
int cli_ring_init(cli_ring_t *r, size_t cap, size_t elem);
void cli_ring_fini(cli_ring_t *r);

/* Producer: the next free slot, or NULL when the ring is full. */
static inline void *cli_ring_claim(cli_ring_t *r)
{
    size_t t = r->wtail;
    if (t - r->cached_head > r->mask) {
        r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
        if (t - r->cached_head > r->mask)
            return NULL;
    }
    return r->buf + (t & r->mask) * r->elem;
}

/* Producer: makes the claimed slot, and any staged before it, visible to the consumer,
 * waking it if it sleeps. */
void cli_ring_publish(cli_ring_t *r);

/* Producer: keeps the claimed slot back until the next cli_ring_flush or cli_ring_publish,
 * so that a batch of slots costs one publication (one fenced store, at most one wake-up).
 * A staged slot counts as taken: claim returns NULL when staged slots fill the ring, and
 * the producer must flush before it waits for room. */
static inline void cli_ring_stage(cli_ring_t *r)
{
    r->wtail++;
}

/* Producer: publishes the staged slots, if any. */
void cli_ring_flush(cli_ring_t *r);

/* Consumer: the oldest published slot, or NULL when the ring is empty. */
static inline void *cli_ring_peek(cli_ring_t *r)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (h == r->cached_tail) {
        r->cached_tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == r->cached_tail)
            return NULL;
    }
    return r->buf + (h & r->mask) * r->elem;
}

/* Consumer: frees the slot cli_ring_peek returned. */
static inline void cli_ring_release(cli_ring_t *r)
{
    atomic_store_explicit(&r->head, atomic_load_explicit(&r->head, memory_order_relaxed) + 1,
                          memory_order_release);
}

/* Consumer: sleeps until a slot is published or timeout_ms passes. */
void cli_ring_wait(cli_ring_t *r, int timeout_ms);

#endif
