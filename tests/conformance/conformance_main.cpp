// The backend conformance suite's entry point. Ranks come from the environment (mpirun, or
// one process), or, with EPCOMM_TEST_FORK_RANKS=N, from N forked processes bootstrapped by
// UniqueId (no mpirun). Every collective x dtype x op x size class, in place and out of
// place, through the Communicator on whatever backend EPCOMM_BACKEND picks.
#include <gtest/gtest.h>

#include "tests/common/fork_launcher.h"
#include "tests/conformance/conformance.h"

namespace epcomm::test {
Communicator* gComm = nullptr;
}  // namespace epcomm::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return epcomm::test::runSuiteOnRanks("conformance_test", &epcomm::test::gComm, false);
}
