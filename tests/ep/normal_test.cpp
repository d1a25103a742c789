// Normal mode against DeepEP's oracles: rank-valued rows identify their source, a column
// carries the token index, received counts equal the all-reduced layout, recvTopkIdx is in
// {-1} u [0, E/R), combine(dispatch(x)) = x times the number of ranks it went to, weighted
// combine = x times the sum of its valid weights. Also rounds, cached mode, alignment.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "ep/buffer.h"
#include "tests/ep/ep_test_util.h"

namespace epcomm::test {
namespace {

using ep::Transport;

class Normal : public OnSuiteComm<> {
 protected:
  static BufferConfig config() {
    BufferConfig c;
    c.normalBytes = std::size_t{64} << 20;
    c.hostRelay = BufferConfig::fromEnvironment().hostRelay;  // EPCOMM_EP_HOST_RELAY=0 runs flat
    return c;
  }
};

constexpr int kHidden = 512;
constexpr int kTopk = 4;

// Every check on the dispatch of rank-row inputs (seed) that DeepEP's test makes.
void checkDispatch(Communicator& comm, int seed, int baseTokens, const ep::DispatchOutputs& out,
                   int alignment) {
  const int R = comm.size(), me = comm.rank(), E = expertsFor(R), local = E / R;
  const ep::DispatchHandle& h = out.handle;
  std::vector<std::int64_t> perExpert(E, 0);
  std::int64_t row = 0;
  long long wrong = 0;
  for (int s = 0; s < R; ++s) {
    const EpInputs src =
        makeInputs(seed, s, tokensFor(s, baseTokens), kHidden, kTopk, E, Fill::kRankRows);
    EXPECT_EQ(h.rankPrefix[s], row) << "source " << s;
    for (int t = 0; t < src.numTokens; ++t) {
      bool toMe = false;
      for (int k = 0; k < kTopk; ++k) {
        const std::int64_t e = src.topkIdx[t * kTopk + k];
        if (e < 0) continue;
        ++perExpert[e];
        toMe |= e / local == me;
      }
      if (!toMe) continue;
      if (row >= out.numRecvTokens) {
        ++wrong;
        continue;
      }
      const Bf16* x = out.recvX.data() + row * kHidden;
      for (int c = 0; c < kHidden - 2; ++c) wrong += toFloat(x[c]) != static_cast<float>(s);
      wrong += tokenFromRow(x, kHidden) != t;
      wrong += h.recvSrcIdx[row] != t;
      for (int k = 0; k < kTopk; ++k) {
        const std::int64_t e = src.topkIdx[t * kTopk + k];
        const bool isLocal = e >= 0 && e / local == me;
        const std::int64_t got = out.recvTopkIdx[row * kTopk + k];
        wrong += got != (isLocal ? e - me * local : -1);
        wrong += got < -1 || got >= local;
        wrong += out.recvTopkWeights[row * kTopk + k] !=
                 (isLocal ? src.topkWeights[t * kTopk + k] : 0.f);
      }
      ++row;
    }
  }
  EXPECT_EQ(out.numRecvTokens, row);
  EXPECT_EQ(h.rankPrefix[R], row);
  EXPECT_EQ(wrong, 0) << "rank " << me;
  // Counts equal the all-reduced layout, rounded up to the alignment.
  ASSERT_EQ(out.numRecvTokensPerExpert.size(), static_cast<std::size_t>(local));
  for (int e = 0; e < local; ++e) {
    const std::int64_t c = perExpert[me * local + e];
    EXPECT_EQ(out.numRecvTokensPerExpert[e], (c + alignment - 1) / alignment * alignment)
        << "local expert " << e;
  }
}

TEST_F(Normal, LayoutMatchesReferenceOnEveryRank) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  const EpInputs in =
      makeInputs(1, rank(), tokensFor(rank(), 40), kHidden, kTopk, E, Fill::kRankRows);
  ep::LayoutOutputs layout;
  buffer.getDispatchLayout({in.topkIdx.data(), in.numTokens, kTopk, E}, layout);
  std::vector<std::int32_t> perRank(size(), 0), perExpert(E, 0);
  long long wrong = 0;
  for (int t = 0; t < in.numTokens; ++t) {
    std::vector<int> hit(size(), 0);
    for (int k = 0; k < kTopk; ++k) {
      const auto e = in.topkIdx[t * kTopk + k];
      if (e < 0) continue;
      ++perExpert[e];
      hit[e / (E / size())] = 1;
    }
    for (int r = 0; r < size(); ++r) {
      perRank[r] += hit[r];
      wrong += layout.isTokenInRank[t * size() + r] != hit[r];
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_TRUE(std::equal(perRank.begin(), perRank.end(), layout.numTokensPerRank.begin()));
  EXPECT_TRUE(std::equal(perExpert.begin(), perExpert.end(), layout.numTokensPerExpert.begin()));
}

TEST_F(Normal, DispatchOraclesBf16) {
  Buffer buffer(comm(), config());
  for (int alignment : {1, 4}) {
    const EpInputs in = makeInputs(2, rank(), tokensFor(rank(), 60), kHidden, kTopk,
                                   expertsFor(size()), Fill::kRankRows);
    ep::DispatchInputs d = dispatchInputsOf(in);
    d.expertAlignment = alignment;
    ep::DispatchOutputs out;
    buffer.dispatch(d, out);
    checkDispatch(comm(), 2, 60, out, alignment);
  }
}

// combine(dispatch(x)) = x * (ranks it went to); weighted = x * sum of valid weights; the
// combined topk weights are the valid weights (DeepEP).
void checkCombine(Buffer& buffer, Communicator& comm, int seed, int baseTokens, bool int8) {
  const int R = comm.size(), me = comm.rank(), E = expertsFor(R), local = E / R;
  const EpInputs in =
      makeInputs(seed, me, tokensFor(me, baseTokens), kHidden, kTopk, E, Fill::kRandom);
  ep::DispatchInputs d = dispatchInputsOf(in);
  d.quant = int8 ? ep::Quant::kInt8Group : ep::Quant::kNone;
  d.dequantize = int8;
  ep::DispatchOutputs out;
  buffer.dispatch(d, out);
  for (bool weighted : {false, true}) {
    ep::CombineInputs c;
    c.x = out.recvX.data();
    c.hidden = kHidden;
    c.handle = &out.handle;
    c.topkWeights = out.recvTopkWeights.data();
    c.numTopk = kTopk;
    c.weighted = weighted;
    ep::CombineOutputs back;
    buffer.combine(c, back);
    EXPECT_EQ(back.numTokens, in.numTokens);
    std::vector<double> want, got;
    long long wrongWeights = 0;
    for (int t = 0; t < in.numTokens; ++t) {
      std::vector<int> hit(R, 0);
      double weightSum = 0;
      for (int k = 0; k < kTopk; ++k) {
        const auto e = in.topkIdx[t * kTopk + k];
        const float w = e >= 0 ? in.topkWeights[t * kTopk + k] : 0.f;
        if (e >= 0) hit[e / local] = 1;
        weightSum += w;
        wrongWeights += std::fabs(back.combinedTopkWeights[t * kTopk + k] - w) > 1e-6f;
      }
      const int ranks = static_cast<int>(std::count(hit.begin(), hit.end(), 1));
      const double factor = weighted ? weightSum : ranks;
      for (int c2 = 0; c2 < kHidden; ++c2) {
        want.push_back(toFloat(in.x[t * kHidden + c2]) * factor);
        got.push_back(toFloat(back.combinedX[t * kHidden + c2]));
      }
    }
    const double diff = calcDiff(want, got);
    EXPECT_LT(diff, int8 ? 3e-3 : 5e-6) << "weighted " << weighted << " int8 " << int8;
    EXPECT_EQ(wrongWeights, 0);
  }
}

TEST_F(Normal, CombineUnweightedAndWeightedBf16) {
  Buffer buffer(comm(), config());
  checkCombine(buffer, comm(), 3, 50, false);
}

TEST_F(Normal, CombineInt8Dequantised) {
  Buffer buffer(comm(), config());
  checkCombine(buffer, comm(), 4, 50, true);
}

TEST_F(Normal, CachedDispatchReusesTheLayout) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  const EpInputs first =
      makeInputs(5, rank(), tokensFor(rank(), 30), kHidden, kTopk, E, Fill::kRankRows);
  ep::DispatchOutputs out;
  buffer.dispatch(dispatchInputsOf(first), out);
  // New token values, same routing: pass the handle (aliasing out.handle is allowed).
  const EpInputs second = makeInputs(6, rank(), first.numTokens, kHidden, kTopk, E, Fill::kRandom);
  ep::DispatchInputs d;
  d.x = second.x.data();
  d.numTokens = second.numTokens;
  d.hidden = kHidden;
  d.handle = &out.handle;
  const std::vector<std::int32_t> srcIdx = out.handle.recvSrcIdx;
  buffer.dispatch(d, out);
  EXPECT_EQ(out.numTopk, 0);
  long long wrong = 0;
  for (int s = 0; s < size(); ++s) {
    const EpInputs src = makeInputs(6, s, tokensFor(s, 30), kHidden, kTopk, E, Fill::kRandom);
    for (std::int64_t row = out.handle.rankPrefix[s]; row < out.handle.rankPrefix[s + 1]; ++row) {
      const int t = srcIdx[row];
      wrong += std::memcmp(out.recvX.data() + row * kHidden, src.x.data() + t * kHidden,
                           kHidden * sizeof(Bf16)) != 0;
    }
  }
  EXPECT_EQ(wrong, 0);
}

// DeepEP's layout arguments are taken as given: the same layout gives the same rows, and a
// layout that sends every token everywhere moves every token everywhere (ids -1 where no
// expert is local): the rows follow isTokenInRank, not a recomputation from topkIdx.
TEST_F(Normal, LayoutArgumentsAreUsedAsGiven) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  const EpInputs in =
      makeInputs(13, rank(), tokensFor(rank(), 30), kHidden, kTopk, E, Fill::kRandom);
  ep::LayoutOutputs layout;
  buffer.getDispatchLayout({in.topkIdx.data(), in.numTokens, kTopk, E}, layout);
  ep::DispatchOutputs derived, given, everywhere;
  buffer.dispatch(dispatchInputsOf(in), derived);
  ep::DispatchInputs d = dispatchInputsOf(in);
  d.isTokenInRank = layout.isTokenInRank.data();
  d.numTokensPerExpert = layout.numTokensPerExpert.data();
  buffer.dispatch(d, given);
  ASSERT_EQ(given.numRecvTokens, derived.numRecvTokens);
  const std::size_t n = static_cast<std::size_t>(derived.numRecvTokens);
  if (n > 0) {
    EXPECT_EQ(std::memcmp(given.recvX.data(), derived.recvX.data(), n * kHidden * sizeof(Bf16)), 0);
  }
  const std::vector<std::uint8_t> all(static_cast<std::size_t>(in.numTokens) * size(), 1);
  d.isTokenInRank = all.data();
  buffer.dispatch(d, everywhere);
  std::int64_t total = in.numTokens;
  comm().allReduce(&total, &total, 1, DataType::kI64, ReduceOp::kSum);
  EXPECT_EQ(everywhere.numRecvTokens, total);
}

// DeepEP's pre-quantised x: the caller's int8 rows and scales (here column-major) arrive as
// they would had the Buffer quantised x itself.
TEST_F(Normal, PreQuantisedInputArrivesAsQuantisedByTheBuffer) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  const EpInputs in =
      makeInputs(11, rank(), tokensFor(rank(), 30), kHidden, kTopk, E, Fill::kRandom);
  ep::DispatchInputs byBuffer = dispatchInputsOf(in);
  byBuffer.quant = ep::Quant::kInt8Group;
  ep::DispatchOutputs want, got;
  buffer.dispatch(byBuffer, want);
  const int groups = kHidden / ep::kQuantGroup;
  const std::size_t n = static_cast<std::size_t>(in.numTokens);
  std::vector<std::int8_t> q(n * kHidden);
  std::vector<float> rowScales(groups), scales(n * groups);  // scales column-major [g][t]
  for (std::size_t t = 0; t < n; ++t) {
    ep::quantizeInt8(in.x.data() + t * kHidden, kHidden, ep::kQuantGroup, q.data() + t * kHidden,
                     rowScales.data());
    for (int g = 0; g < groups; ++g) scales[g * n + t] = rowScales[g];
  }
  ep::DispatchInputs pre = dispatchInputsOf(in);
  pre.x = nullptr;
  pre.xInt8 = q.data();
  pre.xScales = scales.data();
  pre.scalesTokenStride = 1;
  pre.scalesGroupStride = static_cast<std::int64_t>(n);
  pre.quant = ep::Quant::kInt8Group;
  buffer.dispatch(pre, got);
  ASSERT_EQ(got.numRecvTokens, want.numRecvTokens);
  const std::size_t rows = static_cast<std::size_t>(want.numRecvTokens);
  if (rows == 0) return;  // an empty output's data() may be null
  EXPECT_EQ(std::memcmp(got.recvXInt8.data(), want.recvXInt8.data(), rows * kHidden), 0);
  EXPECT_EQ(
      std::memcmp(got.recvScales.data(), want.recvScales.data(), rows * groups * sizeof(float)), 0);
}

