// Inputs and oracles of the EP tests (DeepEP's tests/test_intranode.py and
// test_low_latency.py, in C++). Every rank can regenerate every rank's inputs from (seed,
// rank), so references need no extra communication.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "comm/communicator.h"
#include "comm/half.h"
#include "ep/buffer.h"
#include "ep/normal.h"

namespace epcomm::test {

extern Communicator* gComm;

using ep::Buffer;
using ep::BufferConfig;

// A fixture over the suite's communicator (gComm, made by the test's main).
template <typename Base = ::testing::Test>
class OnSuiteComm : public Base {
 protected:
  Communicator& comm() { return *gComm; }
  int rank() { return gComm->rank(); }
  int size() { return gComm->size(); }
};

// The routing shape of a run (ep_test --skewed): kSpread sends every rank's tokens
// everywhere; kSkewed gives rank 0 no tokens (it sends nothing) and routes no token to the
// last rank's experts (it receives nothing), so every oracle also covers empty arrays.
enum class Routing { kSpread, kSkewed };
extern Routing gRouting;

// True where rank `rank` of `ranks` sends nothing in this run.
inline bool sendsNothing(int rank, int ranks) {
  return gRouting == Routing::kSkewed && ranks > 1 && rank == 0;
}
// The experts tokens may be routed to in this run: [0, routableExperts).
inline int routableExperts(int numExperts, int ranks) {
  return gRouting == Routing::kSkewed && ranks > 1 ? numExperts - numExperts / ranks : numExperts;
}

struct EpInputs {
  int numTokens = 0;
  int hidden = 0;
  int numTopk = 0;
  int numExperts = 0;
  std::vector<Bf16> x;                // [numTokens, hidden]
  std::vector<std::int64_t> topkIdx;  // [numTokens, numTopk]
  std::vector<float> topkWeights;     // [numTokens, numTopk]
};

// Normal-mode dispatch inputs over `in` (quant, handle and alignment left at their defaults).
inline ep::DispatchInputs dispatchInputsOf(const EpInputs& in) {
  ep::DispatchInputs d;
  d.x = in.x.data();
  d.numTokens = in.numTokens;
  d.hidden = in.hidden;
  d.topkIdx = in.topkIdx.data();
  d.topkWeights = in.topkWeights.data();
  d.numTopk = in.numTopk;
  d.numExperts = in.numExperts;
  return d;
}

// Normal-mode combine inputs sending back every row `out` received (as identity experts
// would), with its topk weights; weighted or not.
inline ep::CombineInputs combineInputsOf(const ep::DispatchOutputs& out, int hidden, int numTopk,
                                         bool weighted) {
  ep::CombineInputs c;
  c.x = out.recvX.data();
  c.hidden = hidden;
  c.topkWeights = out.recvTopkWeights.data();
  c.numTopk = numTopk;
  c.weighted = weighted;
  c.handle = &out.handle;
  return c;
}

// Low-latency dispatch inputs over `in` (bf16, no hook).
inline ep::LowLatencyDispatchInputs lowLatencyInputsOf(const EpInputs& in) {
  ep::LowLatencyDispatchInputs d;
  d.x = in.x.data();
  d.numTokens = in.numTokens;
  d.hidden = in.hidden;
  d.topkIdx = in.topkIdx.data();
  d.numTopk = in.numTopk;
  d.numExperts = in.numExperts;
  return d;
}

// DeepEP's shape: experts divisible by the rank count.
inline int expertsFor(int ranks, int perRankTarget = 8) {
  return perRankTarget * ranks;
}

// Tokens of `rank` in a test: differ per rank; rank 1 of 3+ ranks may have none when
// `allowEmpty`.
inline int tokensFor(int rank, int base) {
  return base + 5 * rank;
}

enum class Fill {
  kRankRows,  // every channel = source rank, but the last two = token index (lo, hi)
  kRandom,    // Gaussian values
};

// Distinct experts per token, ~10% of slots -1, token 0 (and every 17th) routed nowhere.
// Under Routing::kSkewed rank 0 gets no tokens and the last rank's experts none.
inline EpInputs makeInputs(int seed, int rank, int numTokens, int hidden, int numTopk,
                           int numExperts, Fill fill) {
  const int ranks = gComm ? gComm->size() : 1;
  if (sendsNothing(rank, ranks)) numTokens = 0;
  const int routable = routableExperts(numExperts, ranks);
  EpInputs in;
  in.numTokens = numTokens;
  in.hidden = hidden;
  in.numTopk = numTopk;
  in.numExperts = numExperts;
  std::mt19937_64 rng(static_cast<std::uint64_t>(seed) * 7919 + static_cast<std::uint64_t>(rank));
  std::normal_distribution<float> gauss(0.f, 1.f);
  std::uniform_real_distribution<float> unit(0.f, 1.f);
  in.x.resize(static_cast<std::size_t>(numTokens) * hidden);
  in.topkIdx.resize(static_cast<std::size_t>(numTokens) * numTopk);
  in.topkWeights.resize(in.topkIdx.size());
  std::vector<int> experts(numExperts);
  for (int t = 0; t < numTokens; ++t) {
    Bf16* row = in.x.data() + static_cast<std::size_t>(t) * hidden;
    for (int c = 0; c < hidden; ++c) {
      row[c] = fill == Fill::kRankRows ? toBf16(static_cast<float>(rank)) : toBf16(gauss(rng));
    }
    if (fill == Fill::kRankRows) {
      row[hidden - 1] = toBf16(static_cast<float>(t % 256));
      row[hidden - 2] = toBf16(static_cast<float>(t / 256));
    }
    for (int e = 0; e < numExperts; ++e) experts[e] = e;
    const bool nowhere = t % 17 == 0;
    for (int k = 0; k < numTopk; ++k) {
      std::uniform_int_distribution<int> pick(k, routable - 1);
      std::swap(experts[k], experts[pick(rng)]);
      const bool drop = nowhere || unit(rng) < 0.1f;
      in.topkIdx[static_cast<std::size_t>(t) * numTopk + k] = drop ? -1 : experts[k];
      in.topkWeights[static_cast<std::size_t>(t) * numTopk + k] = 0.1f + unit(rng);
    }
  }
  return in;
}

inline int tokenFromRow(const Bf16* row, int hidden) {
  return static_cast<int>(toFloat(row[hidden - 1])) +
         256 * static_cast<int>(toFloat(row[hidden - 2]));
}

// DeepEP's calc_diff on x + 1, y + 1: 1 - 2 sum(xy) / sum(x^2 + y^2).
inline double calcDiff(const std::vector<double>& x, const std::vector<double>& y) {
  double xy = 0, xx = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double a = x[i] + 1, b = y[i] + 1;
    xy += a * b;
    xx += a * a + b * b;
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}

}  // namespace epcomm::test
