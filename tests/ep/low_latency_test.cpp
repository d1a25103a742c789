// Low-latency mode against DeepEP's test_low_latency.py oracles: per-expert counts =
// layout ranges = the global count of the expert; rows of a range are filled with their
// source rank and carry the token index that srcInfo names; combine = x times the sum of
// its valid weights. Also the two alternating slots, receive hooks, the zero-copy combine
// buffer, int8, N > T, and auto mode alternating with normal mode on one Buffer. Every test
// runs on both transports: the one EPCOMM_EP_TRANSPORT picks (window on a backend with
// windows) and the collective fallback.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "ep/buffer.h"
#include "tests/ep/ep_test_util.h"

namespace epcomm::test {
namespace {

constexpr int kHidden = 256;
constexpr int kTopk = 4;
constexpr int kCapacity = 32;  // T

// The transport under test; set by the fixture (kAuto: what the environment picks).
ep::Transport gTransport = ep::Transport::kAuto;

BufferConfig llConfig() {
  BufferConfig c = BufferConfig::fromEnvironment();
  if (gTransport != ep::Transport::kAuto) c.transport = gTransport;
  c.normalBytes = std::size_t{32} << 20;
  c.llMaxTokens = kCapacity;
  return c;
}

int llTokens(int rank) {
  return std::min(kCapacity, 17 + 4 * rank);
}

// Every DeepEP check on a dispatch of rank-row inputs made with `seed`.
long long llWrong(Communicator& comm, int seed, const ep::LowLatencyDispatchOutputs& out) {
  const int R = comm.size(), me = comm.rank(), E = expertsFor(R), local = E / R;
  const std::size_t rowsPerExpert = static_cast<std::size_t>(kCapacity) * R;
  long long wrong = 0;
  wrong += out.numLocalExperts != local || out.maxTokens != kCapacity || out.numRanks != R;
  for (int e = 0; e < local; ++e) {
    std::int64_t begin = 0;
    for (int s = 0; s < R; ++s) {
      const EpInputs src = makeInputs(seed, s, llTokens(s), kHidden, kTopk, E, Fill::kRankRows);
      std::vector<int> tokens;
      for (int t = 0; t < src.numTokens; ++t) {
        for (int k = 0; k < kTopk; ++k) {
          if (src.topkIdx[t * kTopk + k] == me * local + e) tokens.push_back(t);
        }
      }
      const std::int64_t range = out.layoutRange[e * R + s];
      wrong += (range >> 32) != begin;
      wrong += (range & 0xffffffff) != static_cast<std::int64_t>(tokens.size());
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        const std::size_t row = e * rowsPerExpert + begin + i;
        const Bf16* x = out.recvRows ? out.recvRows[row] : out.recvX + row * kHidden;
        wrong += out.srcInfo[row] != tokens[i];
        wrong += tokenFromRow(x, kHidden) != tokens[i];
        for (int c = 0; c < kHidden - 2; ++c) wrong += toFloat(x[c]) != static_cast<float>(s);
      }
      begin += static_cast<std::int64_t>(tokens.size());
    }
    wrong += out.recvCount[e] != begin;  // = the expert's global count
  }
  return wrong;
}

// calc_diff between x times the sum of each token's valid weights (what a weighted combine
// of an exact dispatch must give) and `combined` [numTokens, hidden].
double weightedCombineDiff(const EpInputs& in, const Bf16* combined) {
  std::vector<double> want, got;
  for (int t = 0; t < in.numTokens; ++t) {
    double w = 0;
    for (int k = 0; k < kTopk; ++k) {
      if (in.topkIdx[t * kTopk + k] >= 0) w += in.topkWeights[t * kTopk + k];
    }
    for (int c2 = 0; c2 < kHidden; ++c2) {
      want.push_back(toFloat(in.x[t * kHidden + c2]) * w);
      got.push_back(toFloat(combined[t * kHidden + c2]));
    }
  }
  return calcDiff(want, got);
}

// combine(identity experts) = x * sum of valid weights; returns calc_diff.
double llCombineDiff(Buffer& buffer, const EpInputs& in, const ep::LowLatencyDispatchOutputs& out,
                     bool zeroCopy, bool hook) {
  ep::LowLatencyCombineInputs c;
  c.topkIdx = in.topkIdx.data();
  c.topkWeights = in.topkWeights.data();
  c.handle = out.handle;
  c.returnRecvHook = hook;
  const std::size_t rows =
      static_cast<std::size_t>(out.numLocalExperts) * out.maxTokens * out.numRanks;
  if (zeroCopy) {
    Bf16* dst = buffer.lowLatencyCombineBuffer(out.handle);
    std::memcpy(dst, out.recvX, rows * kHidden * sizeof(Bf16));
    c.zeroCopy = true;
  } else {
    c.x = out.recvX;
  }
  std::vector<Bf16> mine(static_cast<std::size_t>(in.numTokens) * kHidden);
  c.out = zeroCopy ? nullptr : mine.data();
  ep::LowLatencyCombineOutputs back;
  buffer.lowLatencyCombine(c, back);
  if (hook) back.hook();
  return weightedCombineDiff(in, back.combinedX);
}

class LowLatency : public OnSuiteComm<::testing::TestWithParam<ep::Transport>> {
 protected:
  void SetUp() override { gTransport = GetParam(); }
  void TearDown() override { gTransport = ep::Transport::kAuto; }
};

TEST_P(LowLatency, DispatchOraclesAndWeightedCombine) {
  Buffer buffer(comm(), llConfig());
  const int E = expertsFor(size());
  const EpInputs in = makeInputs(21, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRankRows);
  ep::LowLatencyDispatchOutputs out;
  buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);
  EXPECT_EQ(llWrong(comm(), 21, out), 0);
  EXPECT_GT(buffer.footprintBytes(), buffer.config().normalBytes);

