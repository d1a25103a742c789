// Bad input on one rank is an error on every rank, naming the rank at fault; nothing is
// corrupted and the Buffer stays usable (a valid call right after succeeds).
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "ep/buffer.h"
#include "tests/ep/ep_test_util.h"

namespace epcomm::test {
namespace {

constexpr int kHidden = 256;
constexpr int kTopk = 4;

class Errors : public OnSuiteComm<> {
 protected:
  // The faulty rank: the last one (so rank 0's message must name another rank).
  int culprit() { return size() - 1; }

  // Runs call on every rank; expects kInvalidArgument everywhere with every fragment in
  // the message.
  void expectErrorEverywhere(const std::function<void()>& call,
                             std::vector<std::string> fragments) {
    bool threw = false;
    try {
      call();
    } catch (const Error& e) {
      threw = true;
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
      const std::string what = e.what();
      for (const std::string& f : fragments) {
        EXPECT_NE(what.find(f), std::string::npos) << "'" << f << "' not in: " << what;
      }
    }
    EXPECT_TRUE(threw) << "rank " << rank() << " did not get the error";
  }

  // A valid dispatch + combine must work after an error.
  void expectUsable(Buffer& buffer) {
    const EpInputs in =
        makeInputs(11, rank(), 20, kHidden, kTopk, expertsFor(size()), Fill::kRandom);
    ep::DispatchInputs d;
    d.x = in.x.data();
    d.numTokens = in.numTokens;
    d.hidden = kHidden;
    d.topkIdx = in.topkIdx.data();
    d.numTopk = kTopk;
    d.numExperts = in.numExperts;
    ep::DispatchOutputs out;
    buffer.dispatch(d, out);
    ep::CombineInputs c;
    c.x = out.recvX.data();
    c.handle = &out.handle;
    ep::CombineOutputs back;
    buffer.combine(c, back);
    // Tokens going to exactly one rank come back bit-exact.
    long long wrong = 0;
    for (int t = 0; t < in.numTokens; ++t) {
      int ranks = 0;
      for (int r = 0; r < size(); ++r) ranks += out.handle.isTokenInRank[t * size() + r];
      if (ranks != 1) continue;
      wrong += std::memcmp(back.combinedX.data() + t * kHidden, in.x.data() + t * kHidden,
                           kHidden * sizeof(Bf16)) != 0;
    }
    EXPECT_EQ(wrong, 0);
    EXPECT_FALSE(comm().aborted());
  }
};

TEST_F(Errors, TopkIndexOutOfRange) {
  BufferConfig c;
  c.normalBytes = 16 << 20;
  Buffer buffer(comm(), c);
  const int E = expertsFor(size());
  for (std::int64_t bad : {static_cast<std::int64_t>(E), std::int64_t{-2}}) {
    EpInputs in = makeInputs(12, rank(), 20, kHidden, kTopk, E, Fill::kRandom);
    if (rank() == culprit()) in.topkIdx[3 * kTopk + 1] = bad;
    ep::DispatchOutputs out;
    const std::string who = rank() == culprit() ? "" : "rank " + std::to_string(culprit()) + ":";
    expectErrorEverywhere([&] { buffer.dispatch(dispatchInputsOf(in), out); },
                          {"ep::dispatch", who, "topkIdx[3, 1] = " + std::to_string(bad)});
    // The collective form of the layout reports it everywhere too.
    ep::LayoutOutputs layout;
    expectErrorEverywhere(
        [&] {
          buffer.getDispatchLayout({in.topkIdx.data(), in.numTokens, kTopk, E}, layout);
        },
        {"ep::getDispatchLayout", who, "outside [-1, numExperts"});
    expectUsable(buffer);
  }
}

TEST_F(Errors, HiddenNotAMultipleOfTheQuantGroup) {
  Buffer buffer(comm(), BufferConfig{});
  const EpInputs in = makeInputs(13, rank(), 10, 200, kTopk, expertsFor(size()), Fill::kRandom);
  ep::DispatchInputs d = dispatchInputsOf(in);
  d.quant = ep::Quant::kInt8Group;
  ep::DispatchOutputs out;
  expectErrorEverywhere([&] { buffer.dispatch(d, out); },
                        {"hidden 200 is not a multiple", "128", "EPCOMM_EP_QUANT_GROUP"});
  // Per-token scales accept any hidden.
  d.quant = ep::Quant::kInt8PerToken;
  d.dequantize = true;
  buffer.dispatch(d, out);
  EXPECT_EQ(out.numScales, 1);
  expectUsable(buffer);
}

TEST_F(Errors, BufferTooSmallGivesSizeAndKnob) {
  BufferConfig c;
  c.normalBytes = 4096;  // less than one round of 30 tokens x 256 channels
  Buffer buffer(comm(), c);
  const EpInputs in = makeInputs(14, rank(), 30, kHidden, kTopk, expertsFor(size()), Fill::kRandom);
  ep::DispatchOutputs out;
  expectErrorEverywhere([&] { buffer.dispatch(dispatchInputsOf(in), out); },
                        {"EPCOMM_EP_BUFFSIZE", "needs", "EPCOMM_EP_ROUND_TOKENS"});
  // Rounds of 4 tokens fit: the same Buffer memory, more rounds.
  BufferConfig small = c;
  small.normalBytes = 64 << 10;
  small.roundTokens = 4;
  small.combineRounds = true;
  Buffer rounds(comm(), small);
  rounds.dispatch(dispatchInputsOf(in), out);
  EXPECT_GE(out.handle.numRounds, 8);
  ep::CombineInputs cb;
  cb.x = out.recvX.data();
  cb.handle = &out.handle;
  ep::CombineOutputs back;
  rounds.combine(cb, back);
  EXPECT_EQ(back.numTokens, in.numTokens);
}

// One rank's own mistake reaches every rank in that rank's words (not as a shape mismatch
// it caused on the others): null inputs, and a negative token count.
TEST_F(Errors, OneRanksBadCallIsReportedInItsOwnWords) {
  Buffer buffer(comm(), BufferConfig{});
  const int E = expertsFor(size());
  const EpInputs in = makeInputs(16, rank(), 10, kHidden, kTopk, E, Fill::kRandom);
  const std::string who = "rank " + std::to_string(culprit()) + ": ";
  ep::DispatchOutputs out;
  ep::DispatchInputs d = dispatchInputsOf(in);
  if (rank() == culprit()) d.x = nullptr;
  expectErrorEverywhere([&] { buffer.dispatch(d, out); }, {"dispatch", who, "x is null"});
  d = dispatchInputsOf(in);
  if (rank() == culprit()) d.topkIdx = nullptr;
  expectErrorEverywhere([&] { buffer.dispatch(d, out); }, {"dispatch", who, "topkIdx is null"});
  d = dispatchInputsOf(in);
  if (rank() == culprit()) d.numTokens = -5;
  expectErrorEverywhere([&] { buffer.dispatch(d, out); }, {"dispatch", who, "numTokens -5"});
  expectUsable(buffer);
}

TEST_F(Errors, ShapesDifferingAcrossRanks) {
  Buffer buffer(comm(), BufferConfig{});
  const int E = expertsFor(size());
  const int hidden = rank() == culprit() ? 2 * kHidden : kHidden;
  const EpInputs in = makeInputs(15, rank(), 10, hidden, kTopk, E, Fill::kRandom);
  ep::DispatchOutputs out;
  expectErrorEverywhere([&] { buffer.dispatch(dispatchInputsOf(in), out); },
                        {"hidden differs across ranks", "smallest 256", "largest 512"});
  const EpInputs ok = makeInputs(15, rank(), 10, kHidden, kTopk, E, Fill::kRandom);
  ep::DispatchInputs d = dispatchInputsOf(ok);
  d.numExperts = rank() == culprit() ? 2 * E : E;
  expectErrorEverywhere([&] { buffer.dispatch(d, out); }, {"numExperts differs across ranks"});
  expectUsable(buffer);
}

TEST_F(Errors, CombineWithoutHandleOrWeights) {
  Buffer buffer(comm(), BufferConfig{});
  const EpInputs in = makeInputs(16, rank(), 10, kHidden, kTopk, expertsFor(size()), Fill::kRandom);
  ep::DispatchOutputs out;
  buffer.dispatch(dispatchInputsOf(in), out);
  ep::CombineInputs c;
  c.x = out.recvX.data();
  c.handle = &out.handle;
  c.weighted = rank() == culprit();  // weighted without weights, on one rank
  ep::CombineOutputs back;
  expectErrorEverywhere([&] { buffer.combine(c, back); }, {"ep::combine"});
  expectUsable(buffer);
}

}  // namespace
}  // namespace epcomm::test
