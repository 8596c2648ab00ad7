/* Element-wise reductions of the data plane, in each dtype's own arithmetic.
 *
 * float16 uses GCC's _Float16: each sum is computed and rounded to half
 * precision exactly as numpy's float16 add does (numpy widens to float32, adds,
 * rounds back; GCC does the same on x86 without native FP16 and the result is
 * the correctly rounded half either way).  int32 wraps modulo 2^32 like numpy,
 * via unsigned arithmetic (signed overflow is undefined in C).
 */
#ifndef COLLSIM_DATAOPS_H
#define COLLSIM_DATAOPS_H
#include <stdint.h>

static inline void collsim_add_f32(void* dst, const void* src, int64_t n)
{
    float* restrict d = (float*)dst;
    const float* restrict s = (const float*)src;
    for (int64_t i = 0; i < n; i++) d[i] = d[i] + s[i];
}

static inline void collsim_add_f16_scalar(void* dst, const void* src, int64_t n)
{
    _Float16* restrict d = (_Float16*)dst;
    const _Float16* restrict s = (const _Float16*)src;
    for (int64_t i = 0; i < n; i++) d[i] = (_Float16)(d[i] + s[i]);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
/* Same arithmetic, 8 lanes at a time: widen to float32 (exact), add, round to
 * nearest-even half: what numpy and the scalar loop do, bit for bit.  Plain
 * x86-64 code converts halves through libgcc calls, ~10x slower. */
__attribute__((target("avx,f16c")))
static void collsim_add_f16_f16c(void* dst, const void* src, int64_t n)
{
    uint16_t* d = (uint16_t*)dst;
    const uint16_t* s = (const uint16_t*)src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(d + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(s + i)));
        _mm_storeu_si128((__m128i*)(d + i),
                         _mm256_cvtps_ph(_mm256_add_ps(a, b), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    collsim_add_f16_scalar(d + i, s + i, n - i);
}
#endif

static inline void collsim_add_f16(void* dst, const void* src, int64_t n)
{
#if defined(__GNUC__) && defined(__x86_64__)
    static int has_f16c = -1;   /* probed once per module; a benign race */
    if (has_f16c < 0) {
        __builtin_cpu_init();
        has_f16c = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }
    if (has_f16c) {
        collsim_add_f16_f16c(dst, src, n);
        return;
    }
#endif
    collsim_add_f16_scalar(dst, src, n);
}

static inline void collsim_add_i32(void* dst, const void* src, int64_t n)
{
    uint32_t* restrict d = (uint32_t*)dst;
    const uint32_t* restrict s = (const uint32_t*)src;
    for (int64_t i = 0; i < n; i++) d[i] = d[i] + s[i];
}

#endif
