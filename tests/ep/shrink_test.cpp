// A lost rank need not end the service (Communicator::shrink, BufferConfig::mask): forked
// ranks over shm, one killed in the middle of a low-latency dispatch; every survivor sees the
// loss, the survivors shrink to a communicator without it, rebuild their EP Buffer with the
// dead rank's experts masked, and run 100 further rounds of normal and low-latency
// dispatch/combine, every output checked against an oracle that knows the mask. Also: a live
// rank that does not join the shrink is named at the timeout; the C API; ucx. Under mpirun
// (ep_shrink_mpi_np2): the mpi backend refuses shrink, naming the backends that can.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/epcomm.h"
#include "comm/error.h"
#include "ep/buffer.h"
#include "ep/epcomm_ep.h"
#include "tests/common/fork_launcher.h"
#include "tests/ep/shrink_rounds.h"

namespace epcomm::test {
namespace {

constexpr int kRanks = 4;
constexpr int kVictim = 2;
constexpr MaskedLayout kLayout{kRanks, kVictim};
constexpr int kRoundsAfter = 100;

// Exit codes of a forked rank.
constexpr int kOk = 0;
constexpr int kNoLoss = 3;     // no call failed after the victim died
constexpr int kWrongLoss = 4;  // the failure was not a lost peer
constexpr int kBadResult = 5;  // an output differed from the oracle
constexpr int kBadShrink = 6;

Config shmConfig(std::int64_t timeoutMs) {
  Config c = Config::defaults();
  c.backend = "shm";
  c.timeoutMs = timeoutMs;
  return c;
}

int loseARankAndShrink(int rank, const UniqueId& id) {
  std::unique_ptr<Communicator> comm = Communicator::init(id, rank, kRanks, shmConfig(20000));
  const std::vector<int> all = {0, 1, 2, 3};
  try {
    ep::Buffer buffer(*comm, shrinkBufferConfig());
    for (int round = 0; round < 3; ++round) {
      if (!normalRound(buffer, kLayout, all, round) ||
          !lowLatencyRound(buffer, kLayout, all, round)) {
        return kBadResult;
      }
    }
    // The victim dies between its sends and its receive; the others go on until they fail.
    for (int round = 3; round < 200; ++round) {
      if (!lowLatencyRound(buffer, kLayout, all, round, rank == kVictim) ||
          !normalRound(buffer, kLayout, all, round)) {
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
  ep::BufferConfig bc = shrinkBufferConfig();
  bc.mask.originalRanks = kRanks;
  bc.mask.keptRanks = kept;
  ep::Buffer buffer(*shrunk, bc);
  for (int round = 0; round < kRoundsAfter; ++round) {
    if (!normalRound(buffer, kLayout, kept, round) ||
        !lowLatencyRound(buffer, kLayout, kept, round)) {
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

// Each of `ranks` exited normally with kOk.
void expectOk(const std::vector<RankExit>& exits, std::initializer_list<int> ranks) {
  for (int r : ranks) {
    EXPECT_FALSE(exits[r].timedOut) << "rank " << r;
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

TEST(Shrink, SurvivorsServeOnWithTheDeadRanksExpertsMasked) {
  const std::vector<RankExit> exits =
      forkRanks(kRanks, &loseARankAndShrink, std::chrono::seconds(240));
  ASSERT_EQ(exits.size(), static_cast<std::size_t>(kRanks));
  static_assert(kRanks == 4 && kVictim == 2);
  expectOk(exits, {0, 1, 3});
  EXPECT_FALSE(exits[kVictim].timedOut);
  EXPECT_TRUE(WIFSIGNALED(exits[kVictim].status)) << "the victim, status " << exits[kVictim].status;
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
  expectOk(exits, {0, 1, 2});
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
  expectOk(exits, {1, 2});
}

// The network backend: rank 1 of 3 dies before an all-reduce; the survivors shrink over UCX
// (a coordinator collects them) and all-reduce on the new communicator.
int shrinkOnUcx(int rank, const UniqueId& id) {
  Config c = shmConfig(20000);
  c.backend = "ucx";
  std::unique_ptr<Communicator> comm = Communicator::init(id, rank, 3, c);
  comm->barrier();
  if (rank == 1) {
    // Gone once the others surely left the barrier (a peer still in it would see the loss
    // there instead).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    _exit(0);
  }
  float v = 1.f;
  try {
    comm->allReduce(&v, &v, 1, DataType::kF32, ReduceOp::kSum);
    return kNoLoss;
  } catch (const Error& e) {
    if (e.code() != ErrorCode::kPeerLost) return kWrongLoss;
  }
  std::vector<int> kept;
  std::unique_ptr<Communicator> shrunk;
  try {
    shrunk = comm->shrink(&kept);
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: shrink failed: %s\n", rank, e.what());
    return kBadShrink;
  }
  if (kept != std::vector<int>{0, 2} || shrunk->size() != 2) {
    std::fprintf(stderr, "rank %d: kept %zu ranks, size %d\n", rank, kept.size(), shrunk->size());
    return kBadShrink;
  }
  for (int i = 0; i < 20; ++i) {
    float w = static_cast<float>(rank + i);
    shrunk->allReduce(&w, &w, 1, DataType::kF32, ReduceOp::kSum);
    if (w != static_cast<float>(2 + 2 * i)) return kBadResult;
  }
  return kOk;
}

TEST(Shrink, OverUcx) {
  const std::vector<RankExit> exits = forkRanks(3, &shrinkOnUcx, std::chrono::seconds(90));
  expectOk(exits, {0, 2});
}

}  // namespace
}  // namespace epcomm::test

// Under mpirun (EPCOMM_BACKEND=mpi): shrink is refused, naming itself and what can; otherwise
// the forked tests above.
int main(int argc, char** argv) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) {
    auto comm = epcomm::Communicator::initFromEnvironment();
    bool ok = false;
    try {
      comm->shrink();
    } catch (const epcomm::Error& e) {
      const std::string what = e.what();
      std::printf("rank %d: %s\n", comm->rank(), what.c_str());
      ok = e.code() == epcomm::ErrorCode::kInvalidUsage &&
           what.find("backend mpi cannot shrink") != std::string::npos &&
           what.find("the launcher ends the job") != std::string::npos;
    }
    std::printf("rank %d: %s\n", comm->rank(), ok ? "passed" : "FAILED");
    return ok ? 0 : 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
