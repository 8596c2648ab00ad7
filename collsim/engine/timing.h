/* Exact link/reduction timing shared by the engine: ser(b) = ceil(b * 1e12 / rate) ps.
 *
 * Identical to collsim.units.serialization_ps (Python integers).  b * 1e12
 * overflows int64 above ~9.2 MB, so the product is formed in unsigned 128-bit
 * arithmetic; the 64-bit path is taken when it fits because a 128-bit
 * division costs several times more.  Sizes and rates are non-negative.
 */
#ifndef COLLSIM_TIMING_H
#define COLLSIM_TIMING_H
#include <stdint.h>

#define COLLSIM_PS_PER_S 1000000000000ULL

static inline int64_t collsim_serialization_ps(int64_t nbytes, int64_t rate_Bps)
{
    uint64_t b = (uint64_t)nbytes, r = (uint64_t)rate_Bps;
    if (b <= UINT64_MAX / COLLSIM_PS_PER_S - 1) {
        uint64_t num = b * COLLSIM_PS_PER_S;
        return (int64_t)(num / r + (num % r != 0));
    }
    unsigned __int128 num = (unsigned __int128)b * COLLSIM_PS_PER_S;
    return (int64_t)(num / r + (num % r != 0));
}

#endif
