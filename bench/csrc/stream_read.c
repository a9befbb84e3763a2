/* Read-bandwidth probe for bench/bandwidth.py (loaded with ctypes; no dependencies).
 *
 * One sequential stream per core understates what a core can read: a matmul streams several weight
 * rows at once, and the hardware prefetchers only keep enough lines in flight with several streams.
 * So the buffer is read as `streams` equal, far-apart regions, one 64-byte cache line from each in
 * turn. Every 64-bit word is XOR-ed into the result, so the compiler cannot drop a load, and callers
 * can check the result against the XOR of the buffer.
 *
 * Result: the XOR of the buffer as native-endian uint64 words, a last partial word (n % 8 bytes)
 * zero-padded. Regions are floor(n / (streams * 64)) lines each; the tail after them (fewer than
 * streams * 64 bytes) is read sequentially. Any alignment works (unaligned loads).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TB_EXPORT __attribute__((visibility("default")))
#define LINE 64

/* Words [0, n/8) and the zero-padded partial word: the tail after the interleaved regions. */
static uint64_t xor_seq(const unsigned char *p, size_t n) {
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8); /* memcpy: no alignment or aliasing assumptions; compiles to one load */
        acc ^= w;
    }
    if (i < n) {
        w = 0;
        memcpy(&w, p + i, n - i);
        acc ^= w;
    }
    return acc;
}

static size_t region_bytes(size_t n, int streams) {
    return n / ((size_t)streams * LINE) * LINE;
}

/* Portable path (the only one on aarch64): eight uint64 loads per line, two accumulators. */
TB_EXPORT uint64_t tb_stream_read_portable(const void *buf, size_t n, int streams) {
    const unsigned char *p = buf;
    if (streams < 1) streams = 1;
    size_t region = region_bytes(n, streams);
    uint64_t a = 0, b = 0, w[8];
    for (size_t off = 0; off < region; off += LINE) {
        for (int s = 0; s < streams; s++) {
            memcpy(w, p + (size_t)s * region + off, LINE);
            a ^= w[0] ^ w[2] ^ w[4] ^ w[6];
            b ^= w[1] ^ w[3] ^ w[5] ^ w[7];
        }
    }
    size_t done = (size_t)streams * region;
    return a ^ b ^ xor_seq(p + done, n - done);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* AVX2 path: two 32-byte loads per line. Only this function is compiled for AVX2, so the library
 * still loads on CPUs without it. */
__attribute__((target("avx2"))) static uint64_t stream_read_avx2(const void *buf, size_t n, int streams) {
    const unsigned char *p = buf;
    size_t region = region_bytes(n, streams);
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    for (size_t off = 0; off < region; off += LINE) {
        for (int s = 0; s < streams; s++) {
            const unsigned char *q = p + (size_t)s * region + off;
            a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)q));
            b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(q + 32)));
        }
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, _mm256_xor_si256(a, b));
    size_t done = (size_t)streams * region;
    return lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3] ^ xor_seq(p + done, n - done);
}

static int have_avx2(void) {
    __builtin_cpu_init(); /* harmless if already done; required before use from a constructor */
    return __builtin_cpu_supports("avx2");
}
#else
static int have_avx2(void) { return 0; }
#endif

/* "avx2" or "portable": the path tb_stream_read takes on this CPU. */
TB_EXPORT const char *tb_stream_read_path(void) {
    return have_avx2() ? "avx2" : "portable";
}

TB_EXPORT uint64_t tb_stream_read(const void *buf, size_t n, int streams) {
    if (streams < 1) streams = 1;
#if defined(__x86_64__) || defined(__i386__)
    if (have_avx2()) return stream_read_avx2(buf, n, streams);
#endif
    return tb_stream_read_portable(buf, n, streams);
}
