/* Order of engine events: (time_ps, tie) compared as one unsigned 128-bit
 * number, where tie = (src << seq_bits) | seq.  One wide comparison compiles to
 * cmp/sbb without branches, which matters because collectives run in lockstep
 * and many events share a time (so the tie decides often).  Times are >= 0.
 */
#ifndef COLLSIM_EVENTKEY_H
#define COLLSIM_EVENTKEY_H
#include <stdint.h>

static inline int collsim_key_before(int64_t time_a, uint64_t tie_a, int64_t time_b, uint64_t tie_b)
{
    unsigned __int128 a = ((unsigned __int128)(uint64_t)time_a << 64) | tie_a;
    unsigned __int128 b = ((unsigned __int128)(uint64_t)time_b << 64) | tie_b;
    return a < b;
}

/* Radix bucket of an event later than the queue's origin time, in base 2^D (D =
 * COLLSIM_DIGIT_BITS): the level is the highest digit in which the two times differ
 * and the digit is the event's value of that digit, bucket = 2^D * level + digit.
 * Every time in bucket (level, digit) agrees with the origin above that digit, so
 * buckets in (level, digit) order hold increasing times: the earliest time is in the
 * first non-empty bucket, and a bucket of level 0 holds one time only.  Times are
 * >= 0, so two times differ in bits 0..62 only.
 */
/* 12 bits: hier_trn3_64 made 16.5 M bucket pushes against 18.5 M with 8 bits, 1.4% fewer
 * instructions in all.  6 <= D <= 12: a level's bitmap words fit the 64 bits of words[level]. */
#ifndef COLLSIM_DIGIT_BITS
#define COLLSIM_DIGIT_BITS 12
#endif
#if COLLSIM_DIGIT_BITS < 6 || COLLSIM_DIGIT_BITS > 12
#error "COLLSIM_DIGIT_BITS must be 6..12"
#endif
#define COLLSIM_TIME_DIGITS (1 << COLLSIM_DIGIT_BITS)                 /* buckets per level */
#define COLLSIM_TIME_LEVELS (62 / COLLSIM_DIGIT_BITS + 1)
#define COLLSIM_TIME_BUCKETS (COLLSIM_TIME_DIGITS * COLLSIM_TIME_LEVELS)
/* Events per block of a bucket chain: 6 KiB.  Emptying a bucket walks its chain, a cache
 * miss per block at scale: 256 against 64 took trn3 x 512 UltraServers from 6.63 to 6.08 s
 * (1,024: 6.01 s, not worth four times the memory of a sparsely used bucket). */
#define COLLSIM_BLOCK_EVENTS 256
#define COLLSIM_TIME_WORDS (COLLSIM_TIME_BUCKETS / 64)   /* words of the non-empty bitmap */
#define COLLSIM_LEVEL_WORDS (COLLSIM_TIME_DIGITS / 64)   /* of them per level (<= 64) */

static inline int collsim_time_bucket(int64_t time, int64_t origin)
{
    int level = (63 - __builtin_clzll((uint64_t)time ^ (uint64_t)origin)) / COLLSIM_DIGIT_BITS;
    return (level << COLLSIM_DIGIT_BITS)
        | (int)(((uint64_t)time >> (level * COLLSIM_DIGIT_BITS)) & (COLLSIM_TIME_DIGITS - 1));
}

/* Index of the lowest set bit of a non-zero word. */
static inline int collsim_lowest_bit(uint64_t w)
{
    return __builtin_ctzll(w);
}

#endif
