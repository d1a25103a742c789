// The vector primitives for Isa::kAvx2: 8 f32 lanes, with bf16 and f16 converted exactly as
// comm/half.h converts them. Compiled, with the kernels built on them, between
// EPCOMM_KERNELS_AVX2_BEGIN and EPCOMM_KERNELS_AVX2_END (see simd_avx512.h).
#pragma once

#include "comm/kernels/isa.h"

#ifdef EPCOMM_KERNELS_X86
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

// AVX2, FMA and F16C: what detectedIsa() checks for kAvx2.
#define EPCOMM_KERNELS_AVX2_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define EPCOMM_KERNELS_AVX2_END _Pragma("GCC pop_options")

EPCOMM_KERNELS_AVX2_BEGIN
namespace epcomm::kernels::avx2 {

using Vf = __m256;
constexpr std::size_t kLanes = 8;

inline Vf loadF32(const float* p) {
  return _mm256_loadu_ps(p);
}
inline void storeF32(float* p, Vf v) {
  _mm256_storeu_ps(p, v);
}
inline Vf set1(float f) {
  return _mm256_set1_ps(f);
}
inline Vf add(Vf a, Vf b) {
  return _mm256_add_ps(a, b);
}
inline Vf mul(Vf a, Vf b) {
  return _mm256_mul_ps(a, b);
}
// a * b + c, rounded once (std::fma).
inline Vf fmadd(Vf a, Vf b, Vf c) {
  return _mm256_fmadd_ps(a, b, c);
}
// a > b ? a : b and a < b ? a : b per lane (maxps/minps with a first), NaN and signed zeros
// included.
inline Vf vmax(Vf a, Vf b) {
  return _mm256_max_ps(a, b);
}
inline Vf vmin(Vf a, Vf b) {
  return _mm256_min_ps(a, b);
}
inline Vf vdiv(Vf a, Vf b) {
  return _mm256_div_ps(a, b);
}

// Eight 32-bit lanes holding 16-bit values -> eight u16.
inline __m128i pack16(__m256i r) {
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  return _mm256_castsi256_si128(p);
}
// Eight 32-bit lane masks (0 or all ones) -> eight 16-bit lane masks.
inline __m128i packMask16(__m256i m) {
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(m, m), 0xD8);
  return _mm256_castsi256_si128(p);
}

// bf16 -> f32 is exact: the bits move up by 16.
inline Vf widenBf16(__m128i bits) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}
inline Vf loadBf16(const std::uint16_t* p) {
  return widenBf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// f32 -> bf16 as toBf16 (NaN -> (u >> 16) | 0x40, else round to nearest even on bit 16), the
// result in the low 16 bits of each 32-bit lane.
inline __m256i narrowBf16(Vf v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  // |u| > inf as a signed compare: both sides are non-negative.
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}
inline void storeBf16(std::uint16_t* p, Vf v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), pack16(narrowBf16(v)));
}
// 2 * kLanes channels, a to p, b to p + kLanes, in one store: packus interleaves the 128-bit
// halves and the permute puts the 16 results back in order.
inline void storeBf16x2(std::uint16_t* p, Vf a, Vf b) {
  const __m256i packed = _mm256_packus_epi32(narrowBf16(a), narrowBf16(b));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permute4x64_epi64(packed, 0xD8));
}

inline Vf loadF16(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// f32 -> f16 as toF16: IEEE round to nearest even (F16C), NaN -> sign | 0x7e00 (F16C would keep
// the payload).
inline void storeF16(std::uint16_t* p, Vf v) {
  __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  if (_mm256_movemask_ps(nan)) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i q =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x8000)),
                        _mm256_set1_epi32(0x7e00));
    h = _mm_blendv_epi8(h, pack16(q), packMask16(_mm256_castps_si256(nan)));
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
}

}  // namespace epcomm::kernels::avx2
EPCOMM_KERNELS_AVX2_END

#endif  // EPCOMM_KERNELS_X86