// DeepEP's num_worst_tokens: the same rows, padded to exactly that many (x zero, ids -1,
// weights 0), no per-expert counts; fewer rows than one rank receives fails on every rank,
// fresh or cached, and the Buffer stays usable.
TEST_F(Normal, WorstTokensPadsEveryOutput) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  const EpInputs in =
      makeInputs(9, rank(), tokensFor(rank(), 30), kHidden, kTopk, E, Fill::kRandom);
  ep::DispatchOutputs plain, padded;
  buffer.dispatch(dispatchInputsOf(in), plain);
  // padded first holds a small int8 dispatch's arrays: only the bf16 ones are padded below.
  ep::DispatchInputs small = dispatchInputsOf(in);
  small.numTokens = std::min(in.numTokens, 1);
  small.quant = ep::Quant::kInt8Group;
  buffer.dispatch(small, padded);
  ep::DispatchInputs d = dispatchInputsOf(in);
  const int worst = plain.numRecvTokens + 5;
  d.numWorstTokens = worst;
  buffer.dispatch(d, padded);
  const std::size_t n = static_cast<std::size_t>(plain.numRecvTokens);
  ASSERT_EQ(padded.numRecvTokens, plain.numRecvTokens);
  ASSERT_EQ(padded.recvX.size(), static_cast<std::size_t>(worst) * kHidden);
  ASSERT_EQ(padded.recvTopkIdx.size(), static_cast<std::size_t>(worst) * kTopk);
  EXPECT_TRUE(padded.numRecvTokensPerExpert.empty());
  if (n > 0) {  // an empty output's data() may be null
    EXPECT_EQ(std::memcmp(padded.recvX.data(), plain.recvX.data(), n * kHidden * sizeof(Bf16)), 0);
    EXPECT_EQ(std::memcmp(padded.recvTopkIdx.data(), plain.recvTopkIdx.data(),
                          n * kTopk * sizeof(std::int64_t)),
              0);
  }
  int badPadding = 0;
  for (std::size_t i = n * kHidden; i < padded.recvX.size(); ++i) {
    badPadding += padded.recvX.data()[i].bits != 0;
  }
  for (std::size_t i = n * kTopk; i < padded.recvTopkIdx.size(); ++i) {
    badPadding += padded.recvTopkIdx.data()[i] != -1 || padded.recvTopkWeights.data()[i] != 0.f;
  }
  EXPECT_EQ(badPadding, 0);
  // Too small on one rank only: the last one that receives rows (skewed runs: not the last).
  int bad = plain.numRecvTokens > 0 ? rank() : -1;
  comm().allReduce(&bad, &bad, 1, DataType::kI32, ReduceOp::kMax);
  if (bad < 0) return;  // no rank receives anything: none can be given too few rows
  int badRows = plain.numRecvTokens;
  comm().broadcast(&badRows, &badRows, 1, DataType::kI32, bad);
  const std::string want = "numWorstTokens " + std::to_string(badRows - 1) +
                           " is smaller than the " + std::to_string(badRows) + " rows";
  for (const ep::DispatchHandle* cached : {static_cast<const ep::DispatchHandle*>(nullptr),
                                           static_cast<const ep::DispatchHandle*>(&plain.handle)}) {
    d.handle = cached;
    d.numWorstTokens = rank() == bad ? badRows - 1 : worst;
    try {
      buffer.dispatch(d, padded);
      ADD_FAILURE() << "rank " << rank() << ": no error (cached " << (cached != nullptr) << ")";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(comm().aborted());
  d.handle = nullptr;
  d.numWorstTokens = worst;
  buffer.dispatch(d, padded);
  EXPECT_EQ(padded.numRecvTokens, plain.numRecvTokens);
}

// DeepEP-Ascend's rounds: rounds of roundTokens tokens, at most `rounds` of them (0: no
// limit); a batch that fits one round runs in one (the GLM-5 guide's 72 / 1024).
TEST_F(Normal, RoundsGiveTheSameResult) {
  const int maxTokens = tokensFor(size() - 1, 60);  // the largest rank's batch
  for (const auto& [rounds, roundTokens, combineRounds, wantRounds] :
       {std::tuple{0, 7, true, (maxTokens + 6) / 7}, std::tuple{3, 16, false, 3},
        std::tuple{8, 16, true, (maxTokens + 15) / 16}, std::tuple{72, 1024, true, 1},
        std::tuple{5, 0, false, 1}}) {
    BufferConfig c = config();
    c.rounds = rounds;
    c.roundTokens = roundTokens;
    c.combineRounds = combineRounds;
    Buffer buffer(comm(), c);
    const EpInputs in = makeInputs(2, rank(), tokensFor(rank(), 60), kHidden, kTopk,
                                   expertsFor(size()), Fill::kRankRows);
    ep::DispatchOutputs out;
    buffer.dispatch(dispatchInputsOf(in), out);
    EXPECT_EQ(out.handle.numRounds, wantRounds) << rounds << " x " << roundTokens;
    checkDispatch(comm(), 2, 60, out, 1);
    checkCombine(buffer, comm(), 7, 45, false);
  }
}

// Two arrays of the same size and bytes.
template <typename A, typename B>
bool sameBits(const A& x, const B& y) {
  return x.size() == y.size() &&
         (x.size() == 0 || std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0])) == 0);
}

