/*
 * simalloc native yardstick: hakmem's bench_random_mixed op stream on the process's malloc.
 *
 * Usage: driver CYCLES WS SEED [trace [MAX_OPS]]
 *        driver file PATH [TIMED_FROM [OUT]]
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
 * file mode replays an op-stream file -- the same rows simalloc's Heap.replay consumes: raw
 * little-endian int64 rows (kind, slot, size), kind 0 malloc, 1 free, 2 realloc, 3 idle (simalloc
 * writes them with simalloc.native.opfile.write_opfile).  An idle row sleeps SIZE nanoseconds
 * (nanosleep; its slot is ignored), so the allocator's background threads (jemalloc with
 * MALLOC_CONF=background_thread:true, tcmalloc's background release) act while the program is
 * idle; the sleep is excluded from the timed seconds and idle rows are not counted as ops.  Rows before TIMED_FROM (default 0)
 * are the untimed warm-up.  A malloc / realloc writes size & 0xFF as the block's first byte
 * (Heap.replay's rule); a free of an empty slot and a realloc of one behave as free(NULL) and
 * malloc.  The file is streamed through a static buffer with read(2) and the slots array is
 * mmap'ed, so the allocator under test sees only the stream's calls and neither the rows nor
 * the reads land in its heap; only the op loops are timed.  The phases are marked for a
 * syscall tracer with lseek(-1, 0x5A11D000 + k, SEEK_SET) (fails with EBADF): k = 0 before
 * the warm-up, 1 before the timed part, 2 after it.  Output, on stdout (in OUT if given):
 *   ops=N warmup_ops=W n_slots=S seconds=S ops_per_s=X max_rss_kb=K ru_maxrss_kb=R
 *   rss_kb=F rss_anon_kb=A base_rss_kb=B idle_rows=I idle_s=T
 * (I = idle rows of the timed part, T = seconds slept in idle rows, warm-up included)
 * with max_rss_kb = VmHWM, rss_kb / rss_anon_kb = VmRSS / RssAnon right after the last op,
 * base_rss_kb = VmRSS before the first op.
 *
 * Exit status: 0 ok, 2 usage error or bad stream file, 3 out of memory.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

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

/* ------------------------------------------------------------------ file mode */
#define MARK_BASE 0x5A11D000L
#define CHUNK_ROWS 4096

static int64_t rowbuf[CHUNK_ROWS * 3]; /* static: the rows never touch the allocator */
static char statbuf[8192];

static void mark(long k) { (void)lseek(-1, (off_t)(MARK_BASE + k), SEEK_SET); }

/* VmHWM, VmRSS and RssAnon (KiB) from /proc/self/status, read with open/read into a static
 * buffer (stdio would call malloc); -1 where unavailable. */
static void status_kb(long *hwm, long *rss, long *anon) {
    *hwm = *rss = *anon = -1;
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        return;
    ssize_t n = read(fd, statbuf, sizeof statbuf - 1);
    close(fd);
    if (n <= 0)
        return;
    statbuf[n] = 0;
    char *p;
    if ((p = strstr(statbuf, "VmHWM:")))
        *hwm = strtol(p + 6, NULL, 10);
    if ((p = strstr(statbuf, "VmRSS:")))
        *rss = strtol(p + 6, NULL, 10);
    if ((p = strstr(statbuf, "RssAnon:")))
        *anon = strtol(p + 8, NULL, 10);
}

/* Read up to CHUNK_ROWS whole rows into rowbuf; returns the rows read, -1 on error. */
static long read_rows(int fd) {
    size_t want = sizeof rowbuf, got = 0;
    char *dst = (char *)rowbuf;
    while (got < want) {
        ssize_t n = read(fd, dst + got, want - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got % (3 * sizeof(int64_t)))
        return -1; /* a truncated row */
    return (long)(got / (3 * sizeof(int64_t)));
}

static double slept_seconds; /* time spent in idle rows (excluded from the timed seconds) */

/* An idle row: sleep ns nanoseconds (resumed after a signal). */
static void idle_ns(int64_t ns) {
    double s0 = now_seconds();
    struct timespec req = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)}, rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
    slept_seconds += now_seconds() - s0;
}

static void apply_rows(void **slots, const int64_t *r, long n) {
    for (long i = 0; i < n; i++, r += 3) {
        int64_t kind = r[0], slot = r[1];
        size_t size = (size_t)r[2];
        if (kind == 3) {
            idle_ns(r[2]);
            continue;
        }
        if (kind == 1) {
            free(slots[slot]);
            slots[slot] = NULL;
            continue;
        }
        unsigned char *p = kind == 0 ? malloc(size) : realloc(slots[slot], size);
        if (!p && size) {
            fprintf(stderr, "driver: %s(%zu) failed\n", kind == 0 ? "malloc" : "realloc", size);
            exit(3);
        }
        if (p && size)
            p[0] = (unsigned char)(size & 0xFF);
        slots[slot] = p;
    }
}