  const EpInputs rnd = makeInputs(22, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRandom);
  for (bool zeroCopy : {false, true}) {
    buffer.lowLatencyDispatch(lowLatencyInputsOf(rnd), out);
    EXPECT_LT(llCombineDiff(buffer, rnd, out, zeroCopy, false), 5e-6) << "zeroCopy " << zeroCopy;
  }
}

// Combines of one dispatch from the zero-copy buffer (read in place by the sources where
// the window maps every peer), with and without hook, the buffer rewritten between them:
// identity experts, then all-zero outputs, ... A source still reading a buffer its expert
// rank already rewrote would mix the two.
TEST_P(LowLatency, ZeroCopyCombineRepeatedWithAndWithoutHook) {
  Buffer buffer(comm(), llConfig());
  const EpInputs in =
      makeInputs(26, rank(), llTokens(rank()), kHidden, kTopk, expertsFor(size()), Fill::kRandom);
  ep::LowLatencyDispatchOutputs out;
  buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);
  const std::size_t cells =
      static_cast<std::size_t>(out.numLocalExperts) * out.maxTokens * out.numRanks * kHidden;
  for (int round = 0; round < 6; ++round) {
    const bool zeros = round % 2 == 1, hook = round % 3 == 2;
    Bf16* dst = buffer.lowLatencyCombineBuffer(out.handle);
    if (zeros) {
      std::memset(static_cast<void*>(dst), 0, cells * sizeof(Bf16));
    } else {
      std::memcpy(static_cast<void*>(dst), out.recvX, cells * sizeof(Bf16));
    }
    ep::LowLatencyCombineInputs c;
    c.topkIdx = in.topkIdx.data();
    c.topkWeights = in.topkWeights.data();
    c.handle = out.handle;
    c.zeroCopy = true;
    c.returnRecvHook = hook;
    ep::LowLatencyCombineOutputs back;
    buffer.lowLatencyCombine(c, back);
    if (hook) back.hook();
    if (!zeros) {
      EXPECT_LT(weightedCombineDiff(in, back.combinedX), 5e-6) << "round " << round;
      continue;
    }
    std::size_t nonZero = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(in.numTokens) * kHidden; ++i) {
      nonZero += toFloat(back.combinedX[i]) != 0.0f;
    }
    EXPECT_EQ(nonZero, 0u) << "round " << round;
  }
}

