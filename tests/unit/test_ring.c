/* test_ring.c: the service's single-producer, single-consumer ring (cli/ring.h): slots
 * published one by one and staged in batches arrive once each and in order, a full ring
 * refuses a claim, and a consumer asleep in cli_ring_wait is woken by a publication. */
#include "ring.h"
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static void test_single_thread(void)
{
    cli_ring_t r;
    ASSERT_EQ(cli_ring_init(&r, 3, sizeof(uint64_t)), -1); /* not a power of two */
    ASSERT_EQ(cli_ring_init(&r, 4, sizeof(uint64_t)), 0);
    ASSERT(cli_ring_peek(&r) == NULL);

    /* Staged slots are invisible until flushed, and count as taken. */
    for (uint64_t i = 0; i < 4; i++) {
        uint64_t *slot = cli_ring_claim(&r);
        ASSERT(slot != NULL);
        *slot = i;
        cli_ring_stage(&r);
        ASSERT(cli_ring_peek(&r) == NULL);
    }
    ASSERT(cli_ring_claim(&r) == NULL); /* full of staged slots */
    cli_ring_flush(&r);
    cli_ring_flush(&r); /* nothing more staged: no effect */
    for (uint64_t i = 0; i < 4; i++) {
        uint64_t *slot = cli_ring_peek(&r);
        ASSERT(slot != NULL);
        ASSERT_EQ(*slot, i);
        cli_ring_release(&r);
    }
    ASSERT(cli_ring_peek(&r) == NULL);

    /* A publish also publishes what was staged before it, in order. */
    *(uint64_t *)cli_ring_claim(&r) = 10;
    cli_ring_stage(&r);
    *(uint64_t *)cli_ring_claim(&r) = 11;
    cli_ring_publish(&r);
    ASSERT_EQ(*(uint64_t *)cli_ring_peek(&r), 10);
    cli_ring_release(&r);
    ASSERT_EQ(*(uint64_t *)cli_ring_peek(&r), 11);
    cli_ring_release(&r);
    ASSERT(cli_ring_peek(&r) == NULL);
    cli_ring_fini(&r);
    cli_ring_fini(&r); /* twice is harmless */
}

#define N 2000000u

typedef struct consumer {
    cli_ring_t *r;
    uint64_t got, sum, out_of_order, waits;
} consumer_t;

static void *consume(void *arg)
{
    consumer_t *c = arg;
    uint64_t expect = 0;
    while (expect < N) {
        uint64_t *slot = cli_ring_peek(c->r);
        if (!slot) {
            c->waits++;
            /* A long timeout: a lost wake-up shows as a test far slower than it should be,
             * and the total below as a count short of N if the producer is done. */
            cli_ring_wait(c->r, 1000);
            continue;
        }
        if (*slot != expect)
            c->out_of_order++;
        c->sum += *slot;
        expect = *slot + 1;
        c->got++;
        cli_ring_release(c->r);
    }
    return NULL;
}

/* Two threads: batches of random size staged then flushed, single publishes between, and a
 * ring small enough to be full often. */
static void test_two_threads(void)
{
    cli_ring_t r;
    ASSERT_EQ(cli_ring_init(&r, 64, sizeof(uint64_t)), 0);
    consumer_t c = {.r = &r};
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, consume, &c), 0);
    uint32_t rnd = 12345;
    uint64_t i = 0, full = 0;
    while (i < N) {
        rnd = rnd * 1103515245u + 12345u;
        unsigned batch = (rnd >> 16) % 100;
        for (unsigned k = 0; k <= batch && i < N; k++) {
            uint64_t *slot;
            while (!(slot = cli_ring_claim(&r))) {
                full++;
                cli_ring_flush(&r); /* what is staged must go before waiting for room */
                struct timespec ts = {0, 1000};
                nanosleep(&ts, NULL);
            }
            *slot = i++;
            if (batch % 7 == 0)
                cli_ring_publish(&r);
            else
                cli_ring_stage(&r);
        }
        cli_ring_flush(&r);
        if ((rnd >> 8) % 50 == 0) {
            /* Pause now and then so that the consumer goes to sleep and must be woken. */
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(c.got, N);
    ASSERT_EQ(c.out_of_order, 0);
    ASSERT_EQ(c.sum, (uint64_t)N * (N - 1) / 2);
    ASSERT(c.waits > 0); /* the sleeping path was exercised */
    ASSERT(full > 0);    /* and the full one */
    cli_ring_fini(&r);
}

int main(void)
{
    test_single_thread();
    test_two_threads();
    printf("test_ring: ok\n");
    return 0;
}
