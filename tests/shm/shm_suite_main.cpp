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
}  // namespace epcomm::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // The backend notes which path registered collectives take at debug level (the
  // registered suite checks them); before any communicator exists, so every rank has it.
  setenv("EPCOMM_LOG_LEVEL", "debug", 1);
  return epcomm::test::runSuiteOnRanks("shm suite", &epcomm::test::gShmComm, false);
}