// Two paths' dispatch outputs of the same call, bitwise.
void expectSameDispatch(const ep::DispatchOutputs& outA, const ep::DispatchOutputs& outB,
                        int tokens, bool int8) {
  EXPECT_TRUE(sameBits(outA.recvX, outB.recvX)) << tokens << " int8 " << int8;
  EXPECT_TRUE(sameBits(outA.recvXInt8, outB.recvXInt8)) << tokens;
  EXPECT_TRUE(sameBits(outA.recvScales, outB.recvScales)) << tokens;
  EXPECT_TRUE(sameBits(outA.recvTopkIdx, outB.recvTopkIdx)) << tokens;
  EXPECT_TRUE(sameBits(outA.recvTopkWeights, outB.recvTopkWeights)) << tokens;
  EXPECT_TRUE(sameBits(outA.handle.recvSrcIdx, outB.handle.recvSrcIdx)) << tokens;
  EXPECT_EQ(outA.numRecvTokensPerExpert, outB.numRecvTokensPerExpert);
}

// Combines path A's received rows on both Buffers, each through its own handle (weighted
// with int8, as the callers' cases pick).
void combineBoth(Buffer& a, const ep::DispatchOutputs& outA, Buffer& b,
                 const ep::DispatchOutputs& outB, bool int8, ep::CombineOutputs& backA,
                 ep::CombineOutputs& backB) {
  ep::CombineInputs c = combineInputsOf(outA, kHidden, kTopk, int8);
  a.combine(c, backA);
  c.handle = &outB.handle;
  b.combine(c, backB);
}

