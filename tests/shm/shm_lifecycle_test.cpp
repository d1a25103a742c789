// Lifecycle of the shm backend's segment, with ranks this test forks itself (no mpirun, whose
// teardown would race a killed rank): nothing is left in /dev/shm once a communicator is up,
// and a rank killed with SIGKILL inside a loop of all-reduces makes every other rank fail
// with PeerLost (or Timeout) within EPCOMM_TIMEOUT_MS, exit, and leave nothing behind. The
// same for symmetric windows (one shared-memory file each): nothing in /dev/shm while they
// are alive or after, waitSignal times out, a SIGKILLed signaller is PeerLost for its
// waiters, and a communicator destroyed with a window alive does not crash.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "comm/backend.h"
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

// Every rank exited normally with kOk.
void expectEveryRankOk(const std::vector<RankExit>& children) {
  ASSERT_EQ(children.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_TRUE(WIFEXITED(children[r].status) && WEXITSTATUS(children[r].status) == kOk)
        << "rank " << r << " status " << children[r].status;
  }
}

TEST(ShmLifecycle, NothingInDevShmAfterInit) {
  gBefore = shmEntries();
  const std::vector<RankExit> children = runRanks(&initAndCheck, std::chrono::seconds(60));
  expectEveryRankOk(children);
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
  expectEveryRankOk(children);
}

// A rank that aborts after an error tells its peers why: rank 1 times out receiving from
// rank 2 (which never sends); rank 0, waiting in a barrier for rank 1, learns that rank 1
// aborted and rank 1's own error (comm/backend.h: EPCOMM_ABORT_REASON_MARK).
int abortCarriesTheReason(int rank, const UniqueId& id) {
  try {
    auto comm = Communicator::init(id, rank, kRanks, shmConfig(kShortTimeoutMs));
    if (rank >= 2) {
      sleep(3);
      return kOk;
    }
    if (rank == 1) {
      int v = 0;
      comm->recv(&v, 1, DataType::kI32, 2);
      return kNoError;
    }
    usleep(300 * 1000);
    comm->barrier();
    return kNoError;
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    const std::string what = e.what();
    if (rank == 1) return e.code() == ErrorCode::kTimeout ? kOk : kWrongError;
    const bool reason =
        what.find("aborted by rank 1" EPCOMM_ABORT_REASON_MARK) != std::string::npos &&
        what.find("epcomm rank 1: recv: ") != std::string::npos &&
        what.find("EPCOMM_TIMEOUT_MS") != std::string::npos;
    return e.code() == ErrorCode::kPeerLost && reason ? kOk : kWrongError;
  }
}

TEST(ShmLifecycle, AbortCarriesTheReason) {
  const std::vector<RankExit> children = runRanks(&abortCarriesTheReason, std::chrono::seconds(60));
  expectEveryRankOk(children);
}

