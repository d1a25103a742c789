// Runs N ranks as forked processes bootstrapped by UniqueId (no mpirun), the way an engine
// that starts its own processes uses epcomm. The parent makes the id, forks, and waits.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "comm/communicator.h"

namespace epcomm::test {

struct ForkResult {
  int failedRanks = 0;    // ranks that exited non-zero or were killed
  int timedOutRanks = 0;  // ranks still running at the deadline (then killed)
};

// Forks `ranks` children; child r runs body(rank r's communicator) and exits with its
// return value (an epcomm::Error escaping body is printed and exits 1). The parent waits at
// most `deadline` for all of them, killing stragglers.
ForkResult runForkedRanks(int ranks, const Config& config,
                          const std::function<int(std::unique_ptr<Communicator>)>& body,
                          std::chrono::seconds deadline);

}  // namespace epcomm::test