// The window transport (auto: shm, or mpi on one host) and the collective one give bitwise
// the same outputs, over growing and shrinking shapes, bf16 and int8, on one Buffer each
// (the window regrows). Where the backend has no windows both are collective.
TEST_F(Normal, WindowAndCollectiveTransportsAgree) {
  BufferConfig viaCollectives = config();
  viaCollectives.transport = Transport::kCollective;
  Buffer a(comm(), config()), b(comm(), viaCollectives);
  EXPECT_EQ(b.transport(), Transport::kCollective);
  if (comm().hasWindows() && comm().localSize() == comm().size()) {
    EXPECT_EQ(a.transport(), Transport::kWindow);  // else this test compares nothing
  }
  const int E = expertsFor(size());
  for (const auto& [tokens, int8] :
       {std::pair{20, false}, std::pair{90, true}, std::pair{90, false}, std::pair{7, true}}) {
    const EpInputs in = makeInputs(11 + tokens, rank(), tokensFor(rank(), tokens), kHidden, kTopk,
                                   E, Fill::kRandom);
    ep::DispatchInputs d = dispatchInputsOf(in);
    d.quant = int8 ? ep::Quant::kInt8Group : ep::Quant::kNone;
    d.dequantize = int8;
    ep::DispatchOutputs outA, outB;
    a.dispatch(d, outA);
    b.dispatch(d, outB);
    ASSERT_EQ(outA.numRecvTokens, outB.numRecvTokens);
    expectSameDispatch(outA, outB, tokens, int8);
    EXPECT_EQ(outA.bytesSent, outB.bytesSent);
    ep::CombineOutputs backA, backB;
    combineBoth(a, outA, b, outB, int8, backA, backB);
    EXPECT_TRUE(sameBits(backA.combinedX, backB.combinedX)) << tokens;
    EXPECT_TRUE(sameBits(backA.combinedTopkWeights, backB.combinedTopkWeights)) << tokens;
  }
}

