#include "ep/quant.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "ep/src/target_clones.h"

namespace epcomm::ep {
namespace {

inline float widen(std::uint16_t b) {
  return std::bit_cast<float>(std::uint32_t{b} << 16);
}

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
  const float amax = widen(maxBits);
  const float s = amax / 127.f;
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  // |x * inv| <= 127 (+ rounding that never reaches 127.5), so no clamp is needed.
  for (int i = 0; i < n; ++i) {
    q[i] = static_cast<std::int8_t>(static_cast<int>(roundEven(widen(x[i]) * inv)));
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

}  // namespace

void quantizeInt8(const Bf16* x, int hidden, int group, std::int8_t* q, float* scales) {
  quantizeRow(reinterpret_cast<const std::uint16_t*>(x), hidden, group, q, scales);
}

void dequantizeInt8(const std::int8_t* q, const float* scales, int hidden, int group, Bf16* out) {
  auto* bits = reinterpret_cast<std::uint16_t*>(out);
  for (int g = 0, c = 0; c < hidden; ++g, c += group) {
    dequantizeGroup(q + c, scales[g], group, bits + c);
  }
}

}  // namespace epcomm::ep
