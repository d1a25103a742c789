// Worker threads (EPCOMM_THREADS, comm/workers.h) change no bit of dispatch or combine: the
// same calls, with rows large enough for every row loop to split (runs of row copies,
// dequantisation, combine sums), give bitwise the same outputs with 1, 2 and 3 threads per
// rank, on the window and the collective transport, bf16 and int8; low-latency mode too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "comm/src/workers.h"
#include "comm/workers.h"
#include "ep/buffer.h"
#include "tests/ep/ep_test_util.h"

namespace epcomm::test {
namespace {

using ep::Transport;

class Threads : public OnSuiteComm<> {};

// Loops split since `before`, summed over the ranks (with skewed routing a rank that sends
// and receives nothing has no loop to split).
std::int64_t splitsOnAnyRank(Communicator& comm, std::uint64_t before) {
  auto n = static_cast<std::int64_t>(splitLoops() - before);
  comm.allReduce(&n, &n, 1, DataType::kI64, ReduceOp::kSum);
  return n;
}

// Runs roundTrip() (every output of one call, as bytes) with 1 thread, then with 2 and 3:
// some row loop must split on some rank and every output must be bitwise the 1-thread one.
// `what` names the case in failures; the count returns to the default however this ends.
template <typename F>
void expectSameBitsForEveryCount(Communicator& comm, const std::string& what, F&& roundTrip) {
  struct Reset {
    ~Reset() { setThreads(0); }
  } reset;
  setThreads(1);
  const std::vector<std::vector<unsigned char>> one = roundTrip();
  for (int t : {2, 3}) {
    setThreads(t);
    const std::uint64_t splitBefore = splitLoops();
    const std::vector<std::vector<unsigned char>> many = roundTrip();
    EXPECT_GT(splitsOnAnyRank(comm, splitBefore), 0)
        << t << " threads: no row loop was split (" << what << ")";
    ASSERT_EQ(many.size(), one.size());
    for (std::size_t k = 0; k < one.size(); ++k) {
      EXPECT_TRUE(many[k] == one[k])
          << "output " << k << " with " << t << " threads differs from 1 thread (" << what << ")";
    }
  }
}

constexpr int kHidden = 2048;
constexpr int kTopk = 4;

template <typename A>
std::vector<unsigned char> bytesOf(const A& a) {
  std::vector<unsigned char> b(a.size() * sizeof(a[0]));
  if (!b.empty()) std::memcpy(b.data(), a.data(), b.size());
  return b;
}

// Every output of one dispatch and its (weighted for int8) combine, as bytes.
std::vector<std::vector<unsigned char>> roundTrip(Buffer& buffer, const EpInputs& in, bool int8) {
  ep::DispatchInputs d = dispatchInputsOf(in);
  d.quant = int8 ? ep::Quant::kInt8Group : ep::Quant::kNone;
  d.dequantize = int8;
  ep::DispatchOutputs out;
  buffer.dispatch(d, out);
  ep::CombineOutputs back;
  buffer.combine(combineInputsOf(out, kHidden, kTopk, int8), back);
  return {bytesOf(out.recvX),           bytesOf(out.recvXInt8),
          bytesOf(out.recvScales),      bytesOf(out.recvTopkIdx),
          bytesOf(out.recvTopkWeights), bytesOf(out.handle.recvSrcIdx),
          bytesOf(back.combinedX),      bytesOf(back.combinedTopkWeights)};
}

TEST_F(Threads, ThreadCountsGiveTheSameBits) {
  BufferConfig window;
  window.normalBytes = std::size_t{256} << 20;
  BufferConfig collective = window;
  collective.transport = Transport::kCollective;
  BufferConfig rounds = window;  // rounds of 64 tokens: parts continue across rounds
  rounds.roundTokens = 64;
  rounds.combineRounds = true;
  Buffer a(comm(), window), b(comm(), collective), c(comm(), rounds);
  const EpInputs in = makeInputs(5, rank(), tokensFor(rank(), 300), kHidden, kTopk,
                                 expertsFor(size()), Fill::kRandom);
  for (Buffer* buffer : {&a, &b, &c}) {
    const char* transport = buffer == &a ? "auto" : buffer == &b ? "collective" : "rounds";
    for (bool int8 : {false, true}) {
      expectSameBitsForEveryCount(
          comm(), std::string("int8 ") + (int8 ? "1" : "0") + ", transport " + transport,
          [&] { return roundTrip(*buffer, in, int8); });
    }
  }
}

// One low-latency dispatch (valid rows of every local expert) and its combine of those rows
// (identity experts), as bytes.
std::vector<std::vector<unsigned char>> lowLatencyRoundTrip(Buffer& buffer, const EpInputs& in,
                                                            bool int8, bool zeroCopy) {
  ep::LowLatencyDispatchInputs d = lowLatencyInputsOf(in);
  d.quant = int8 ? ep::Quant::kInt8Group : ep::Quant::kNone;
  d.dequantize = int8;
  ep::LowLatencyDispatchOutputs out;
  buffer.lowLatencyDispatch(d, out);
  const std::size_t rowsPerExpert = static_cast<std::size_t>(out.maxTokens) * out.numRanks;
  const std::size_t H = static_cast<std::size_t>(in.hidden);
  std::vector<std::vector<unsigned char>> result;
  for (int e = 0; e < out.numLocalExperts; ++e) {
    const auto* rows = reinterpret_cast<const unsigned char*>(out.recvX + e * rowsPerExpert * H);
    result.emplace_back(rows, rows + out.recvCount[e] * H * sizeof(Bf16));
  }
  ep::LowLatencyCombineInputs c;
  c.topkIdx = in.topkIdx.data();
  c.topkWeights = in.topkWeights.data();
  c.handle = out.handle;
  if (zeroCopy) {
    std::memcpy(buffer.lowLatencyCombineBuffer(out.handle), out.recvX,
                out.numLocalExperts * rowsPerExpert * H * sizeof(Bf16));
    c.zeroCopy = true;
  } else {
    c.x = out.recvX;
  }
  ep::LowLatencyCombineOutputs back;
  buffer.lowLatencyCombine(c, back);
  const auto* combined = reinterpret_cast<const unsigned char*>(back.combinedX);
  result.emplace_back(combined, combined + in.numTokens * H * sizeof(Bf16));
  return result;
}

TEST_F(Threads, LowLatencyThreadCountsGiveTheSameBits) {
  BufferConfig window;
  window.llMaxTokens = 64;
  BufferConfig collective = window;
  collective.transport = Transport::kCollective;
  Buffer a(comm(), window), b(comm(), collective);
  const EpInputs in = makeInputs(9, rank(), std::min(64, tokensFor(rank(), 60)), kHidden, kTopk,
                                 expertsFor(size()), Fill::kRandom);
  for (Buffer* buffer : {&a, &b}) {
    const char* transport = buffer == &a ? "auto" : "collective";
    for (const auto& [int8, zeroCopy] :
         {std::pair{false, false}, std::pair{true, false}, std::pair{false, true}}) {
      expectSameBitsForEveryCount(comm(),
                                  std::string("int8 ") + (int8 ? "1" : "0") +
                                      ", zero-copy combine " + (zeroCopy ? "1" : "0") +
                                      ", transport " + transport,
                                  [&] { return lowLatencyRoundTrip(*buffer, in, int8, zeroCopy); });
    }
  }
}

}  // namespace
}  // namespace epcomm::test