// Across hosts with equal ranks per host: the relay through each host (ep/src/host_relay.h)
// gives dispatch outputs bitwise equal to the flat path's, and a combine equal up to the
// rounding of each host's partial sum (DeepEP's metric), for bf16 and int8.
TEST_F(Normal, HostRelayAndFlatPathAgree) {
  if (comm().numHosts() < 2 || comm().size() != comm().numHosts() * comm().localSize()) {
    GTEST_SKIP() << "needs ranks on several hosts, the same number on each";
  }
  BufferConfig relayed = config(), flat = config();
  relayed.transport = flat.transport = Transport::kCollective;
  relayed.hostRelay = true;
  flat.hostRelay = false;
  Buffer a(comm(), relayed), b(comm(), flat);
  const int E = expertsFor(size());
  for (const auto& [tokens, int8] :
       {std::pair{20, false}, std::pair{90, true}, std::pair{7, true}}) {
    const EpInputs in = makeInputs(31 + tokens, rank(), tokensFor(rank(), tokens), kHidden, kTopk,
                                   E, Fill::kRandom);
    ep::DispatchInputs d = dispatchInputsOf(in);
    d.quant = int8 ? ep::Quant::kInt8Group : ep::Quant::kNone;
    d.dequantize = int8;
    ep::DispatchOutputs outA, outB;
    a.dispatch(d, outA);
    b.dispatch(d, outB);
    EXPECT_EQ(outA.handle.relayCounts.size(), static_cast<std::size_t>(comm().numHosts()));
    EXPECT_TRUE(outB.handle.relayCounts.empty());
    ASSERT_EQ(outA.numRecvTokens, outB.numRecvTokens);
    expectSameDispatch(outA, outB, tokens, int8);
    ep::CombineOutputs backA, backB;
    combineBoth(a, outA, b, outB, int8, backA, backB);
    ASSERT_EQ(backA.combinedX.size(), backB.combinedX.size());
    std::vector<double> xa(backA.combinedX.size()), xb(backB.combinedX.size());
    for (std::size_t i = 0; i < xa.size(); ++i) {
      xa[i] = toFloat(backA.combinedX.data()[i]);
      xb[i] = toFloat(backB.combinedX.data()[i]);
    }
    if (!xa.empty()) {
      EXPECT_LT(calcDiff(xa, xb), 5e-6) << tokens << " int8 " << int8;
    }
    ASSERT_EQ(backA.combinedTopkWeights.size(), backB.combinedTopkWeights.size());
    for (std::size_t i = 0; i < backA.combinedTopkWeights.size(); ++i) {
      EXPECT_NEAR(backA.combinedTopkWeights.data()[i], backB.combinedTopkWeights.data()[i], 1e-5);
    }
  }
}

