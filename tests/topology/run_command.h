// Runs a program for the topology tests: fork + exec with a clean epcomm environment (every
// knob of the registry and its aliases unset, then `env` applied), stdout and stderr
// captured, killed after `timeoutS` seconds.
#pragma once

#include <string>
#include <vector>

namespace epcomm::test {

struct RunResult {
  int exitCode = -1;  // -1: killed by a signal or timed out
  bool timedOut = false;
  std::string out;
  std::string err;
};

RunResult runCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     int timeoutS = 30);

}  // namespace epcomm::test
