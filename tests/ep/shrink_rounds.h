// The oracle of the shrink tests (tests/ep/shrink_test.cpp on forked ranks,
// tests/hosts/shrink_serving.cpp across hosts): identity experts, 4 experts per original rank,
// inputs every rank can regenerate from (original rank, round), and checks of normal and
// low-latency dispatch/combine that know which experts a shrink masked.
#pragma once

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "comm/half.h"
#include "ep/buffer.h"

namespace epcomm::test {

inline constexpr int kTokens = 24, kHidden = 256, kTopk = 4, kExpertsPerRank = 4;

// The ranks the experts were laid out over and the one that dies.
struct MaskedLayout {
  int originalRanks = 0;
  int victim = 0;
  int numExperts() const { return originalRanks * kExpertsPerRank; }
};

// Token t of original rank o: values k / 8 (exact in bf16, sums of a few stay exact).
inline float valueOf(int o, int t, int h) {
  return static_cast<float>((o * 131 + t * 7 + h) % 61 - 30) / 8.f;
}

// Routing of token t in round `round`: some tokens go only to the victim's experts (their
// combine must be zero once it is masked), some have empty slots, the rest spread.
inline std::int64_t expertOf(const MaskedLayout& l, int t, int k, int round) {
  if (t % 8 == 0) return l.victim * kExpertsPerRank + k;  // only the victim's experts
  if (t % 8 == 1 && k >= 2) return -1;
  return (t * 5 + k * 3 + round) % l.numExperts();
}
inline float weightOf(int k) {
  return 0.25f * static_cast<float>(k + 1);
}

struct Routing {
  std::vector<Bf16> x;
  std::vector<std::int64_t> idx;
  std::vector<float> weights;
};

inline Routing routingOf(const MaskedLayout& l, int original, int round) {
  Routing r;
  r.x.resize(kTokens * kHidden);
  r.idx.resize(kTokens * kTopk);
  r.weights.resize(kTokens * kTopk);
  for (int t = 0; t < kTokens; ++t) {
    for (int h = 0; h < kHidden; ++h) r.x[t * kHidden + h] = toBf16(valueOf(original, t, h));
    for (int k = 0; k < kTopk; ++k) {
      r.idx[t * kTopk + k] = expertOf(l, t, k, round);
      r.weights[t * kTopk + k] = weightOf(k);
    }
  }
  return r;
}

// The communicator rank holding expert e, or -1 where its original rank was not kept.
inline int holderOf(std::int64_t e, const std::vector<int>& kept) {
  const int original = static_cast<int>(e) / kExpertsPerRank;
  const auto it = std::find(kept.begin(), kept.end(), original);
  return it == kept.end() ? -1 : static_cast<int>(it - kept.begin());
}

inline bool near(float got, float want) {
  return std::fabs(got - want) <= 1e-2f * std::max(1.f, std::fabs(want));
}

// One normal dispatch + combine with identity experts: every received row equals its source
// token, and combine sums one copy per communicator rank holding an unmasked expert.
inline bool normalRound(ep::Buffer& buffer, const MaskedLayout& l, const std::vector<int>& kept,
                        int round) {
  const int me = buffer.rank();
  const Routing mine = routingOf(l, kept[me], round);
  ep::DispatchInputs in;
  in.x = mine.x.data();
  in.numTokens = kTokens;
  in.hidden = kHidden;
  in.topkIdx = mine.idx.data();
  in.topkWeights = mine.weights.data();
  in.numTopk = kTopk;
  in.numExperts = l.numExperts();
  ep::DispatchOutputs out;
  buffer.dispatch(in, out);
  // A cached dispatch (DeepEP's handle reuse) of the same tokens gives the same rows.
  ep::DispatchInputs cachedIn = in;
  cachedIn.handle = &out.handle;
  ep::DispatchOutputs cachedOut;
  buffer.dispatch(cachedIn, cachedOut);
  if (cachedOut.numRecvTokens != out.numRecvTokens ||
      (out.numRecvTokens > 0 &&
       std::memcmp(cachedOut.recvX.data(), out.recvX.data(),
                   sizeof(Bf16) * static_cast<std::size_t>(out.numRecvTokens) * kHidden) != 0)) {
    std::fprintf(stderr, "rank %d round %d: cached dispatch differs\n", me, round);
    return false;
  }
  const ep::DispatchHandle& h = out.handle;
  for (int s = 0; s < buffer.numRanks(); ++s) {
    for (std::int64_t row = h.rankPrefix[s]; row < h.rankPrefix[s + 1]; ++row) {
      const int t = h.recvSrcIdx[static_cast<std::size_t>(row)];
      for (int hh = 0; hh < kHidden; hh += 37) {
        if (toFloat(out.recvX[static_cast<std::size_t>(row) * kHidden + hh]) !=
            valueOf(kept[s], t, hh)) {
          std::fprintf(stderr, "rank %d round %d: normal row %ld from %d wrong\n", me, round,
                       static_cast<long>(row), s);
          return false;
        }
      }
    }
  }
  ep::CombineInputs cin;
  cin.x = out.recvX.data();
  cin.hidden = kHidden;
  cin.handle = &out.handle;
  ep::CombineOutputs cout;
  buffer.combine(cin, cout);
  for (int t = 0; t < kTokens; ++t) {
    std::vector<int> ranks;
    for (int k = 0; k < kTopk; ++k) {
      const std::int64_t e = mine.idx[t * kTopk + k];
      const int holder = e < 0 ? -1 : holderOf(e, kept);
      if (holder >= 0 && std::find(ranks.begin(), ranks.end(), holder) == ranks.end()) {
        ranks.push_back(holder);
      }
    }
    for (int hh = 0; hh < kHidden; hh += 13) {
      const float want = valueOf(kept[me], t, hh) * static_cast<float>(ranks.size());
      if (!near(toFloat(cout.combinedX[static_cast<std::size_t>(t) * kHidden + hh]), want)) {
        std::fprintf(stderr, "rank %d round %d: normal combine of token %d wrong\n", me, round, t);
        return false;
      }
    }
  }
  return true;
}

// One low-latency dispatch + combine with identity experts: combine is the weighted sum over
// the unmasked slots. `dieInside`: this rank is killed between sending and receiving.
inline bool lowLatencyRound(ep::Buffer& buffer, const MaskedLayout& l, const std::vector<int>& kept,
                            int round, bool dieInside = false) {
  const int me = buffer.rank();
  const Routing mine = routingOf(l, kept[me], round);
  ep::LowLatencyDispatchInputs in;
  in.x = mine.x.data();
  in.numTokens = kTokens;
  in.hidden = kHidden;
  in.topkIdx = mine.idx.data();
  in.numTopk = kTopk;
  in.numExperts = l.numExperts();
  in.returnRecvHook = true;
  ep::LowLatencyDispatchOutputs out;
  buffer.lowLatencyDispatch(in, out);
  if (dieInside) raise(SIGKILL);
  out.hook();
  ep::LowLatencyCombineInputs cin;
  cin.x = out.recvX;
  cin.topkIdx = mine.idx.data();
  cin.topkWeights = mine.weights.data();
  cin.handle = out.handle;
  ep::LowLatencyCombineOutputs cout;
  buffer.lowLatencyCombine(cin, cout);
  for (int t = 0; t < kTokens; ++t) {
    float weight = 0.f;
    for (int k = 0; k < kTopk; ++k) {
      const std::int64_t e = mine.idx[t * kTopk + k];
      if (e >= 0 && holderOf(e, kept) >= 0) weight += weightOf(k);
    }
    for (int hh = 0; hh < kHidden; hh += 13) {
      const float want = valueOf(kept[me], t, hh) * weight;
      if (!near(toFloat(cout.combinedX[static_cast<std::size_t>(t) * kHidden + hh]), want)) {
        std::fprintf(stderr, "rank %d round %d: low-latency combine of token %d wrong\n", me, round,
                     t);
        return false;
      }
    }
  }
  return true;
}

inline ep::BufferConfig shrinkBufferConfig() {
  ep::BufferConfig bc;
  bc.normalBytes = std::size_t{16} << 20;
  bc.llMaxTokens = kTokens;
  return bc;
}

}  // namespace epcomm::test