TEST_F(Normal, EmptyRanksAndBuffersStayUsable) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  // Rank 0 has no tokens at all.
  const int n = rank() == 0 ? 0 : 20;
  const EpInputs in = makeInputs(8, rank(), n, kHidden, kTopk, E, Fill::kRandom);
  ep::DispatchInputs d = dispatchInputsOf(in);
  ep::DispatchOutputs out;
  for (int i = 0; i < 2; ++i) {
    buffer.dispatch(d, out);
    ep::CombineInputs c;
    c.x = out.recvX.data();
    c.handle = &out.handle;
    ep::CombineOutputs back;
    buffer.combine(c, back);
    EXPECT_EQ(back.numTokens, n);
  }
}

// DeepEP passes recv_topk_weights back to combine whatever it holds: a rank that received
// nothing passes an empty array (null data()) with numTopk K. Every token to expert 0 only
// (the other ranks receive nothing), then every token to no expert (nobody receives):
// combine works weighted and unweighted, and combinedTopkWeights is [numTokens, K] (zeros
// where no expert was valid).
TEST_F(Normal, CombineAfterEmptyReceive) {
  Buffer buffer(comm(), config());
  const int E = expertsFor(size());
  const int n = 6 + rank();
  int allTokens = 0;
  for (int r = 0; r < size(); ++r) allTokens += 6 + r;
  EpInputs in;
  in.numTokens = n;
  in.hidden = kHidden;
  in.numTopk = kTopk;
  in.numExperts = E;
  for (int t = 0; t < n; ++t) {
    for (int ch = 0; ch < kHidden; ++ch) {
      in.x.push_back(toBf16(static_cast<float>((t * 7 + ch + rank()) % 13) * 0.125f - 0.5f));
    }
  }
  for (const bool nowhere : {false, true}) {
    in.topkIdx.assign(static_cast<std::size_t>(n) * kTopk, -1);
    in.topkWeights.assign(in.topkIdx.size(), 0.25f);
    for (int t = 0; t < n && !nowhere; ++t) in.topkIdx[t * kTopk] = 0;
    ep::DispatchOutputs out;
    buffer.dispatch(dispatchInputsOf(in), out);
    EXPECT_EQ(out.numRecvTokens, !nowhere && rank() == 0 ? allTokens : 0);
    EXPECT_EQ(out.numTopk, kTopk);
    for (const bool weighted : {false, true}) {
      ep::CombineInputs c;
      c.x = out.recvX.data();
      c.handle = &out.handle;
      c.topkWeights = out.recvTopkWeights.data();  // null where nothing was received
      c.numTopk = out.numTopk;
      c.weighted = weighted;
      ep::CombineOutputs back;
      buffer.combine(c, back);
      ASSERT_EQ(back.numTokens, n);
      ASSERT_EQ(back.combinedTopkWeights.size(), static_cast<std::size_t>(n) * kTopk);
      long long wrong = 0;
      for (int t = 0; t < n; ++t) {
        for (int k = 0; k < kTopk; ++k) {
          const float want = !nowhere && k == 0 ? 0.25f : 0.f;
          wrong += back.combinedTopkWeights[t * kTopk + k] != want;
        }
        for (int ch = 0; ch < kHidden; ++ch) {
          const float x = toFloat(in.x[t * kHidden + ch]);  // x * 0.25 is exact in bf16
          const float want = nowhere ? 0.f : weighted ? x * 0.25f : x;
          wrong += toFloat(back.combinedX[t * kHidden + ch]) != want;
        }
      }
      EXPECT_EQ(wrong, 0) << "nowhere " << nowhere << " weighted " << weighted;
    }
  }
}

}  // namespace
}  // namespace epcomm::test
