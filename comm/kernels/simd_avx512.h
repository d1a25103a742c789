// The vector primitives for Isa::kAvx512: 16 f32 lanes, with bf16 and f16 converted exactly as
// comm/half.h converts them. Everything here, and every kernel built on it, is compiled between
// EPCOMM_KERNELS_AVX512_BEGIN and EPCOMM_KERNELS_AVX512_END, so the intrinsics inline into the
// kernels while the rest of the program stays baseline x86-64.
#pragma once

#include "comm/kernels/isa.h"

#ifdef EPCOMM_KERNELS_X86
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

// AVX-512 F, BW, VL, DQ with AVX2, FMA and F16C: what detectedIsa() checks for kAvx512.
#define EPCOMM_KERNELS_AVX512_BEGIN \
  _Pragma("GCC push_options")       \
      _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c\")")
#define EPCOMM_KERNELS_AVX512_END _Pragma("GCC pop_options")

EPCOMM_KERNELS_AVX512_BEGIN
namespace epcomm::kernels::avx512 {

using Vf = __m512;
constexpr std::size_t kLanes = 16;

inline Vf loadF32(const float* p) {
  return _mm512_loadu_ps(p);
}
inline void storeF32(float* p, Vf v) {
  _mm512_storeu_ps(p, v);
}
inline Vf set1(float f) {
  return _mm512_set1_ps(f);
}
inline Vf add(Vf a, Vf b) {
  return _mm512_add_ps(a, b);
}
inline Vf mul(Vf a, Vf b) {
  return _mm512_mul_ps(a, b);
}
// a * b + c, rounded once (std::fma).
inline Vf fmadd(Vf a, Vf b, Vf c) {
  return _mm512_fmadd_ps(a, b, c);
}
// a > b ? a : b and a < b ? a : b per lane (maxps/minps with a first), NaN and signed zeros
// included.
inline Vf vmax(Vf a, Vf b) {
  return _mm512_max_ps(a, b);
}
inline Vf vmin(Vf a, Vf b) {
  return _mm512_min_ps(a, b);
}
inline Vf vdiv(Vf a, Vf b) {
  return _mm512_div_ps(a, b);
}

// bf16 -> f32 is exact: the bits move up by 16.
inline Vf widenBf16(__m256i bits) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
}
inline Vf loadBf16(const std::uint16_t* p) {
  return widenBf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// f32 -> bf16 as toBf16: NaN -> (u >> 16) | 0x40 (quiet), else round to nearest even on bit 16.
// Integer code rather than avx512_bf16's vcvtneps2bf16, which flushes denormals.
inline __m256i narrowBf16(Vf v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet));
}
inline void storeBf16(std::uint16_t* p, Vf v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrowBf16(v));
}
// 2 * kLanes channels: a to p, b to p + kLanes.
inline void storeBf16x2(std::uint16_t* p, Vf a, Vf b) {
  storeBf16(p, a);
  storeBf16(p + kLanes, b);
}

inline Vf loadF16(const std::uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// f32 -> f16 as toF16: IEEE round to nearest even (F16C), NaN -> sign | 0x7e00 (F16C would keep
// the payload).
inline void storeF16(std::uint16_t* p, Vf v) {
  __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  if (nan) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i q =
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x8000)),
                        _mm512_set1_epi32(0x7e00));
    h = _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(q));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h);
}

}  // namespace epcomm::kernels::avx512
EPCOMM_KERNELS_AVX512_END

#endif  // EPCOMM_KERNELS_X86