TEST_P(LowLatency, TwoSlotsAndReceiveHooks) {
  Buffer buffer(comm(), llConfig());
  const int E = expertsFor(size());
  const EpInputs a = makeInputs(23, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRankRows);
  const EpInputs b = makeInputs(24, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRankRows);
  ep::LowLatencyDispatchInputs da = lowLatencyInputsOf(a), db = lowLatencyInputsOf(b);
  da.returnRecvHook = db.returnRecvHook = true;
  ep::LowLatencyDispatchOutputs outA, outB;
  buffer.lowLatencyDispatch(da, outA);  // sends only
  buffer.lowLatencyDispatch(db, outB);
  EXPECT_TRUE(outA.hook && outB.hook);
  EXPECT_NE(outA.handle.slot, outB.handle.slot);
  // A third dispatch while both slots wait for their hooks is refused on every rank.
  ep::LowLatencyDispatchOutputs outC;
  EXPECT_THROW(buffer.lowLatencyDispatch(lowLatencyInputsOf(a), outC), Error);
  outA.hook();
  outB.hook();
  EXPECT_THROW(outA.hook(), Error);  // a hook runs once
  // Both results are alive and correct.
  EXPECT_EQ(llWrong(comm(), 23, outA), 0);
  EXPECT_EQ(llWrong(comm(), 24, outB), 0);
  EXPECT_LT(llCombineDiff(buffer, a, outA, false, true), 5e-6);
  EXPECT_LT(llCombineDiff(buffer, b, outB, false, false), 5e-6);
  // A third dispatch reuses A's slot: A's handle is now stale, B's is still valid.
  buffer.lowLatencyDispatch(lowLatencyInputsOf(a), outC);
  EXPECT_EQ(outC.handle.slot, outA.handle.slot);
  EXPECT_THROW(llCombineDiff(buffer, a, outA, false, false), Error);
  EXPECT_EQ(llWrong(comm(), 24, outB), 0);
  EXPECT_EQ(llWrong(comm(), 23, outC), 0);
}

TEST_P(LowLatency, Int8DequantisedWithinBound) {
  Buffer buffer(comm(), llConfig());
  const EpInputs in =
      makeInputs(25, rank(), llTokens(rank()), kHidden, kTopk, expertsFor(size()), Fill::kRandom);
  for (ep::Quant q : {ep::Quant::kInt8Group, ep::Quant::kInt8PerToken}) {
    ep::LowLatencyDispatchInputs d = lowLatencyInputsOf(in);
    d.quant = q;
    d.dequantize = true;
    ep::LowLatencyDispatchOutputs out;
    buffer.lowLatencyDispatch(d, out);
    EXPECT_EQ(out.numScales, q == ep::Quant::kInt8Group ? kHidden / 128 : 1);
    EXPECT_NE(out.recvXInt8, nullptr);
    EXPECT_LT(llCombineDiff(buffer, in, out, false, false), 3e-3);
  }
}

TEST_P(LowLatency, TooManyTokensIsAnErrorEverywhere) {
  Buffer buffer(comm(), llConfig());
  const int culprit = size() - 1;
  const int n = rank() == culprit ? kCapacity + 1 : 4;
  const EpInputs in = makeInputs(26, rank(), n, kHidden, kTopk, expertsFor(size()), Fill::kRandom);
  ep::LowLatencyDispatchOutputs out;
  try {
    buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);
    ADD_FAILURE() << "no error on rank " << rank();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(what.find("T = 32"), std::string::npos) << what;
    EXPECT_NE(what.find("EPCOMM_EP_LL_MAX_TOKENS"), std::string::npos) << what;
  }
  // Still usable.
  const EpInputs ok =
      makeInputs(27, rank(), llTokens(rank()), kHidden, kTopk, expertsFor(size()), Fill::kRankRows);
  buffer.lowLatencyDispatch(lowLatencyInputsOf(ok), out);
  EXPECT_EQ(llWrong(comm(), 27, out), 0);
}

