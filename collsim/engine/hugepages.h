/* Large arrays the engine reads in random order: back them with 2 MiB pages.
 *
 * At a million chips the message pool (over a GiB) and the schedules' per-chip
 * records are read at random, one cache line per event; with 4 KiB pages almost
 * every such read also misses the TLB and walks the page tables.  Linux gives a
 * region transparent huge pages when it is 2 MiB aligned and marked
 * MADV_HUGEPAGE before it is first touched (THP "madvise" mode, the default of
 * many distributions).  Elsewhere, or when the kernel declines, this is plain
 * aligned memory: the hint changes speed only, never results.
 */
#ifndef COLLSIM_HUGEPAGES_H
#define COLLSIM_HUGEPAGES_H

#include <stdlib.h>
#include <stddef.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define COLLSIM_HUGE_PAGE ((size_t) 2 << 20)

/* nbytes of memory aligned to 64 bytes (a cache line); from 2 MiB up, aligned to
 * and rounded up to 2 MiB and advised to use huge pages.  NULL when out of memory;
 * release with free(). */
static inline void* collsim_alloc_lines(size_t nbytes)
{
    void* p;
    if (nbytes < COLLSIM_HUGE_PAGE)
        return aligned_alloc(64, (nbytes + 63) & ~(size_t) 63);
    nbytes = (nbytes + COLLSIM_HUGE_PAGE - 1) & ~(COLLSIM_HUGE_PAGE - 1);
    p = aligned_alloc(COLLSIM_HUGE_PAGE, nbytes);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p != NULL)
        madvise(p, nbytes, MADV_HUGEPAGE);
#endif
    return p;
}

#endif