// A hung rank (SIGSTOP) is reported while the others wait: with EPCOMM_WAIT_REPORT_S=1 rank 0
// logs, about every second, which call waits for which rank and how long, until
// EPCOMM_TIMEOUT_MS ends the wait; then it kills the stopped rank.
int stoppedPeerIsReported(int rank, const UniqueId& id) {
  char path[] = "/tmp/epcomm-wait-report-XXXXXX";
  if (rank == 0) {
    const int fd = mkstemp(path);
    if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) return kInitFailed;
    close(fd);
  }
  std::vector<int> pids(kRanks);
  try {
    Config c = shmConfig(3500);
    c.waitReportS = 1;
    auto comm = Communicator::init(id, rank, kRanks, c);
    const int pid = getpid();
    comm->allGather(&pid, pids.data(), 1, DataType::kI32);
    if (rank == kRanks - 1) raise(SIGSTOP);  // killed there by rank 0
    std::vector<float> v(16, 1.f);
    comm->allReduce(v.data(), v.data(), v.size(), DataType::kF32, ReduceOp::kSum);
    return kNoError;
  } catch (const Error& e) {
    if (rank != 0) return kOk;  // its own timeout, or rank 0's abort
    std::fflush(stderr);
    kill(pids[kRanks - 1], SIGKILL);
    std::FILE* f = std::fopen(path, "r");
    std::string log;
    for (int ch; f && (ch = std::fgetc(f)) != EOF;) log += static_cast<char>(ch);
    if (f) std::fclose(f);
    std::remove(path);
    const std::string stopped = "for rank " + std::to_string(kRanks - 1);
    std::size_t reports = 0;
    for (std::size_t at = 0;
         (at = log.find("rank 0: allReduce has waited", at)) != std::string::npos; ++at) {
      const std::size_t end = log.find('\n', at);
      const std::string line = log.substr(at, end - at);
      if (line.find(stopped) != std::string::npos &&
          line.find("EPCOMM_TIMEOUT_MS=3500") != std::string::npos &&
          line.find("EPCOMM_WAIT_REPORT_S=1") != std::string::npos) {
        ++reports;
      }
    }
    std::printf("rank 0: %zu reports; error: %s\n--- log ---\n%s", reports, e.what(), log.c_str());
    // 3.5 s of waiting at one report a second: 3 (2 on a slow start), never a flood.
    return e.code() == ErrorCode::kTimeout && reports >= 2 && reports <= 4 ? kOk : kWrongError;
  }
}

TEST(ShmLifecycle, StoppedPeerIsReportedWhileOthersWait) {
  const std::vector<RankExit> children = runRanks(&stoppedPeerIsReported, std::chrono::seconds(60));
  ASSERT_EQ(children.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r + 1 < kRanks; ++r) {
    EXPECT_TRUE(WIFEXITED(children[r].status) && WEXITSTATUS(children[r].status) == kOk)
        << "rank " << r << " status " << children[r].status;
  }
  EXPECT_TRUE(WIFSIGNALED(children[kRanks - 1].status) &&
              WTERMSIG(children[kRanks - 1].status) == SIGKILL)
      << "the stopped rank's status " << children[kRanks - 1].status;
}

// ---- symmetric windows: one shared-memory file each, with the segment's guarantees ----

// Waits on slot 0 of `w` for a signal that never comes. Returns how long the wait took and
// the error it ended with (logged), or nothing when it returned normally.
struct FailedWait {
  ErrorCode code;
  std::string what;
  long long ms;
};
std::optional<FailedWait> waitForNoSignal(Window& w, int rank) {
  const auto start = std::chrono::steady_clock::now();
  try {
    w.waitSignal(0, 1);
    return std::nullopt;
  } catch (const Error& e) {
    const long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    std::fprintf(stderr, "rank %d after %lld ms: %s\n", rank, ms, e.what());
    return FailedWait{e.code(), e.what(), ms};
  }
}

constexpr int kWindowLeft = 8;
constexpr int kNotDetached = 9;

int windowsLeaveNothing(int rank, const UniqueId& id) {
  try {
    auto comm = Communicator::init(id, rank, kRanks, shmConfig());
    auto a = comm->createWindow(1 << 20, 4);
    auto b = comm->allocate(12345);
    for (const std::string& n : shmEntries()) {
      if (!gBefore.count(n)) {
        std::fprintf(stderr, "rank %d: /dev/shm/%s is visible with windows alive\n", rank,
                     n.c_str());
        return kWindowLeft;
      }
    }
    std::uint64_t v = 1;
    a->put((rank + 1) % kRanks, 0, &v, sizeof v);
    a->signal((rank + 1) % kRanks, 0, 1);
    a->waitSignal(0, 1);
    b.reset();
    a.reset();
    // A communicator destroyed with a window alive: the window is released with it, its
    // destructor does nothing and calls on it fail cleanly (comm/window.h).
    auto orphan = comm->createWindow(4096, 1);
    comm.reset();
    try {
      orphan->signal(0, 0, 1);
      return kNotDetached;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInvalidUsage) return kWrongError;
    }
    orphan.reset();
    return kOk;
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return kInitFailed;
  }
}

