// A rank lost in the middle of an EP call is reported on every survivor as that call's
// failure, naming the dead rank: "ep::dispatch (in its allReduce): rank 2 (pid N) died". Forked
// ranks over shm (bootstrapped by UniqueId), so the lost rank is not a launcher's business.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/error.h"
#include "ep/buffer.h"
#include "tests/common/fork_launcher.h"

namespace epcomm::test {
namespace {

constexpr int kRanks = 3;
constexpr int kOk = 0;
constexpr int kNoError = 4;
constexpr int kWrongError = 5;

int dispatchWithALostRank(int rank, const UniqueId& id) {
  try {
    Config c = Config::defaults();
    c.backend = "shm";
    c.timeoutMs = 20000;
    auto comm = Communicator::init(id, rank, kRanks, c);
    ep::BufferConfig bc;
    bc.normalBytes = std::size_t{8} << 20;
    ep::Buffer buffer(*comm, bc);
    if (rank == kRanks - 1) _exit(0);  // gone before the call the others make
    constexpr int kTokens = 8, kHidden = 256, kTopk = 2, kExperts = 6;
    std::vector<Bf16> x(kTokens * kHidden, toBf16(1.f));
    std::vector<std::int64_t> idx(kTokens * kTopk);
    for (int t = 0; t < kTokens; ++t) {
      idx[t * kTopk] = t % kExperts;
      idx[t * kTopk + 1] = (t + 1) % kExperts;
    }
    ep::DispatchInputs in;
    in.x = x.data();
    in.numTokens = kTokens;
    in.hidden = kHidden;
    in.topkIdx = idx.data();
    in.numTopk = kTopk;
    in.numExperts = kExperts;
    ep::DispatchOutputs out;
    buffer.dispatch(in, out);
    return kNoError;
  } catch (const Error& e) {
    const std::string what = e.what();
    std::fprintf(stderr, "rank %d: %s\n", rank, what.c_str());
    const std::string dead = "rank " + std::to_string(kRanks - 1) + " (pid ";
    const bool names = what.find("ep::dispatch (in its ") != std::string::npos &&
                       what.find(dead) != std::string::npos;
    return e.code() == ErrorCode::kPeerLost && names ? kOk : kWrongError;
  }
}

TEST(EpPeerLoss, EverySurvivorNamesTheCallAndTheDeadRank) {
  const std::vector<RankExit> exits =
      forkRanks(kRanks, &dispatchWithALostRank, std::chrono::seconds(60));
  ASSERT_EQ(exits.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_FALSE(exits[r].timedOut) << "rank " << r;
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

}  // namespace
}  // namespace epcomm::test
