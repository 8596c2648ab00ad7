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

#endif