TEST(ShmLifecycle, WindowsLeaveNothingInDevShm) {
  gBefore = shmEntries();
  const std::vector<RankExit> children = runRanks(&windowsLeaveNothing, std::chrono::seconds(60));
  expectEveryRankOk(children);
  EXPECT_EQ(shmEntries(), gBefore);
}

// Rank 0 waits on a slot nobody signals (the others are alive, outside any call, for 3 s):
// kTimeout naming the call and the knob, within the timeout plus slack. The others then
// destroy the window without waiting (rank 0's communicator aborted on the error).
int waitSignalTimesOut(int rank, const UniqueId& id) {
  try {
    auto comm = Communicator::init(id, rank, kRanks, shmConfig(kShortTimeoutMs));
    auto w = comm->createWindow(64, 1);
    if (rank != 0) {
      sleep(3);
      const auto start = std::chrono::steady_clock::now();
      w.reset();  // rank 0 aborted: a local release, no closing barrier to wait in
      return std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500)
                 ? kOk
                 : kWrongResult;
    }
    const std::optional<FailedWait> f = waitForNoSignal(*w, rank);
    if (!f) return kNoError;
    if (f->code != ErrorCode::kTimeout || f->what.find("waitSignal") == std::string::npos ||
        f->what.find("EPCOMM_TIMEOUT_MS=1000") == std::string::npos) {
      return kWrongError;
    }
    return f->ms >= kShortTimeoutMs && f->ms < kShortTimeoutMs + 1500 ? kOk : kWrongResult;
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
    return kInitFailed;
  }
}

TEST(ShmLifecycle, WaitSignalTimesOut) {
  const std::vector<RankExit> children = runRanks(&waitSignalTimesOut, std::chrono::seconds(60));
  expectEveryRankOk(children);
}

// A rank is SIGKILLed while the others wait for its signal (with a long timeout): they
// must fail with kPeerLost well before the timeout (liveness by pid), destroy their
// windows without waiting, and leave nothing in /dev/shm.
constexpr std::int64_t kLongTimeoutMs = 20000;

int waitSignalPeerKilled(int rank, const UniqueId& id) {
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Window> w;
  try {
    comm = Communicator::init(id, rank, kRanks, shmConfig(kLongTimeoutMs));
    w = comm->createWindow(1 << 16, 1);
  } catch (const Error& e) {
    std::fprintf(stderr, "rank %d: init: %s\n", rank, e.what());
    return kInitFailed;
  }
  if (rank == kVictim) {
    usleep(200000);
    raise(SIGKILL);
  }
  const std::optional<FailedWait> f = waitForNoSignal(*w, rank);
  if (!f) return kNoError;
  if (f->code != ErrorCode::kPeerLost) return kWrongError;
  const auto t0 = std::chrono::steady_clock::now();
  w.reset();
  comm.reset();
  const bool quick = std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2);
  return f->ms < kLongTimeoutMs / 2 && quick ? kOk : kWrongResult;
}

TEST(ShmLifecycle, SigkilledRankIsPeerLostInWaitSignal) {
  const std::set<std::string> before = shmEntries();
  const std::vector<RankExit> children = runRanks(&waitSignalPeerKilled, std::chrono::seconds(60));
  ASSERT_EQ(children.size(), static_cast<std::size_t>(kRanks));
  for (int r = 0; r < kRanks; ++r) {
    const int st = children[r].status;
    if (r == kVictim) {
      EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "status " << st;
    } else {
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == kOk) << "rank " << r << " status " << st;
    }
  }
  EXPECT_EQ(shmEntries(), before);
}

}  // namespace
}  // namespace epcomm::test
