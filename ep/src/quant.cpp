#include "ep/quant.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "ep/src/target_clones.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define EPCOMM_EP_QUANT_X86 1
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports once inlined (as in row_kernels.cpp); nothing here reads an undefined lane.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace epcomm::ep {
namespace {

// Round half to even for |v| < 2^22 by the 1.5 * 2^23 trick (vectorises without SSE4.1).
inline float roundEven(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

inline __attribute__((always_inline)) void quantizeGroup(const std::uint16_t* __restrict x, int n,
                                                         std::int8_t* __restrict q, float* scale) {
  // max |x| on the bit patterns: for bf16 (not NaN) |a| < |b| iff (a & 0x7fff) < (b & 0x7fff),
  // and an integer max vectorises where a float max (NaN rules) does not.
  std::uint16_t maxBits = 0;
  for (int i = 0; i < n; ++i) maxBits = std::max<std::uint16_t>(maxBits, x[i] & 0x7fffu);
  const float amax = toFloat(Bf16{maxBits});
  const float s = amax / 127.f;
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  // |x * inv| <= 127 (+ rounding that never reaches 127.5), so no clamp is needed.
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<std::int8_t>(static_cast<int>(roundEven(toFloat(Bf16{x[i]}) * inv)));
  }
  *scale = s;
}

EPCOMM_EP_CLONES void dequantizeGroup(const std::int8_t* __restrict q, float s, int n,
                                      std::uint16_t* __restrict out) {
  for (int i = 0; i < n; ++i) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(static_cast<float>(q[i]) * s);
    out[i] = static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

// A whole row per call: one dispatch through the clone's resolver, not one per group.
EPCOMM_EP_CLONES void quantizeRow(const std::uint16_t* __restrict x, int hidden, int group,
                                  std::int8_t* __restrict q, float* __restrict scales) {
  if (group == kQuantGroup) {
    for (int g = 0, c = 0; c < hidden; ++g, c += kQuantGroup) {
      quantizeGroup(x + c, kQuantGroup, q + c, scales + g);  // constant trip count
    }
    return;
  }
  for (int g = 0, c = 0; c < hidden; ++g, c += group)
    quantizeGroup(x + c, group, q + c, scales + g);
}

#ifdef EPCOMM_EP_QUANT_X86
// quantizeRow for groups that are a multiple of 32 channels, with AVX-512BW: the same max
// (on the bit patterns), the same scale and inverse, and x * inv rounded half to even by
// vcvtps2dq (the default rounding mode, as roundEven's), so bitwise the same output.
__attribute__((target("avx512f,avx512bw"))) void quantizeRowAvx512(const std::uint16_t* x,
                                                                   int hidden, int group,
                                                                   std::int8_t* q, float* scales) {
  const __m512i absMask = _mm512_set1_epi16(0x7fff);
  for (int g = 0, c = 0; c < hidden; ++g, c += group) {
    __m512i m = _mm512_setzero_si512();
    for (int i = 0; i < group; i += 32) {
      m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(x + c + i), absMask));
    }
    const __m256i m256 =
        _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    const __m128i m128 =
        _mm_max_epu16(_mm256_castsi256_si128(m256), _mm256_extracti128_si256(m256, 1));
    // max of eight u16 = ~min of their complements (phminposuw).
    const __m128i least = _mm_minpos_epu16(_mm_xor_si128(m128, _mm_set1_epi16(-1)));
    const auto maxBits = static_cast<std::uint16_t>(~_mm_extract_epi16(least, 0));
    const float amax = toFloat(Bf16{maxBits});
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int i = 0; i < group; i += 16) {
      const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + c + i));
      const __m512 v = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
      const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c + i), _mm512_cvtsepi32_epi8(r));
    }
    scales[g] = amax / 127.f;
  }
}

bool hasAvx512Bw() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  }();
  return has;
}
#endif

}  // namespace

void quantizeInt8(const Bf16* x, int hidden, int group, std::int8_t* q, float* scales) {
  const auto* bits = reinterpret_cast<const std::uint16_t*>(x);
#ifdef EPCOMM_EP_QUANT_X86
  if (group % 32 == 0 && hasAvx512Bw()) return quantizeRowAvx512(bits, hidden, group, q, scales);
#endif
  quantizeRow(bits, hidden, group, q, scales);
}

void dequantizeInt8(const std::int8_t* q, const float* scales, int hidden, int group, Bf16* out) {
  auto* bits = reinterpret_cast<std::uint16_t*>(out);
  for (int g = 0, c = 0; c < hidden; ++g, c += group) {
    dequantizeGroup(q + c, scales[g], group, bits + c);
  }
}

}  // namespace epcomm::ep
