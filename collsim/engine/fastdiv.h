/* Division of 32-bit unsigned values by a divisor fixed at construction time,
 * by multiplication (Lemire, Kaser, Kurz, "Faster remainder by direct
 * computation", 2019): with M = floor((2^64 - 1) / d) + 1, for every 32-bit n
 *     n / d == (M * n) >> 64            (128-bit product)
 *     n % d == ((M * n mod 2^64) * d) >> 64
 * exactly.  The router divides chip ids by level sizes on every route; a
 * hardware 64-bit division costs tens of cycles, this costs a few.  d == 1 is
 * kept apart because its M overflows.
 */
#ifndef COLLSIM_FASTDIV_H
#define COLLSIM_FASTDIV_H
#include <stdint.h>

typedef struct {
    uint64_t magic;   /* M; 0 when divisor == 1 */
    uint64_t divisor;
} collsim_fastdiv_t;

static inline collsim_fastdiv_t collsim_fastdiv_make(uint32_t d)
{
    collsim_fastdiv_t f;
    f.divisor = d;
    f.magic = d > 1 ? UINT64_C(0xFFFFFFFFFFFFFFFF) / d + 1 : 0;
    return f;
}

static inline uint64_t collsim_fastdiv_div(uint64_t n, collsim_fastdiv_t f)
{
    if (f.magic == 0) return n;
    return (uint64_t)(((unsigned __int128)f.magic * (uint32_t)n) >> 64);
}

static inline uint64_t collsim_fastdiv_mod(uint64_t n, collsim_fastdiv_t f)
{
    if (f.magic == 0) return 0;
    uint64_t low = f.magic * (uint32_t)n;
    return (uint64_t)(((unsigned __int128)low * f.divisor) >> 64);
}

#endif
