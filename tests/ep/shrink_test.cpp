// A lost rank need not end the service (Communicator::shrink, BufferConfig::mask): forked
// ranks over shm, one killed in the middle of a low-latency dispatch; every survivor sees the
// loss, the survivors shrink to a communicator without it, rebuild their EP Buffer with the
// dead rank's experts masked, and run 100 further rounds of normal and low-latency
// dispatch/combine, every output checked against an oracle that knows the mask. Also: a live
// rank that does not join the shrink is named at the timeout; the C API; a backend that
// cannot shrink says so.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/epcomm.h"
#include "comm/error.h"
#include "ep/buffer.h"
#include "ep/epcomm_ep.h"
#include "tests/common/fork_launcher.h"

namespace epcomm::test {
namespace {

constexpr int kRanks = 4;
constexpr int kVictim = 2;
constexpr int kTokens = 24, kHidden = 256, kTopk = 4, kExperts = 16;  // 4 experts per rank
constexpr int kRoundsAfter = 100;

// Exit codes of a forked rank.
constexpr int kOk = 0;
constexpr int kNoLoss = 3;     // no call failed after the victim died
constexpr int kWrongLoss = 4;  // the failure was not a lost peer
constexpr int kBadResult = 5;  // an output differed from the oracle
constexpr int kBadShrink = 6;

// Token t of original rank o: values k / 8 (exact in bf16, sums of a few stay exact).
float valueOf(int o, int t, int h) {
  return static_cast<float>((o * 131 + t * 7 + h) % 61 - 30) / 8.f;
}

// Routing of token t in round `round`: some tokens go only to the victim's experts (their
// combine must be zero once it is masked), some have empty slots, the rest spread.
std::int64_t expertOf(int t, int k, int round) {
  if (t % 8 == 0) return kVictim * (kExperts / kRanks) + k;  // only the victim's experts
  if (t % 8 == 1 && k >= 2) return -1;
  return (t * 5 + k * 3 + round) % kExperts;
}
float weightOf(int k) {
  return 0.25f * static_cast<float>(k + 1);
}

struct Routing {
  std::vector<Bf16> x;
  std::vector<std::int64_t> idx;
  std::vector<float> weights;
};

Routing routingOf(int original, int round) {
  Routing r;
  r.x.resize(kTokens * kHidden);
  r.idx.resize(kTokens * kTopk);
  r.weights.resize(kTokens * kTopk);
  for (int t = 0; t < kTokens; ++t) {
    for (int h = 0; h < kHidden; ++h) r.x[t * kHidden + h] = toBf16(valueOf(original, t, h));
    for (int k = 0; k < kTopk; ++k) {
      r.idx[t * kTopk + k] = expertOf(t, k, round);
      r.weights[t * kTopk + k] = weightOf(k);
    }
  }
  return r;
}

// The communicator rank holding expert e, or -1 where its original rank was not kept.
int holderOf(std::int64_t e, const std::vector<int>& kept) {
  const int original = static_cast<int>(e) / (kExperts / kRanks);
  const auto it = std::find(kept.begin(), kept.end(), original);
  return it == kept.end() ? -1 : static_cast<int>(it - kept.begin());
}

bool near(float got, float want) {
  return std::fabs(got - want) <= 1e-2f * std::max(1.f, std::fabs(want));
}

// One normal dispatch + combine with identity experts: every received row equals its source
// token, and combine sums one copy per communicator rank holding an unmasked expert.
bool normalRound(ep::Buffer& buffer, const std::vector<int>& kept, int round) {
  const int me = buffer.rank();
  const Routing mine = routingOf(kept[me], round);
  ep::DispatchInputs in;
  in.x = mine.x.data();
  in.numTokens = kTokens;
  in.hidden = kHidden;
  in.topkIdx = mine.idx.data();
  in.topkWeights = mine.weights.data();
  in.numTopk = kTopk;
  in.numExperts = kExperts;
  ep::DispatchOutputs out;
  buffer.dispatch(in, out);
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
bool lowLatencyRound(ep::Buffer& buffer, const std::vector<int>& kept, int round,
                     bool dieInside = false) {
  const int me = buffer.rank();
  const Routing mine = routingOf(kept[me], round);
  ep::LowLatencyDispatchInputs in;
  in.x = mine.x.data();
  in.numTokens = kTokens;
  in.hidden = kHidden;
  in.topkIdx = mine.idx.data();
  in.numTopk = kTopk;
  in.numExperts = kExperts;
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

Config shmConfig(std::int64_t timeoutMs) {
  Config c = Config::defaults();
  c.backend = "shm";
  c.timeoutMs = timeoutMs;
  return c;
}

ep::BufferConfig bufferConfig() {
  ep::BufferConfig bc;
  bc.normalBytes = std::size_t{16} << 20;
  bc.llMaxTokens = kTokens;
  return bc;
}

int loseARankAndShrink(int rank, const UniqueId& id) {
  std::unique_ptr<Communicator> comm = Communicator::init(id, rank, kRanks, shmConfig(20000));
  const std::vector<int> all = {0, 1, 2, 3};
  try {
    ep::Buffer buffer(*comm, bufferConfig());
    for (int round = 0; round < 3; ++round) {
      if (!normalRound(buffer, all, round) || !lowLatencyRound(buffer, all, round)) {
        return kBadResult;
      }
    }
    // The victim dies between its sends and its receive; the others go on until they fail.
    for (int round = 3; round < 200; ++round) {
      if (!lowLatencyRound(buffer, all, round, rank == kVictim) ||
          !normalRound(buffer, all, round)) {
        return kBadResult;
      }
    }
    return kNoLoss;
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d saw: %s\n", rank, e.what());
    if (e.code() != ErrorCode::kPeerLost) return kWrongLoss;
  }
  std::vector<int> kept;
  std::unique_ptr<Communicator> shrunk = comm->shrink(&kept);
  if (shrunk->size() != kRanks - 1 || kept != std::vector<int>{0, 1, 3} ||
      kept[static_cast<std::size_t>(shrunk->rank())] != rank) {
    return kBadShrink;
  }
  ep::BufferConfig bc = bufferConfig();
  bc.mask.originalRanks = kRanks;
  bc.mask.keptRanks = kept;
  ep::Buffer buffer(*shrunk, bc);
  for (int round = 0; round < kRoundsAfter; ++round) {
    if (!normalRound(buffer, kept, round) || !lowLatencyRound(buffer, kept, round)) {
      return kBadResult;
    }
  }
  // The old communicator stays aborted.
  try {
    comm->barrier();
    return kBadShrink;
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kInvalidUsage) return kBadShrink;
  }
  return kOk;
}

TEST(Shrink, SurvivorsServeOnWithTheDeadRanksExpertsMasked) {
  const std::vector<RankExit> exits =
      forkRanks(kRanks, &loseARankAndShrink, std::chrono::seconds(240));
  ASSERT_EQ(exits.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_FALSE(exits[r].timedOut) << "rank " << r;
    if (r == kVictim) {
      EXPECT_TRUE(WIFSIGNALED(exits[r].status)) << "the victim, status " << exits[r].status;
      continue;
    }
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

// Rank 2 stays alive but never joins: the others' shrink fails at the timeout, naming it.
int liveRankStaysOut(int rank, const UniqueId& id) {
  std::unique_ptr<Communicator> comm = Communicator::init(id, rank, 3, shmConfig(1500));
  comm->barrier();
  if (rank == 2) {
    std::this_thread::sleep_for(std::chrono::seconds(4));
    return kOk;
  }
  try {
    comm->shrink();
    return kBadShrink;
  } catch (const Error& e) {
    const std::string what = e.what();
    std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
    const bool named = what.find("rank 2 (pid ") != std::string::npos &&
                       what.find("did not call shrink") != std::string::npos;
    return e.code() == ErrorCode::kTimeout && named ? kOk : kWrongLoss;
  }
}

TEST(Shrink, ALiveRankThatDoesNotJoinIsNamedAtTheTimeout) {
  const std::vector<RankExit> exits = forkRanks(3, &liveRankStaysOut, std::chrono::seconds(60));
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

// The C API: rank 0 dies before an all-reduce; the survivors shrink through epcommCommShrink
// and all-reduce on the new communicator.
int shrinkThroughTheCApi(int rank, const UniqueId& id) {
  epcommUniqueId cid;
  static_assert(sizeof(cid.internal) == UniqueId::kBytes);
  std::memcpy(cid.internal, id.bytes.data(), UniqueId::kBytes);
  setenv("EPCOMM_BACKEND", "shm", 1);
  setenv("EPCOMM_TIMEOUT_MS", "20000", 1);
  epcommComm_t comm = nullptr;
  if (epcommCommInitRank(&comm, 3, cid, rank) != epcommSuccess) return kBadShrink;
  if (rank == 0) _exit(0);
  float v = 1.f;
  if (epcommAllReduce(&v, &v, 1, epcommFloat32, epcommSum, comm) != epcommRemoteError) {
    return kNoLoss;
  }
  epcommComm_t shrunk = nullptr;
  int kept[3] = {-1, -1, -1};
  if (epcommCommShrink(comm, &shrunk, kept) != epcommSuccess) {
    std::fprintf(stderr, "rank %d: %s\n", rank, epcommGetLastError(comm));
    return kBadShrink;
  }
  int size = 0;
  epcommCommCount(shrunk, &size);
  float w = static_cast<float>(rank);
  bool ok = size == 2 && kept[0] == 1 && kept[1] == 2 &&
            epcommAllReduce(&w, &w, 1, epcommFloat32, epcommSum, shrunk) == epcommSuccess &&
            w == 3.f;
  // An EP Buffer with rank 0's experts masked: its layout counts nothing for them, and a
  // token routed only there goes nowhere.
  epcommEpConfig_t config = EPCOMM_EP_CONFIG_INITIALIZER;
  config.normalBufferMiB = 8;
  config.maskOriginalRanks = 3;
  config.maskKeptRanks = kept;
  epcommEpBuffer_t buffer = nullptr;
  ok = ok && epcommEpBufferCreate(shrunk, &config, &buffer) == epcommSuccess;
  const std::int64_t idx[4] = {0, 1, 2, 5};  // token 0: rank 0's experts; token 1: 2 and 5
  epcommEpLayoutInputs_t in{idx, 2, 2, 6};
  epcommEpLayoutOutputs_t out{};
  ok = ok && epcommEpGetDispatchLayout(buffer, &in, &out) == epcommSuccess && out.numExperts == 6 &&
       out.numRanks == 2 && out.numTokensPerExpert[0] == 0 && out.numTokensPerExpert[1] == 0 &&
       out.numTokensPerExpert[2] == 1 && out.numTokensPerExpert[5] == 1 &&
       out.isTokenInRank[0] == 0 && out.isTokenInRank[1] == 0 && out.isTokenInRank[2] == 1 &&
       out.isTokenInRank[3] == 1;
  epcommEpBufferDestroy(buffer);
  epcommCommDestroy(shrunk);
  epcommCommDestroy(comm);
  return ok ? kOk : kBadResult;
}

TEST(Shrink, ThroughTheCApi) {
  const std::vector<RankExit> exits = forkRanks(3, &shrinkThroughTheCApi, std::chrono::seconds(60));
  for (int r = 1; r < 3; ++r) {
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

// A backend without shrink refuses it, naming itself and the one that can.
int shrinkOnUcx(int rank, const UniqueId& id) {
  Config c = shmConfig(20000);
  c.backend = "ucx";
  std::unique_ptr<Communicator> comm = Communicator::init(id, rank, 2, c);
  try {
    comm->shrink();
    return kBadShrink;
  } catch (const Error& e) {
    const std::string what = e.what();
    return e.code() == ErrorCode::kInvalidUsage &&
                   what.find("backend ucx cannot shrink") != std::string::npos &&
                   what.find("EPCOMM_BACKEND=shm") != std::string::npos
               ? kOk
               : kWrongLoss;
  }
}

TEST(Shrink, ABackendThatCannotShrinkSaysSo) {
  const std::vector<RankExit> exits = forkRanks(2, &shrinkOnUcx, std::chrono::seconds(60));
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

}  // namespace
}  // namespace epcomm::test
