#include "ep/quant.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "comm/kernels/isa.h"
#include "comm/kernels/simd_avx512.h"

#ifdef EPCOMM_KERNELS_X86
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports once inlined; nothing here reads an undefined lane.
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

inline __attribute__((always_inline)) void dequantizeGroup(const std::int8_t* __restrict q, float s,
                                                           int n, std::uint16_t* __restrict out) {
  for (int i = 0; i < n; ++i) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(static_cast<float>(q[i]) * s);
    out[i] = static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

inline __attribute__((always_inline)) void quantizeLoops(const std::uint16_t* __restrict x,
                                                         int hidden, int group,
                                                         std::int8_t* __restrict q,
                                                         float* __restrict scales) {
  if (group == kQuantGroup) {
    for (int g = 0, c = 0; c < hidden; ++g, c += kQuantGroup) {
      quantizeGroup(x + c, kQuantGroup, q + c, scales + g);  // constant trip count
    }
    return;
  }
  for (int g = 0, c = 0; c < hidden; ++g, c += group)
    quantizeGroup(x + c, group, q + c, scales + g);
}

inline __attribute__((always_inline)) void dequantizeLoops(const std::int8_t* __restrict q,
                                                           const float* __restrict scales,
                                                           int hidden, int group,
                                                           std::uint16_t* __restrict out) {
  for (int g = 0, c = 0; c < hidden; ++g, c += group)
    dequantizeGroup(q + c, scales[g], group, out + c);
}

// The plain loops above (written for GCC's vectoriser, -O3), compiled once per ISA and chosen
// per row by kernels::detectedIsa(), the one detection every kernel uses. Not target_clones:
// the loader runs a clone's IFUNC resolver while relocating, before the TSan runtime is up, and
// under -fsanitize=thread the instrumented resolver crashed every program before main. A
// switch on the detected ISA needs no resolver, so sanitizer builds run the same code as the
// others. The targets stay exactly the clones' "avx512f" and "avx2", so the code is what it
// was: GCC contracts x * inv + 1.5 * 2^23 (roundEven) into one fma where the target has one
// (AVX-512F does, AVX2 without FMA does not), and an fma can round a tie differently.
void quantizeLoopsPortable(const std::uint16_t* x, int hidden, int group, std::int8_t* q,
                           float* scales) {
  quantizeLoops(x, hidden, group, q, scales);
}
void dequantizeLoopsPortable(const std::int8_t* q, const float* scales, int hidden, int group,
                             std::uint16_t* out) {
  dequantizeLoops(q, scales, hidden, group, out);
}

#ifdef EPCOMM_KERNELS_X86
__attribute__((target("avx2"))) void quantizeLoopsAvx2(const std::uint16_t* x, int hidden,
                                                       int group, std::int8_t* q, float* scales) {
  quantizeLoops(x, hidden, group, q, scales);
}
__attribute__((target("avx2"))) void dequantizeLoopsAvx2(const std::int8_t* q, const float* scales,
                                                         int hidden, int group,
                                                         std::uint16_t* out) {
  dequantizeLoops(q, scales, hidden, group, out);
}
__attribute__((target("avx512f"))) void quantizeLoopsAvx512(const std::uint16_t* x, int hidden,
                                                            int group, std::int8_t* q,
                                                            float* scales) {
  quantizeLoops(x, hidden, group, q, scales);
}
__attribute__((target("avx512f"))) void dequantizeLoopsAvx512(const std::int8_t* q,
                                                              const float* scales, int hidden,
                                                              int group, std::uint16_t* out) {
  dequantizeLoops(q, scales, hidden, group, out);
}

// quantizeLoops for groups that are a multiple of 32 channels, in AVX-512 intrinsics: the same
// max (on the bit patterns), the same scale and inverse, and x * inv rounded half to even by
// vcvtps2dq (the default rounding mode, as roundEven's), so bitwise the same output.
EPCOMM_KERNELS_AVX512_BEGIN
void quantizeRowAvx512(const std::uint16_t* x, int hidden, int group, std::int8_t* q,
                       float* scales) {
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
      const __m512 v = kernels::avx512::loadBf16(x + c + i);
      const __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(v, vinv));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c + i), _mm512_cvtsepi32_epi8(r));
    }
    scales[g] = amax / 127.f;
  }
}
EPCOMM_KERNELS_AVX512_END
#endif

}  // namespace

void quantizeInt8(const Bf16* x, int hidden, int group, std::int8_t* q, float* scales) {
  const auto* bits = reinterpret_cast<const std::uint16_t*>(x);
  switch (kernels::detectedIsa()) {
#ifdef EPCOMM_KERNELS_X86
    case kernels::Isa::kAvx512:
      if (group % 32 == 0) return quantizeRowAvx512(bits, hidden, group, q, scales);
      return quantizeLoopsAvx512(bits, hidden, group, q, scales);
    case kernels::Isa::kAvx2: return quantizeLoopsAvx2(bits, hidden, group, q, scales);
#endif
    default: break;
  }
  quantizeLoopsPortable(bits, hidden, group, q, scales);
}

void dequantizeInt8(const std::int8_t* q, const float* scales, int hidden, int group, Bf16* out) {
  auto* bits = reinterpret_cast<std::uint16_t*>(out);
  switch (kernels::detectedIsa()) {
#ifdef EPCOMM_KERNELS_X86
    case kernels::Isa::kAvx512: return dequantizeLoopsAvx512(q, scales, hidden, group, bits);
    case kernels::Isa::kAvx2: return dequantizeLoopsAvx2(q, scales, hidden, group, bits);
#endif
    default: break;
  }
  dequantizeLoopsPortable(q, scales, hidden, group, bits);
}

}  // namespace epcomm::ep
