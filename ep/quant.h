// Symmetric int8 quantisation of bf16 tokens, as DeepEP's fp8 path and DeepEP-Ascend's int8
// path: each token is split into groups of `group` channels (128 by default; the whole row
// in per-token mode) and each group gets one f32 scale s = max|x| / 127 of the group; the
// int8 value is q = round_half_even(x / s), so |q| <= 127. A zero group has s = 0, q = 0.
//
// Error bound (documented contract, tested in tests/ep): dequantising in f32,
//   |q * s - x| <= s / 2 + e = max|x|_group / 254 + e   for every element,
// e = max|x|_group * 2^-20 being the f32 rounding of s, 1/s and x/s. So the error of an element is
// at most 0.4% of the largest magnitude in its group. When the dequantised value is rounded to bf16
// it gains at most half a bf16 ulp more:
//   |bf16(q * s) - x| <= max|x|_group / 254 + e + |x| * 2^-8.
// DeepEP's calc_diff (1 - 2 sum(xy) / sum(x^2 + y^2)) between x and the dequantised data
// therefore stays far below 3e-3 for any data (< 2e-5 for Gaussian tokens).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../comm/export.h"
#include "../comm/half.h"

namespace epcomm::ep {

inline constexpr int kQuantGroup = 128;  // channels per scale (DeepEP's fp8 block)

enum class Quant : int {
  kDefault = -1,      // per call: take the Buffer's setting (EPCOMM_EP_INT8)
  kNone = 0,          // bf16 on the wire
  kInt8Group = 1,     // int8 + one f32 scale per token per 128 channels
  kInt8PerToken = 2,  // int8 + one f32 scale per token
};

// Channels per scale for `quant` (0 for kNone); hidden for kInt8PerToken.
inline int quantGroupSize(Quant quant, int hidden) {
  return quant == Quant::kInt8Group ? kQuantGroup : quant == Quant::kInt8PerToken ? hidden : 0;
}
// Scales per token (0 for kNone).
inline int numScales(Quant quant, int hidden) {
  const int g = quantGroupSize(quant, hidden);
  return g > 0 ? hidden / g : 0;
}
inline bool isInt8(Quant quant) {
  return quant == Quant::kInt8Group || quant == Quant::kInt8PerToken;
}

// One token: hidden channels of x -> hidden int8 in q and hidden / group scales.
// Preconditions: hidden % group == 0, group > 0.
EPCOMM_API void quantizeInt8(const Bf16* x, int hidden, int group, std::int8_t* q, float* scales);
// The inverse, rounded to bf16 (see the bound above).
EPCOMM_API void dequantizeInt8(const std::int8_t* q, const float* scales, int hidden, int group,
                               Bf16* out);

}  // namespace epcomm::ep
