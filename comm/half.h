// bf16 and IEEE f16 storage types with conversions to and from f32 (round to nearest even,
// NaN preserved). Arithmetic on them is done in f32 by the caller. Public: C++17 and up.
#pragma once

#include <cstdint>
#include <cstring>

namespace epcomm {
namespace detail {

// std::bit_cast for C++17 consumers (same code at -O1 and up).
template <typename To, typename From>
inline To bitCast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bitCast needs equal sizes");
  To to;
  std::memcpy(&to, &from, sizeof to);
  return to;
}

}  // namespace detail

struct Bf16 {
  std::uint16_t bits;
};
struct F16 {
  std::uint16_t bits;
};

inline float toFloat(Bf16 v) {
  return detail::bitCast<float>(std::uint32_t{v.bits} << 16);
}

inline Bf16 toBf16(float f) {
  std::uint32_t u = detail::bitCast<std::uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return Bf16{static_cast<std::uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return Bf16{static_cast<std::uint16_t>(u >> 16)};
}

inline float toFloat(F16 v) {
  const std::uint32_t sign = std::uint32_t{v.bits & 0x8000u} << 16;
  const std::uint32_t exp = (v.bits >> 10) & 0x1fu;
  const std::uint32_t mant = v.bits & 0x3ffu;
  if (exp == 0x1f) return detail::bitCast<float>(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return detail::bitCast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return detail::bitCast<float>(sign);
  // Subnormal f16: value = mant * 2^-24, exact in f32.
  const float magnitude = static_cast<float>(mant) * 0x1p-24f;
  return sign ? -magnitude : magnitude;
}

inline F16 toF16(float f) {
  const std::uint32_t u = detail::bitCast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t absU = u & 0x7fffffffu;
  if (absU > 0x7f800000u) return F16{static_cast<std::uint16_t>(sign | 0x7e00u)};   // NaN
  if (absU >= 0x477ff000u) return F16{static_cast<std::uint16_t>(sign | 0x7c00u)};  // overflow
  if (absU < 0x38800000u) {
    // Result is subnormal or zero: scale so that the f16 subnormal unit is 1, round to even.
    const float scaled = detail::bitCast<float>(absU) * 0x1p24f;
    // Adding 2^23 forces rounding at the integer position (round to nearest even).
    const float rounded = (scaled + 0x1p23f) - 0x1p23f;
    return F16{static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(rounded))};
  }
  std::uint32_t mant = absU + 0xfffu + ((absU >> 13) & 1u);  // round to nearest even
  mant -= 112u << 23;                                        // rebias 127 -> 15
  return F16{static_cast<std::uint16_t>(sign | (mant >> 13))};
}

}  // namespace epcomm
