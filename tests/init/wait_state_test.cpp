// A hung rank, seen by polling (Communicator::waitState, epcommCommGetWaitState) while a call
// waits, long before EPCOMM_TIMEOUT_MS: the last rank stops itself (SIGSTOP) before an
// all-reduce; rank 0's watchdog thread polls until the state names the call (inside a
// CallScope), the stopped rank and at least a second of waiting, then wakes the rank
// (SIGCONT) and the all-reduce completes. Forked ranks on shm and ucx, the C API on shm, and
// the mpi backend when started under mpirun (which does not say the rank: -1).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/epcomm.h"
#include "comm/error.h"
#include "tests/common/fork_launcher.h"

namespace epcomm::test {
namespace {

constexpr int kOk = 0;
constexpr int kNotSeen = 3;
constexpr int kFailed = 4;

struct Seen {
  bool waiting = false;
  int peer = -1;
  double seconds = 0;
  std::string call;
};

// Polls `poll` every 20 ms until it reports a wait of at least a second (at most 20 s), then
// wakes `stopped`.
template <typename Poll>
Seen watch(Poll&& poll, pid_t stopped) {
  Seen seen;
  for (int i = 0; i < 1000; ++i) {
    seen = poll();
    if (seen.waiting && seen.seconds >= 1.0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(stopped, SIGCONT);
  return seen;
}

// The watchdog thread of rank 0 (elsewhere none): watch() into `seen`.
template <typename Poll>
std::thread watchdogOn(bool rankZero, Seen& seen, Poll poll, pid_t stopped) {
  if (!rankZero) return {};
  return std::thread([&seen, poll, stopped] { seen = watch(poll, stopped); });
}

bool named(const Seen& seen, int expectedPeer, const char* call) {
  std::fprintf(stderr, "wait state: waiting %d, call \"%s\", peer %d, %.2f s\n", seen.waiting,
               seen.call.c_str(), seen.peer, seen.seconds);
  return seen.waiting && seen.peer == expectedPeer && seen.seconds >= 1.0 &&
         seen.call.find(call) != std::string::npos;
}

// Every rank: pids shared, the last rank stops, rank 0 watches its all-reduce.
int hungRankSeen(Communicator& comm, bool peerKnown) {
  const int rank = comm.rank(), size = comm.size();
  std::vector<int> pids(static_cast<std::size_t>(size));
  const int pid = getpid();
  comm.allGather(&pid, pids.data(), 1, DataType::kI32);
  if (rank == size - 1) raise(SIGSTOP);  // woken by rank 0's watchdog
  Seen seen;
  std::thread watchdog = watchdogOn(
      rank == 0, seen,
      [&comm] {
        const Communicator::WaitState w = comm.waitState();
        return Seen{w.waiting, w.peer, w.seconds, w.call};
      },
      pids[static_cast<std::size_t>(size - 1)]);
  float v = 1.f;
  {
    const Communicator::CallScope call(comm, "test::step");
    comm.allReduce(&v, &v, 1, DataType::kF32, ReduceOp::kSum);
  }
  if (watchdog.joinable()) watchdog.join();
  if (v != static_cast<float>(size)) return kFailed;
  if (rank != 0) return kOk;
  return named(seen, peerKnown ? size - 1 : -1, "test::step (in its allReduce") ? kOk : kNotSeen;
}

Config configFor(const char* backend) {
  Config c = Config::defaults();
  c.backend = backend;
  c.timeoutMs = 30000;
  return c;
}

void expectAllOk(const std::vector<RankExit>& exits) {
  for (std::size_t r = 0; r < exits.size(); ++r) {
    EXPECT_FALSE(exits[r].timedOut) << "rank " << r;
    EXPECT_TRUE(WIFEXITED(exits[r].status) && WEXITSTATUS(exits[r].status) == kOk)
        << "rank " << r << " status " << exits[r].status;
  }
}

TEST(WaitState, ShmNamesTheStoppedRank) {
  expectAllOk(forkRanks(
      3,
      [](int rank, const UniqueId& id) {
        return hungRankSeen(*Communicator::init(id, rank, 3, configFor("shm")), true);
      },
      std::chrono::seconds(60)));
}

TEST(WaitState, UcxNamesTheStoppedRank) {
  expectAllOk(forkRanks(
      2,
      [](int rank, const UniqueId& id) {
        return hungRankSeen(*Communicator::init(id, rank, 2, configFor("ucx")), true);
      },
      std::chrono::seconds(60)));
}

// The C API: epcommCommGetWaitState from rank 0's watchdog thread.
int hungRankSeenFromC(int rank, const UniqueId& id) {
  epcommUniqueId cid;
  std::memcpy(cid.internal, id.bytes.data(), UniqueId::kBytes);
  setenv("EPCOMM_BACKEND", "shm", 1);
  epcommComm_t comm = nullptr;
  if (epcommCommInitRank(&comm, 2, cid, rank) != epcommSuccess) return kFailed;
  int pids[2] = {0, 0};
  const int pid = getpid();
  if (epcommAllGather(&pid, pids, 1, epcommInt32, comm) != epcommSuccess) return kFailed;
  if (rank == 1) raise(SIGSTOP);
  Seen seen;
  std::thread watchdog = watchdogOn(
      rank == 0, seen,
      [comm] {
        epcommWaitState_t w{};
        if (epcommCommGetWaitState(comm, &w) != epcommSuccess) return Seen{};
        return Seen{w.waiting != 0, w.peer, w.seconds, w.call};
      },
      pids[1]);
  const epcommResult_t rc = epcommBarrier(comm);
  if (watchdog.joinable()) watchdog.join();
  epcommCommDestroy(comm);
  if (rc != epcommSuccess) return kFailed;
  return rank != 0 || named(seen, 1, "barrier") ? kOk : kNotSeen;
}

TEST(WaitState, ThroughTheCApi) {
  expectAllOk(forkRanks(2, &hungRankSeenFromC, std::chrono::seconds(60)));
}

}  // namespace
}  // namespace epcomm::test

// Under mpirun (EPCOMM_BACKEND=mpi): one run of hungRankSeen on the launcher's ranks, the
// peer unknown; otherwise the forked tests above.
int main(int argc, char** argv) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) {
    auto comm = epcomm::Communicator::initFromEnvironment();
    const int rc = epcomm::test::hungRankSeen(*comm, false);
    std::printf("rank %d: %s\n", comm->rank(), rc == 0 ? "passed" : "FAILED");
    return rc;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
