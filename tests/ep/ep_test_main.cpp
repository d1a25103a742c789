// The EP suite's entry point: ranks from mpirun (EPCOMM_BACKEND=mpi or shm), or with
// EPCOMM_TEST_FORK_RANKS=N from N forked processes bootstrapped by UniqueId. Every rank
// runs the same tests in the same order; checks are non-fatal so no rank leaves the
// sequence of collectives early.
#include <gtest/gtest.h>

#include <string>

#include "tests/common/fork_launcher.h"
#include "tests/ep/ep_test_util.h"

namespace epcomm::test {
Communicator* gComm = nullptr;
Routing gRouting = Routing::kSpread;
}  // namespace epcomm::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--skewed") epcomm::test::gRouting = epcomm::test::Routing::kSkewed;
  }
  return epcomm::test::runSuiteOnRanks("ep_test", &epcomm::test::gComm, true);
}