// A zero-copy combine on some ranks only is refused on every rank (its sources would read
// in place what the others never leave there); the dispatch's result stays combinable.
TEST_P(LowLatency, ZeroCopyDifferingAcrossRanksIsAnErrorEverywhere) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks";
  Buffer buffer(comm(), llConfig());
  const EpInputs in =
      makeInputs(28, rank(), llTokens(rank()), kHidden, kTopk, expertsFor(size()), Fill::kRandom);
  ep::LowLatencyDispatchOutputs out;
  buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);
  ep::LowLatencyCombineInputs c;
  c.topkIdx = in.topkIdx.data();
  c.topkWeights = in.topkWeights.data();
  c.handle = out.handle;
  c.zeroCopy = rank() == size() - 1;
  c.x = c.zeroCopy ? nullptr : out.recvX;
  ep::LowLatencyCombineOutputs back;
  try {
    buffer.lowLatencyCombine(c, back);
    ADD_FAILURE() << "no error on rank " << rank();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("zeroCopy differs across ranks"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(llCombineDiff(buffer, in, out, true, false), 5e-6);
}

// A zero-copy dispatch moves no rows: recvRows points at each row where its source staged
// it, with DeepEP's oracles holding there; the experts' gathered outputs combine as usual.
// On shm's window transport it must run; where peers' windows are not mapped (the collective
// transport, mpi's message windows) it is refused on every rank and the Buffer stays usable.
TEST_P(LowLatency, ZeroCopyDispatchRowsStayWithTheirSources) {
  Buffer buffer(comm(), llConfig());
  const int E = expertsFor(size());
  const EpInputs in = makeInputs(29, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRankRows);
  ep::LowLatencyDispatchInputs d = lowLatencyInputsOf(in);
  d.zeroCopy = true;
  ep::LowLatencyDispatchOutputs out;
  const bool mustRun =
      comm().backendName() == "shm" && buffer.transport() == ep::Transport::kWindow;
  try {
    buffer.lowLatencyDispatch(d, out);
  } catch (const Error& e) {
    EXPECT_FALSE(mustRun) << e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("zero-copy dispatch"), std::string::npos) << e.what();
    buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);  // still usable
    EXPECT_EQ(llWrong(comm(), 29, out), 0);
    return;
  }
  EXPECT_EQ(out.recvX, nullptr);
  ASSERT_NE(out.recvRows, nullptr);
  EXPECT_EQ(llWrong(comm(), 29, out), 0);
  // Identity experts gather their rows; combine = x times the sum of the valid weights.
  const std::size_t rowsPerExpert = static_cast<std::size_t>(out.maxTokens) * out.numRanks;
  std::vector<Bf16> x(static_cast<std::size_t>(out.numLocalExperts) * rowsPerExpert * kHidden);
  for (int e = 0; e < out.numLocalExperts; ++e) {
    for (int i = 0; i < out.recvCount[e]; ++i) {
      const std::size_t row = e * rowsPerExpert + static_cast<std::size_t>(i);
      std::copy_n(out.recvRows[row], kHidden,
                  x.begin() + static_cast<std::ptrdiff_t>(row * kHidden));
    }
  }
  ep::LowLatencyCombineInputs c;
  c.x = x.data();
  c.topkIdx = in.topkIdx.data();
  c.topkWeights = in.topkWeights.data();
  c.handle = out.handle;
  ep::LowLatencyCombineOutputs back;
  buffer.lowLatencyCombine(c, back);
  EXPECT_LT(weightedCombineDiff(in, back.combinedX), 5e-6);
  // int8 is refused on every rank: the rows stay bf16.
  d.quant = ep::Quant::kInt8Group;
  EXPECT_THROW(buffer.lowLatencyDispatch(d, out), Error);
}

// SGLang's --deepep-mode auto: prefill batches go normal, decode batches low-latency, on
// one Buffer, alternately; each result is checked (no stale data between the modes).
TEST_P(LowLatency, AutoModeAlternatesWithNormal) {
  Buffer buffer(comm(), llConfig());
  const int E = expertsFor(size());
  EXPECT_EQ(ep::resolveMode(ep::Mode::kAuto, ep::BatchKind::kPrefill), ep::Mode::kNormal);
  EXPECT_EQ(ep::resolveMode(ep::Mode::kAuto, ep::BatchKind::kDecode), ep::Mode::kLowLatency);
  EXPECT_EQ(ep::resolveMode(ep::Mode::kNormal, ep::BatchKind::kDecode), ep::Mode::kNormal);
  for (int step = 0; step < 6; ++step) {
    const auto batch = step % 2 == 0 ? ep::BatchKind::kPrefill : ep::BatchKind::kDecode;
    const int seed = 30 + step;
    if (ep::resolveMode(ep::Mode::kAuto, batch) == ep::Mode::kLowLatency) {
      const EpInputs in =
          makeInputs(seed, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRankRows);
      ep::LowLatencyDispatchOutputs out;
      buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);
      EXPECT_EQ(llWrong(comm(), seed, out), 0) << "step " << step;
      EXPECT_LT(llCombineDiff(buffer, in, out, false, false), 5e-6);
    } else {
      const EpInputs in = makeInputs(seed, rank(), 40 + rank(), kHidden, kTopk, E, Fill::kRandom);
      const ep::DispatchInputs d = dispatchInputsOf(in);
      ep::DispatchOutputs out;
      buffer.dispatch(d, out);
      ep::CombineInputs c;
      c.x = out.recvX.data();
      c.handle = &out.handle;
      c.topkWeights = out.recvTopkWeights.data();
      c.numTopk = kTopk;
      c.weighted = true;
      ep::CombineOutputs back;
      buffer.combine(c, back);
      EXPECT_LT(weightedCombineDiff(in, back.combinedX.data()), 5e-6) << "step " << step;
    }
  }
}

