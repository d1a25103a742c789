#include "ep/src/kernels.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "ep/src/target_clones.h"

namespace epcomm::ep {
namespace {

constexpr int kChunk = 512;  // f32 accumulator block kept in L1

inline float widen(std::uint16_t b) {
  return std::bit_cast<float>(std::uint32_t{b} << 16);
}

inline std::uint16_t narrow(float f) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

EPCOMM_EP_CLONES void accumulate(float* __restrict acc, const std::uint16_t* __restrict row,
                                 float w, int n, bool first) {
  if (first) {
    for (int i = 0; i < n; ++i) acc[i] = w * widen(row[i]);
  } else {
    for (int i = 0; i < n; ++i) acc[i] += w * widen(row[i]);
  }
}

EPCOMM_EP_CLONES void store(std::uint16_t* __restrict out, const float* __restrict acc, int n) {
  for (int i = 0; i < n; ++i) out[i] = narrow(acc[i]);
}

}  // namespace

void combineRows(const Bf16* const* rows, const float* weights, int numRows, int hidden,
                 Bf16* out) {
  if (numRows == 0) {
    std::memset(out, 0, static_cast<std::size_t>(hidden) * sizeof(Bf16));
    return;
  }
  if (numRows == 1 && !weights) {
    std::memcpy(out, rows[0], static_cast<std::size_t>(hidden) * sizeof(Bf16));
    return;
  }
  alignas(64) float acc[kChunk];
  for (int c = 0; c < hidden; c += kChunk) {
    const int n = std::min(kChunk, hidden - c);
    for (int r = 0; r < numRows; ++r) {
      accumulate(acc, reinterpret_cast<const std::uint16_t*>(rows[r]) + c,
                 weights ? weights[r] : 1.f, n, r == 0);
    }
    store(reinterpret_cast<std::uint16_t*>(out) + c, acc, n);
  }
}

void copyBytes(void* dst, const void* src, std::size_t bytes) {
  std::memcpy(dst, src, bytes);
}

}  // namespace epcomm::ep