static int file_main(int argc, char **argv) {
    uint64_t timed_from = 0;
    if (argc < 3 || argc > 5 || (argc >= 4 && !parse_u64(argv[3], &timed_from))) {
        fprintf(stderr, "usage: %s file PATH [TIMED_FROM [OUT]]\n", argv[0]);
        return 2;
    }
    const char *path = argv[2];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "driver: cannot open %s: %s\n", path, strerror(errno));
        return 2;
    }
    /* pass 1: validate, count rows, find the slot table's length */
    uint64_t rows = 0, n_slots = 0, idle_rows = 0;
    long n;
    while ((n = read_rows(fd)) > 0) {
        for (long i = 0; i < n; i++) {
            const int64_t *r = rowbuf + 3 * i;
            if (r[0] < 0 || r[0] > 3 || r[1] < 0 || r[2] < 0) {
                fprintf(stderr, "driver: %s: row %llu: bad row (%lld, %lld, %lld)\n", path,
                        (unsigned long long)(rows + (uint64_t)i), (long long)r[0],
                        (long long)r[1], (long long)r[2]);
                return 2;
            }
            if (r[0] == 3) {
                if (rows + (uint64_t)i >= timed_from)
                    idle_rows++;
                continue; /* an idle row names no slot */
            }
            if ((uint64_t)r[1] >= n_slots)
                n_slots = (uint64_t)r[1] + 1;
        }
        rows += (uint64_t)n;
    }
    if (n < 0) {
        fprintf(stderr, "driver: %s: read error or truncated row (size not a multiple of 24)\n",
                path);
        return 2;
    }
    if (timed_from > rows) {
        fprintf(stderr, "driver: TIMED_FROM %llu > %llu rows\n", (unsigned long long)timed_from,
                (unsigned long long)rows);
        return 2;
    }
    size_t table = (size_t)(n_slots ? n_slots : 1) * sizeof(void *);
    void **slots = mmap(NULL, table, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        fprintf(stderr, "driver: cannot map %llu slots\n", (unsigned long long)n_slots);
        return 3;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) {
        fprintf(stderr, "driver: cannot rewind %s\n", path);
        return 2;
    }
    long hwm, base_rss, anon;
    status_kb(&hwm, &base_rss, &anon);
    /* pass 2: replay */
    mark(0);
    uint64_t done = 0;
    double seconds = 0.0;
    int timed = timed_from == 0;
    if (timed)
        mark(1);
    while ((n = read_rows(fd)) > 0) {
        long i = 0;
        if (!timed) {
            long warm = (long)((timed_from - done) < (uint64_t)n ? timed_from - done : (uint64_t)n);
            apply_rows(slots, rowbuf, warm);
            i = warm;
            if (done + (uint64_t)warm == timed_from) {
                timed = 1;
                mark(1);
            }
        }
        if (i < n) {
            double t0 = now_seconds(), slept0 = slept_seconds;
            apply_rows(slots, rowbuf + 3 * i, n - i);
            seconds += now_seconds() - t0 - (slept_seconds - slept0);
        }
        done += (uint64_t)n;
    }
    mark(2);
    long rss;
    status_kb(&hwm, &rss, &anon);
    close(fd);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t ops = rows - timed_from - idle_rows;
    double idle_s = slept_seconds;
    char line[600];
    snprintf(line, sizeof line,
             "ops=%llu warmup_ops=%llu n_slots=%llu seconds=%.9f ops_per_s=%.1f max_rss_kb=%ld "
             "ru_maxrss_kb=%ld rss_kb=%ld rss_anon_kb=%ld base_rss_kb=%ld idle_rows=%llu idle_s=%.6f\n",
             (unsigned long long)ops, (unsigned long long)timed_from,
             (unsigned long long)n_slots, seconds, seconds > 0 ? (double)ops / seconds : 0.0,
             hwm > 0 ? hwm : ru.ru_maxrss, ru.ru_maxrss, rss, anon, base_rss,
             (unsigned long long)idle_rows, idle_s);
    if (argc < 5)
        fputs(line, stdout);
    else {
        int out = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || write(out, line, strlen(line)) != (ssize_t)strlen(line)) {
            fprintf(stderr, "driver: cannot write %s\n", argv[4]);
            return 2;
        }
        close(out);
    }
    munmap(slots, table);
    return 0;
}

int main(int argc, char **argv) {
    uint64_t cycles, ws64, seed64;
    if (argc >= 2 && strcmp(argv[1], "file") == 0)
        return file_main(argc, argv);
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