// Combine twice from one dispatch, and a combine whose hook runs after x was overwritten
// (its rows were sent, or copied, when the combine was called).
TEST_P(LowLatency, CombineTwiceAndHookAfterXChanged) {
  Buffer buffer(comm(), llConfig());
  const int E = expertsFor(size());
  const EpInputs in = makeInputs(41, rank(), llTokens(rank()), kHidden, kTopk, E, Fill::kRandom);
  ep::LowLatencyDispatchOutputs out;
  buffer.lowLatencyDispatch(lowLatencyInputsOf(in), out);
  EXPECT_LT(llCombineDiff(buffer, in, out, false, false), 5e-6);
  EXPECT_LT(llCombineDiff(buffer, in, out, false, true), 5e-6);  // same handle again
  const std::size_t cells =
      static_cast<std::size_t>(out.numLocalExperts) * out.maxTokens * out.numRanks * kHidden;
  std::vector<Bf16> x(out.recvX, out.recvX + cells);
  ep::LowLatencyCombineInputs c;
  c.x = x.data();
  c.topkIdx = in.topkIdx.data();
  c.topkWeights = in.topkWeights.data();
  c.handle = out.handle;
  c.returnRecvHook = true;
  ep::LowLatencyCombineOutputs back;
  buffer.lowLatencyCombine(c, back);
  std::fill(x.begin(), x.end(), toBf16(1000.f));
  back.hook();
  EXPECT_LT(weightedCombineDiff(in, back.combinedX), 5e-6);
}

// The transport is decided once per Buffer: auto = window where the backend has windows and
// every rank is on this host; window on a backend without windows, or on two levels across
// hosts (where the network backend's windows could stall), is an error everywhere.
TEST(LowLatencyTransport, ChosenOncePerBuffer) {
  Communicator& comm = *gComm;
  const bool windows = comm.hasWindows() && comm.localSize() == comm.size();
  BufferConfig c = BufferConfig{};
  c.normalBytes = std::size_t{1} << 20;
  c.transport = ep::Transport::kAuto;
  EXPECT_EQ(Buffer(comm, c).transport(),
            windows ? ep::Transport::kWindow : ep::Transport::kCollective);
  c.transport = ep::Transport::kCollective;
  EXPECT_EQ(Buffer(comm, c).transport(), ep::Transport::kCollective);
  c.transport = ep::Transport::kWindow;
  const bool twoLevels = comm.numHosts() > 1 && comm.numHosts() < comm.size() &&
                         comm.backendName().find('+') != std::string::npos;
  if (comm.hasWindows() && !twoLevels) {
    EXPECT_EQ(Buffer(comm, c).transport(), ep::Transport::kWindow);
  } else {
    try {
      Buffer b(comm, c);
      ADD_FAILURE() << "window transport accepted on rank " << comm.rank() << " of "
                    << comm.backendName();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("EPCOMM_EP_TRANSPORT"), std::string::npos) << e.what();
      if (twoLevels) {
        EXPECT_NE(std::string(e.what()).find("not available across hosts"), std::string::npos)
            << e.what();
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, LowLatency,
                         ::testing::Values(ep::Transport::kAuto, ep::Transport::kCollective),
                         [](const ::testing::TestParamInfo<ep::Transport>& p) {
                           return p.param == ep::Transport::kAuto ? std::string("Env")
                                                                  : std::string("Collective");
                         });

}  // namespace
}  // namespace epcomm::test
