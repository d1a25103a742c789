// ep::sumRows on one process: every ISA bitwise equal to the documented formula (w0 * x0, then
// fma in row order, one rounding) at every length class (0, 1, odd, not a multiple of the
// vector width, long), weighted and not, 0/1/many rows, NaN, infinities, rounding ties.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <vector>

#include "ep/row_kernels.h"

namespace epcomm::ep {
namespace {

std::uint16_t reference(const std::vector<std::vector<Bf16>>& rows, const float* w, int c) {
  float acc = (w ? w[0] : 1.f) * toFloat(rows[0][c]);
  for (std::size_t r = 1; r < rows.size(); ++r)
    acc = std::fma(w ? w[r] : 1.f, toFloat(rows[r][c]), acc);
  return toBf16(acc).bits;
}

void checkAllIsas(const std::vector<std::vector<Bf16>>& rows, const float* w, int hidden) {
  std::vector<const Bf16*> ptrs;
  for (const auto& r : rows) ptrs.push_back(r.data());
  for (RowIsa isa : {RowIsa::kPortable, RowIsa::kAvx2, RowIsa::kAvx512, RowIsa::kAuto}) {
    std::vector<Bf16> out(hidden + 1, Bf16{0xabcd});
    sumRows(ptrs.data(), w, static_cast<int>(rows.size()), hidden, out.data(), isa);
    for (int c = 0; c < hidden; ++c) {
      const std::uint16_t want = rows.empty()             ? 0
                                 : rows.size() == 1 && !w ? rows[0][c].bits
                                                          : reference(rows, w, c);
      ASSERT_EQ(out[c].bits, want) << "isa " << static_cast<int>(isa) << " rows " << rows.size()
                                   << " hidden " << hidden << " channel " << c;
    }
    EXPECT_EQ(out[hidden].bits, 0xabcd) << "wrote past hidden";
  }
}

TEST(SumRows, EveryIsaMatchesTheFormula) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0, 3);
  for (int hidden : {0, 1, 7, 15, 16, 17, 31, 33, 100, 1027, 7168}) {
    for (int n : {0, 1, 2, 3, 8, 9}) {
      std::vector<std::vector<Bf16>> rows(n, std::vector<Bf16>(hidden));
      for (auto& r : rows)
        for (auto& v : r) v = toBf16(g(rng));
      std::vector<float> w(n);
      for (auto& v : w) v = g(rng);
      checkAllIsas(rows, nullptr, hidden);
      if (n > 0) checkAllIsas(rows, w.data(), hidden);
    }
  }
}

TEST(SumRows, SpecialValuesAndTies) {
  const int hidden = 48;
  std::vector<std::vector<Bf16>> rows(2, std::vector<Bf16>(hidden, toBf16(1.f)));
  rows[0][0] = Bf16{0x7fc0};  // quiet NaN
  rows[1][1] = Bf16{0x7f81};  // signalling NaN
  rows[0][2] = Bf16{0x7f80};  // +inf
  rows[1][2] = Bf16{0xff80};  // -inf: inf - inf = NaN
  rows[0][3] = Bf16{0x7f7f};  // largest finite: overflows to inf
  rows[1][3] = Bf16{0x7f7f};
  rows[0][4] = toBf16(256.f);  // 256 + 1 = 257: a tie between 256 and 258, to even
  rows[1][4] = toBf16(1.f);
  rows[0][5] = Bf16{0x0001};  // denormals are kept, not flushed
  rows[1][5] = Bf16{0x0001};
  rows[0][17] = Bf16{0x8000};  // -0 + -0 = -0
  rows[1][17] = Bf16{0x8000};
  checkAllIsas(rows, nullptr, hidden);
  const float w[2] = {0.5f, -0.25f};
  checkAllIsas(rows, w, hidden);
  std::vector<const Bf16*> ptrs{rows[0].data(), rows[1].data()};
  std::vector<Bf16> out(hidden);
  sumRows(ptrs.data(), nullptr, 2, hidden, out.data());
  EXPECT_EQ(out[4].bits, toBf16(256.f).bits);
  EXPECT_EQ(out[5].bits, 0x0002);
  EXPECT_EQ(out[17].bits, 0x8000);
  EXPECT_TRUE(std::isnan(toFloat(out[0])) && std::isnan(toFloat(out[1])) &&
              std::isnan(toFloat(out[2])));
  EXPECT_TRUE(std::isinf(toFloat(out[3])));
}

TEST(SumRows, ManyUnweightedRows) {
  std::vector<std::vector<Bf16>> rows(70, std::vector<Bf16>(40, toBf16(0.5f)));
  checkAllIsas(rows, nullptr, 40);
}

}  // namespace
}  // namespace epcomm::ep
