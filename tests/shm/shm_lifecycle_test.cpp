// Lifecycle of the shm backend's segment, with ranks this test forks itself (no mpirun, whose
// teardown would race a killed rank): nothing is left in /dev/shm once a communicator is up,
// and a rank killed with SIGKILL inside a loop of all-reduces makes every other rank fail
// with PeerLost (or Timeout) within EPCOMM_TIMEOUT_MS, exit, and leave nothing behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/unique_id.h"
#include "tests/common/fork_launcher.h"

namespace epcomm::test {
namespace {

constexpr int kRanks = 4;
constexpr std::int64_t kTimeoutMs = 5000;
// Child exit codes.
constexpr int kOk = 0;
constexpr int kSegmentVisible = 3;
constexpr int kNoError = 4;
constexpr int kWrongError = 5;
constexpr int kWrongResult = 6;
constexpr int kInitFailed = 7;

std::set<std::string> shmEntries() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm", ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("epcomm-shm-", 0) == 0) names.insert(n);
  }
  return names;
}

Config shmConfig(std::int64_t timeoutMs = kTimeoutMs) {
  Config c = Config::defaults();
  c.backend = "shm";
  c.timeoutMs = timeoutMs;
  c.bufferBytes = std::size_t{1} << 20;
  c.connectTimeoutS = 30;
  return c;
}

// Runs the kRanks forked ranks; a rank still running after `limit` is killed and fails
// the test.
std::vector<RankExit> runRanks(int (*body)(int rank, const UniqueId& id),
                               std::chrono::seconds limit) {
  std::vector<RankExit> exits = forkRanks(kRanks, body, limit);
  for (std::size_t r = 0; r < exits.size(); ++r) {
    if (exits[r].timedOut)
      ADD_FAILURE() << "rank " << r << " still running after " << limit.count() << " s";
  }
  return exits;
}

std::set<std::string> gBefore;

int initAndCheck(int rank, const UniqueId& id) {
  try {
    auto comm = Communicator::init(id, rank, kRanks, shmConfig());
    for (const std::string& n : shmEntries()) {
      if (!gBefore.count(n)) {
        std::fprintf(stderr, "rank %d: /dev/shm/%s is visible after init\n", rank, n.c_str());
        return kSegmentVisible;
      }
    }
    std::int64_t v = rank + 1;
    comm->allReduce(&v, &v, 1, DataType::kI64, ReduceOp::kSum);
    comm->barrier();
    return v == kRanks * (kRanks + 1) / 2 ? kOk : kWrongResult;
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return kInitFailed;
  }
}

TEST(ShmLifecycle, NothingInDevShmAfterInit) {
  gBefore = shmEntries();
  const std::vector<RankExit> children = runRanks(&initAndCheck, std::chrono::seconds(60));
  ASSERT_EQ(children.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_TRUE(WIFEXITED(children[r].status) && WEXITSTATUS(children[r].status) == kOk)
        << "rank " << r << " status " << children[r].status;
  }
  EXPECT_EQ(shmEntries(), gBefore);
}

constexpr int kVictim = 2;
constexpr int kKillAt = 200;
constexpr int kMaxIterations = 1000000;

int allReduceUntilPeerDies(int rank, const UniqueId& id) {
  std::unique_ptr<Communicator> comm;
  try {
    comm = Communicator::init(id, rank, kRanks, shmConfig());
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: init: %s\n", rank, e.what());
    return kInitFailed;
  }
  std::vector<float> data(1024, 1.0f);
  const auto start = std::chrono::steady_clock::now();
  try {
    for (int i = 0; i < kMaxIterations; ++i) {
      if (rank == kVictim && i == kKillAt) raise(SIGKILL);
      comm->allReduce(data.data(), data.data(), data.size(), DataType::kF32, ReduceOp::kMax);
      if (std::chrono::steady_clock::now() - start > std::chrono::seconds(30)) break;
    }
  } catch (const Error& e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    std::fprintf(stderr, "rank %d after %lld ms: %s\n", rank, static_cast<long long>(ms), e.what());
    return e.code() == ErrorCode::kPeerLost || e.code() == ErrorCode::kTimeout ? kOk : kWrongError;
  }
  return kNoError;
}

TEST(ShmLifecycle, SigkilledRankIsPeerLostEverywhere) {
  const std::set<std::string> before = shmEntries();
  const auto start = std::chrono::steady_clock::now();
  const std::vector<RankExit> children =
      runRanks(&allReduceUntilPeerDies, std::chrono::seconds(60));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(children.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    const int st = children[r].status;
    if (r == kVictim) {
      EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    } else {
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == kOk) << "rank " << r << " status " << st;
    }
  }
  // Every survivor noticed within the timeout (plus init and slack for a loaded machine).
  EXPECT_LT(elapsed, std::chrono::milliseconds(kTimeoutMs + 20000));
  EXPECT_EQ(shmEntries(), before);
}

constexpr std::int64_t kShortTimeoutMs = 1000;

// Rank 0 stays away from the collective (alive, not aborting) for 4 s; the others must
// report a timeout naming the call, the peer and the knob.
int waitForAbsentPeer(int rank, const UniqueId& id) {
  try {
    auto comm = Communicator::init(id, rank, kRanks, shmConfig(kShortTimeoutMs));
    if (rank == 0) {
      sleep(4);
      return kOk;
    }
    int v = 1;
    comm->allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
    return kNoError;
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    const std::string what = e.what();
    const bool named = what.find("allReduce") != std::string::npos &&
                       what.find("waited") != std::string::npos &&
                       what.find("EPCOMM_TIMEOUT_MS=1000") != std::string::npos;
    // The first to time out names rank 0; the others may see that rank's abort instead.
    if (e.code() == ErrorCode::kTimeout) return named ? kOk : kWrongError;
    return e.code() == ErrorCode::kPeerLost ? kOk : kWrongError;
  }
}

TEST(ShmLifecycle, AbsentPeerTimesOut) {
  const std::vector<RankExit> children = runRanks(&waitForAbsentPeer, std::chrono::seconds(60));
  ASSERT_EQ(children.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_TRUE(WIFEXITED(children[r].status) && WEXITSTATUS(children[r].status) == kOk)
        << "rank " << r << " status " << children[r].status;
  }
}

}  // namespace
}  // namespace epcomm::test
