// The EP suite's entry point: ranks from mpirun (EPCOMM_BACKEND=mpi or shm), or with
// EPCOMM_TEST_FORK_RANKS=N from N forked processes bootstrapped by UniqueId. Every rank
// runs the same tests in the same order; checks are non-fatal so no rank leaves the
// sequence of collectives early.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "tests/common/fork_launcher.h"
#include "tests/ep/ep_test_util.h"

namespace epcomm::test {
Communicator* gComm = nullptr;
}  // namespace epcomm::test

namespace {

int runSuite(epcomm::Communicator& comm) {
  epcomm::test::gComm = &comm;
  if (comm.rank() != 0) {
    // One rank's report is enough; the others print only failures.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  int mine = rc == 0 ? 0 : 1;
  comm.allReduce(&mine, &mine, 1, epcomm::DataType::kI32, epcomm::ReduceOp::kMax);
  epcomm::test::gComm = nullptr;
  return mine;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  int rc = 1;
  try {
    const char* forkRanks = std::getenv("EPCOMM_TEST_FORK_RANKS");
    if (forkRanks && std::atoi(forkRanks) > 0) {
      const auto result = epcomm::test::runForkedRanks(
          std::atoi(forkRanks), epcomm::Config::fromEnvironment(),
          [](std::unique_ptr<epcomm::Communicator> comm) { return runSuite(*comm); },
          std::chrono::seconds(540));
      std::fprintf(stderr, "ep_test: %d forked ranks failed, %d timed out\n", result.failedRanks,
                   result.timedOutRanks);
      return result.failedRanks + result.timedOutRanks == 0 ? 0 : 1;
    }
    auto comm = epcomm::Communicator::initFromEnvironment();
    rc = runSuite(*comm);
  } catch (const epcomm::Error& e) {
    std::fprintf(stderr, "ep_test: %s\n", e.what());
    rc = 1;
  }
  if (rc != 0) std::_Exit(rc);
  return rc;
}
