#include "bench/ep_bench_data.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

namespace epcomm::bench {

EpData makeEpData(int seed, int rank, int numTokens, int hidden, int numTopk, int numExperts,
                  bool rankRows) {
  EpData d{numTokens, hidden, numTopk, numExperts, {}, {}, {}};
  std::mt19937_64 rng(static_cast<std::uint64_t>(seed) * 1000003 + rank);
  std::normal_distribution<float> gauss(0.f, 1.f);
  d.x.resize(static_cast<std::size_t>(numTokens) * hidden);
  for (int t = 0; t < numTokens; ++t) {
    Bf16* row = d.x.data() + static_cast<std::size_t>(t) * hidden;
    if (rankRows) {
      expectedRow(rank, t, hidden, ep::Quant::kNone, row);
    } else {
      for (int c = 0; c < hidden; ++c) row[c] = toBf16(gauss(rng));
    }
  }
  d.topkIdx.resize(static_cast<std::size_t>(numTokens) * numTopk);
  d.topkWeights.resize(d.topkIdx.size());
  std::vector<float> scores(numExperts);
  std::vector<int> order(numExperts);
  for (int t = 0; t < numTokens; ++t) {
    for (float& s : scores) s = std::fabs(gauss(rng)) + 1;
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + numTopk, order.end(),
                      [&](int a, int b) { return scores[a] > scores[b]; });
    for (int k = 0; k < numTopk; ++k) {
      d.topkIdx[static_cast<std::size_t>(t) * numTopk + k] = order[k];
      d.topkWeights[static_cast<std::size_t>(t) * numTopk + k] = scores[order[k]] / 4;
    }
  }
  // A few -1 slots, as DeepEP's low-latency test.
  std::uniform_int_distribution<std::size_t> slot(0, d.topkIdx.empty() ? 0 : d.topkIdx.size() - 1);
  for (int i = 0; i < 10 && !d.topkIdx.empty(); ++i) d.topkIdx[slot(rng)] = -1;
  return d;
}

void expectedRow(int src, int t, int hidden, ep::Quant quant, Bf16* out) {
  for (int c = 0; c < hidden; ++c) out[c] = toBf16(static_cast<float>(src));
  out[hidden - 1] = toBf16(static_cast<float>(t % 256));
  out[hidden - 2] = toBf16(static_cast<float>(t / 256));
  if (ep::isInt8(quant)) {
    const int group = ep::quantGroupSize(quant, hidden);
    std::vector<std::int8_t> q(hidden);
    std::vector<float> s(hidden / group);
    ep::quantizeInt8(out, hidden, group, q.data(), s.data());
    ep::dequantizeInt8(q.data(), s.data(), hidden, group, out);
  }
}

double calcDiff(const Bf16* x, const double* scale, const Bf16* y, int rows, int hidden) {
  double xy = 0, xx = 0;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < hidden; ++c) {
      const std::size_t i = static_cast<std::size_t>(r) * hidden + c;
      const double a = toFloat(x[i]) * scale[r] + 1, b = toFloat(y[i]) + 1;
      xy += a * b;
      xx += a * a + b * b;
    }
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}

void copyValidRows(const ep::LowLatencyDispatchOutputs& out, int hidden, const Bf16* from,
                   Bf16* to) {
  const std::size_t rowsPerExpert = static_cast<std::size_t>(out.maxTokens) * out.numRanks;
  for (int e = 0; e < out.numLocalExperts; ++e) {
    const std::size_t first = e * rowsPerExpert * hidden;
    std::memcpy(to + first, from + first,
                static_cast<std::size_t>(out.recvCount[e]) * hidden * sizeof(Bf16));
  }
}

void copyReceivedRows(const ep::LowLatencyDispatchOutputs& out, int hidden, Bf16* to) {
  if (!out.recvRows) return copyValidRows(out, hidden, out.recvX, to);
  const std::size_t rowsPerExpert = static_cast<std::size_t>(out.maxTokens) * out.numRanks;
  for (int e = 0; e < out.numLocalExperts; ++e) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(out.recvCount[e]); ++i) {
      const std::size_t row = e * rowsPerExpert + i;
      std::memcpy(to + row * hidden, out.recvRows[row], hidden * sizeof(Bf16));
    }
  }
}

}  // namespace epcomm::bench
