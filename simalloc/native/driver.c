/*
 * simalloc native yardstick: hakmem's bench_random_mixed op stream on the process's malloc.
 *
 * Usage: driver CYCLES WS SEED [trace [MAX_OPS]]
 *
 * The identical stream as simalloc.workloads.mixed.MixedWorkload:
 *   - prefault (untimed): CYCLES/10 cycles with seed SEED+0xDEADBEEF (mod 2^32), NOT drained;
 *   - timed: CYCLES cycles with seed SEED, then the final drain (free every occupied slot in
 *     index order); the timed region includes the drain.
 *   One cycle: r = xorshift32(&state) (<<13, >>17, <<5); idx = r % WS; if slots[idx] is
 *   occupied free it, else malloc(16 + (r & 0x3FF)) and write its first byte.
 *
 * Output: one line,
 *   ops=N cycles=C drain=D prefault=P seconds=S ops_per_s=X max_rss_kb=K ru_maxrss_kb=R
 * where ops = cycles + drain frees (= MixedWorkload.total_ops), ops_per_s = ops / seconds,
 * max_rss_kb is the peak RSS of this image (VmHWM; see peak_rss_kb) and ru_maxrss_kb is
 * getrusage(RUSAGE_SELF) ru_maxrss as hakmem prints it.  Run it under
 * LD_PRELOAD=libjemalloc.so.2 (etc.) to measure another allocator.
 *
 * trace mode appends "trace_ops=T fnv1a=0x..." : a word-wise FNV-1a-64 over the first MAX_OPS
 * (default: all) timed rows (kind, slot, size) taken as three uint64 words, where kind is 0 for
 * malloc and 1 for free and a free's size is 0 (h ^= word; h *= 0x100000001b3 for each word,
 * starting from 0xcbf29ce484222325).  simalloc.native.stream_checksum computes the same over
 * the Python op stream.
 *
 * Exit status: 0 ok, 2 usage error, 3 out of memory.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

typedef struct {
    int on;
    uint64_t hash;
    uint64_t n;
    uint64_t max;
} trace_t;

static inline uint32_t xorshift32(uint32_t *state) {
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

static inline void trace_row(trace_t *t, uint64_t kind, uint64_t slot, uint64_t size) {
    if (!t->on || t->n >= t->max)
        return;
    uint64_t h = t->hash;
    h ^= kind;
    h *= FNV_PRIME;
    h ^= slot;
    h *= FNV_PRIME;
    h ^= size;
    h *= FNV_PRIME;
    t->hash = h;
    t->n++;
}

static uint32_t run_cycles(void **slots, uint64_t cycles, uint32_t ws, uint32_t state,
                           trace_t *t) {
    for (uint64_t i = 0; i < cycles; i++) {
        uint32_t r = xorshift32(&state);
        uint32_t idx = r % ws;
        if (slots[idx]) {
            free(slots[idx]);
            slots[idx] = NULL;
            trace_row(t, 1, idx, 0);
        } else {
            size_t size = 16 + (r & 0x3FF);
            unsigned char *p = malloc(size);
            if (!p) {
                fprintf(stderr, "driver: malloc(%zu) failed\n", size);
                exit(3);
            }
            p[0] = (unsigned char)r;
            slots[idx] = p;
            trace_row(t, 0, idx, size);
        }
    }
    return state;
}

static uint64_t drain(void **slots, uint32_t ws, trace_t *t) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < ws; i++) {
        if (slots[i]) {
            free(slots[i]);
            slots[i] = NULL;
            trace_row(t, 1, i, 0);
            n++;
        }
    }
    return n;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end = NULL;
    if (!s || !*s || *s == '-')
        return 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

/* Peak resident set of this process image in KiB: VmHWM from /proc/self/status (reset by
 * execve), else getrusage's ru_maxrss -- which Linux carries over from the pre-exec image (the
 * forked parent, e.g. a large Python process), so it is only a fallback. */
static long peak_rss_kb(long ru_maxrss_kb) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "VmHWM:", 6) == 0) {
                kb = strtol(line + 6, NULL, 10);
                break;
            }
        fclose(f);
    }
    return kb > 0 ? kb : ru_maxrss_kb;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    uint64_t cycles, ws64, seed64;
    trace_t t = {0, FNV_OFFSET, 0, UINT64_MAX};
    if (argc < 4 || argc > 6 || !parse_u64(argv[1], &cycles) || !parse_u64(argv[2], &ws64) ||
        !parse_u64(argv[3], &seed64) || ws64 == 0 || ws64 > UINT32_MAX) {
        fprintf(stderr, "usage: %s CYCLES WS SEED [trace [MAX_OPS]]  (WS in 1..2^32-1)\n",
                argv[0]);
        return 2;
    }
    if (argc >= 5) {
        if (strcmp(argv[4], "trace") != 0) {
            fprintf(stderr, "driver: 4th argument must be 'trace', got '%s'\n", argv[4]);
            return 2;
        }
        t.on = 1;
        if (argc == 6 && !parse_u64(argv[5], &t.max)) {
            fprintf(stderr, "driver: bad MAX_OPS '%s'\n", argv[5]);
            return 2;
        }
    }
    uint32_t ws = (uint32_t)ws64;
    uint32_t seed = (uint32_t)seed64;
    uint32_t warm_seed = (uint32_t)(seed64 + 0xDEADBEEFULL);
    if (seed == 0 || warm_seed == 0) {
        fprintf(stderr, "driver: seed %llu gives xorshift32 state 0 (a fixed point)\n",
                (unsigned long long)seed64);
        return 2;
    }
    void **slots = calloc(ws, sizeof(void *));
    if (!slots) {
        fprintf(stderr, "driver: cannot allocate %u slots\n", ws);
        return 3;
    }
    trace_t off = {0, 0, 0, 0};
    uint64_t prefault = cycles / 10;
    run_cycles(slots, prefault, ws, warm_seed, &off); /* untimed, not drained */

    double t0 = now_seconds();
    run_cycles(slots, cycles, ws, seed, &t);
    uint64_t drained = drain(slots, ws, &t);
    double dt = now_seconds() - t0;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t ops = cycles + drained;
    printf("ops=%llu cycles=%llu drain=%llu prefault=%llu seconds=%.9f ops_per_s=%.1f "
           "max_rss_kb=%ld ru_maxrss_kb=%ld",
           (unsigned long long)ops, (unsigned long long)cycles, (unsigned long long)drained,
           (unsigned long long)prefault, dt, dt > 0 ? (double)ops / dt : 0.0,
           peak_rss_kb(ru.ru_maxrss), ru.ru_maxrss);
    if (t.on)
        printf(" trace_ops=%llu fnv1a=0x%016llx", (unsigned long long)t.n,
               (unsigned long long)t.hash);
    printf("\n");
    free(slots);
    return 0;
}
