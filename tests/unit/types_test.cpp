#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "comm/half.h"
#include "comm/types.h"

namespace epcomm {
namespace {

TEST(Types, SizesNamesAndParsing) {
  for (DataType d : kAllDataTypes) {
    EXPECT_TRUE(isValid(d));
    EXPECT_EQ(parseDataType(toString(d)), d);
  }
  for (ReduceOp o : kAllReduceOps) EXPECT_EQ(parseReduceOp(toString(o)), o);
  EXPECT_EQ(dtypeSize(DataType::kBf16), 2u);
  EXPECT_EQ(dtypeSize(DataType::kI64), 8u);
  EXPECT_FALSE(isValid(static_cast<DataType>(3)));  // NCCL's uint32: not supported
  EXPECT_FALSE(isValid(static_cast<ReduceOp>(5)));
  EXPECT_FALSE(parseDataType("f64").has_value());
  EXPECT_EQ(parseDataType("float"), DataType::kF32);
}

TEST(Half, F16RoundTripsEveryValue) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const F16 h{static_cast<std::uint16_t>(bits)};
    const float f = toFloat(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(toFloat(toF16(f))));
      continue;
    }
    EXPECT_EQ(toF16(f).bits, h.bits) << std::hex << bits;
  }
}

TEST(Half, Bf16RoundTripsEveryValue) {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const Bf16 b{static_cast<std::uint16_t>(bits)};
    const float f = toFloat(b);
    if (std::isnan(f)) continue;
    EXPECT_EQ(toBf16(f).bits, b.bits) << std::hex << bits;
  }
}

TEST(Half, RoundsToNearestEven) {
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  EXPECT_EQ(toFloat(toBf16(1.0f + 0x1p-8f)), 1.0f);
  EXPECT_EQ(toFloat(toBf16(1.0f + 0x1p-8f + 0x1p-20f)), 1.0078125f);
  // f16: 1 + 2^-11 ties to 1.0; 65520 overflows to inf; 2^-25 rounds to 0, 2^-24 is the
  // smallest subnormal.
  EXPECT_EQ(toFloat(toF16(1.0f + 0x1p-11f)), 1.0f);
  EXPECT_TRUE(std::isinf(toFloat(toF16(65520.0f))));
  EXPECT_EQ(toFloat(toF16(65504.0f)), 65504.0f);
  EXPECT_EQ(toFloat(toF16(0x1p-25f)), 0.0f);
  EXPECT_EQ(toFloat(toF16(0x1p-24f)), 0x1p-24f);
  EXPECT_EQ(toFloat(toF16(-3.5f)), -3.5f);
}

}  // namespace
}  // namespace epcomm
