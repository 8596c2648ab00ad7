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

/* Events per block of a time's chain: 6 KiB.  Emptying a chain walks its blocks, a cache
 * miss per block at scale: 256 against 64 took trn3 x 512 UltraServers from 6.63 to 6.08 s
 * (1,024: 6.01 s, not worth four times the memory of a sparsely used chain). */
#define COLLSIM_BLOCK_EVENTS 256

#endif
