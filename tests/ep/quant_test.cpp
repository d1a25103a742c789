// The int8 error bound of ep/quant.h, on one process: |q*s - x| <= max|x|_group / 254
// + max|x| * 2^-20 of f32 rounding (+ |x| * 2^-8 once rounded to bf16), zero groups, extreme
// values, per-token groups.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ep/quant.h"

namespace epcomm::ep {
namespace {

void checkBound(const std::vector<Bf16>& x, int hidden, int group) {
  std::vector<std::int8_t> q(hidden);
  std::vector<float> s(hidden / group);
  std::vector<Bf16> back(hidden);
  quantizeInt8(x.data(), hidden, group, q.data(), s.data());
  dequantizeInt8(q.data(), s.data(), hidden, group, back.data());
  for (int g = 0; g < hidden / group; ++g) {
    float amax = 0;
    for (int c = g * group; c < (g + 1) * group; ++c)
      amax = std::max(amax, std::fabs(toFloat(x[c])));
    EXPECT_FLOAT_EQ(s[g], amax / 127.f);
    for (int c = g * group; c < (g + 1) * group; ++c) {
      const float v = toFloat(x[c]);
      EXPECT_LE(std::abs(int{q[c]}), 127);
      EXPECT_LE(std::fabs(q[c] * s[g] - v), amax / 254.f + amax * 0x1p-20f) << c;
      EXPECT_LE(std::fabs(toFloat(back[c]) - v),
                amax / 254.f + amax * 0x1p-20f + std::fabs(v) / 256.f)
          << c;
    }
  }
}

TEST(Quant, ErrorBoundGaussianAndScaled) {
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0, 1);
  for (float scale : {1e-3f, 1.f, 300.f}) {
    std::vector<Bf16> x(1024);
    for (auto& v : x) v = toBf16(g(rng) * scale);
    checkBound(x, 1024, 128);
    checkBound(x, 1024, 1024);  // per token
  }
}

TEST(Quant, ZeroGroupsAndExtremes) {
  std::vector<Bf16> x(256, toBf16(0.f));
  for (int c = 128; c < 256; ++c) x[c] = toBf16(c % 2 ? 3.0e38f : -1e-38f);
  checkBound(x, 256, 128);
  std::vector<std::int8_t> q(256);
  std::vector<float> s(2);
  quantizeInt8(x.data(), 256, 128, q.data(), s.data());
  EXPECT_EQ(s[0], 0.f);
  for (int c = 0; c < 128; ++c) EXPECT_EQ(q[c], 0);
}

// The implementation's exact formula (ep/src/quant.cpp): s = amax / 127, q = round half to
// even of x * (127 / amax), whichever vector path the CPU takes.
TEST(Quant, BitwiseTheFormulaOnEveryPath) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0, 2);
  for (int hidden : {128, 256, 7168, 96, 100}) {
    for (int group : {128, hidden}) {
      if (hidden % group != 0) continue;
      std::vector<Bf16> x(hidden);
      for (auto& v : x) v = toBf16(g(rng));
      if (hidden >= 256) x[200] = toBf16(-1000.f);  // one group with a dominant value
      std::vector<std::int8_t> q(hidden);
      std::vector<float> s(hidden / group);
      quantizeInt8(x.data(), hidden, group, q.data(), s.data());
      for (int c0 = 0; c0 < hidden; c0 += group) {
        float amax = 0;
        for (int c = c0; c < c0 + group; ++c) amax = std::max(amax, std::fabs(toFloat(x[c])));
        ASSERT_EQ(s[c0 / group], amax / 127.f);
        const float inv = amax > 0 ? 127.f / amax : 0.f;
        for (int c = c0; c < c0 + group; ++c) {
          ASSERT_EQ(int{q[c]}, static_cast<int>(std::nearbyint(toFloat(x[c]) * inv)))
              << "hidden " << hidden << " group " << group << " channel " << c;
        }
      }
    }
  }
}

TEST(Quant, ShapesAndDefaults) {
  EXPECT_EQ(numScales(Quant::kInt8Group, 7168), 56);
  EXPECT_EQ(numScales(Quant::kInt8PerToken, 7168), 1);
  EXPECT_EQ(numScales(Quant::kNone, 7168), 0);
  // int8 payload of a DeepSeek-V3 token: 7168 + 56 * 4 bytes = 51.6% of bf16.
  EXPECT_LE((7168 + 56 * 4) / (2.0 * 7168), 0.52);
}

}  // namespace
}  // namespace epcomm::ep
