// Runs N ranks as forked processes bootstrapped by UniqueId (no mpirun), the way an engine
// that starts its own processes uses epcomm. The parent forks, makes the id, and waits.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace epcomm::test {

// How one forked rank ended.
struct RankExit {
  int status = 0;         // waitpid status
  bool timedOut = false;  // still running at the deadline, then killed
};

// Forks `ranks` children before any thread exists in this process (a child forked while
// the rendezvous thread holds a lock could deadlock), then makes one UniqueId and hands it
// to them through pipes. Child r runs body(r, id) and exits with its return value (1 if the
// id never came). Waits at most `deadline`, killing stragglers. Results in rank order.
std::vector<RankExit> forkRanks(int ranks, const std::function<int(int, const UniqueId&)>& body,
                                std::chrono::seconds deadline);

struct ForkResult {
  int failedRanks = 0;    // ranks that exited non-zero or were killed
  int timedOutRanks = 0;  // ranks still running at the deadline (then killed)
};

// forkRanks where child r runs body(rank r's communicator, made with `config`); an
// epcomm::Error escaping init or body is printed and exits 1.
ForkResult runForkedRanks(int ranks, const Config& config,
                          const std::function<int(std::unique_ptr<Communicator>)>& body,
                          std::chrono::seconds deadline);

// main() of a multi-rank GoogleTest suite: ranks come from the environment (mpirun, or one
// process), or, with EPCOMM_TEST_FORK_RANKS=N, from N forked processes bootstrapped by
// UniqueId. Every rank runs the same tests in the same order with *current pointing at its
// communicator, and the ranks agree on the verdict. quietPeers: only rank 0 prints the
// report (the others print failures). On failure the process leaves without finalizing MPI,
// so mpirun ends ranks still waiting. Call after ::testing::InitGoogleTest.
int runSuiteOnRanks(const char* name, Communicator** current, bool quietPeers);

}  // namespace epcomm::test
