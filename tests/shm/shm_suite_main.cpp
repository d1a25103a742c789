// main() of the shm multi-rank suites (windows, registered collectives): ranks come from
// the environment (mpirun), or, with EPCOMM_TEST_FORK_RANKS=N, from N forked processes
// bootstrapped by UniqueId. Every rank runs the same tests in the same order; checks are
// non-fatal so no rank leaves the sequence, and the ranks agree on the result at the end.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "comm/communicator.h"
#include "tests/common/fork_launcher.h"
#include "tests/shm/shm_suite.h"

namespace epcomm::test {

Communicator* gShmComm = nullptr;

namespace {

int runSuite(Communicator& comm) {
  gShmComm = &comm;
  const int rc = RUN_ALL_TESTS();
  int mine = rc == 0 ? 0 : 1;
  comm.allReduce(&mine, &mine, 1, DataType::kI32, ReduceOp::kMax);
  gShmComm = nullptr;
  return mine;
}

}  // namespace
}  // namespace epcomm::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // The backend notes which path registered collectives take at debug level (the
  // registered suite checks them); before any communicator exists, so every rank has it.
  setenv("EPCOMM_LOG_LEVEL", "debug", 1);
  int rc = 1;
  try {
    const char* forkRanks = std::getenv("EPCOMM_TEST_FORK_RANKS");
    if (forkRanks && std::atoi(forkRanks) > 0) {
      const auto result = epcomm::test::runForkedRanks(
          std::atoi(forkRanks), epcomm::Config::fromEnvironment(),
          [](std::unique_ptr<epcomm::Communicator> comm) { return epcomm::test::runSuite(*comm); },
          std::chrono::seconds(540));
      std::fprintf(stderr, "shm suite: %d forked ranks failed, %d timed out\n", result.failedRanks,
                   result.timedOutRanks);
      return result.failedRanks + result.timedOutRanks == 0 ? 0 : 1;
    }
    auto comm = epcomm::Communicator::initFromEnvironment();
    rc = epcomm::test::runSuite(*comm);
  } catch (const epcomm::Error& e) {
    std::fprintf(stderr, "shm suite: %s\n", e.what());
    rc = 1;
  }
  // On failure leave without finalizing MPI, so mpirun ends the ranks still waiting.
  if (rc != 0) std::_Exit(rc);
  return rc;
}
