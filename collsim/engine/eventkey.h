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

/* Radix-queue bucket of key (time, tie) relative to the queue's origin (last_time, last_tie),
 * for key >= origin: 0 when equal, else 1 + the index of the highest bit where the two
 * 128-bit keys differ (1..64: same time, ties differ; 65..128: times differ).  Every key
 * in bucket b agrees with the origin above bit b-1, so all keys of a lower bucket are
 * smaller than all keys of a higher one: the smallest key is in the first non-empty bucket.
 */
#define COLLSIM_KEY_BUCKETS 129

static inline int collsim_key_bucket(int64_t time, uint64_t tie, int64_t last_time, uint64_t last_tie)
{
    uint64_t dt = (uint64_t)time ^ (uint64_t)last_time;
    if (dt != 0) return 128 - __builtin_clzll(dt);
    uint64_t dk = tie ^ last_tie;
    return dk != 0 ? 64 - __builtin_clzll(dk) : 0;
}

/* Index of the lowest set bit of a non-zero word. */
static inline int collsim_lowest_bit(uint64_t w)
{
    return __builtin_ctzll(w);
}

#endif
