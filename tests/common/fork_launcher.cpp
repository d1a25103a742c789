#include "tests/common/fork_launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace epcomm::test {

ForkResult runForkedRanks(int ranks, const Config& config,
                          const std::function<int(std::unique_ptr<Communicator>)>& body,
                          std::chrono::seconds deadline) {
  const UniqueId id = UniqueId::create();
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> children;
  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      int rc = 1;
      try {
        rc = body(Communicator::init(id, r, ranks, config));
      } catch (const Error& e) {
        std::fprintf(stderr, "forked rank %d: %s\n", r, e.what());
      }
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(rc);  // no atexit handlers or static destructors of the parent's state
    }
    if (pid < 0) {
      std::perror("fork");
      break;
    }
    children.push_back(pid);
  }
  ForkResult result;
  result.failedRanks = ranks - static_cast<int>(children.size());
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::vector<bool> done(children.size(), false);
  for (std::size_t left = children.size(); left > 0;) {
    for (std::size_t i = 0; i < children.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      if (waitpid(children[i], &status, WNOHANG) != children[i]) continue;
      done[i] = true;
      --left;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++result.failedRanks;
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > until) {
      for (std::size_t i = 0; i < children.size(); ++i) {
        if (done[i]) continue;
        kill(children[i], SIGKILL);
        waitpid(children[i], nullptr, 0);
        ++result.timedOutRanks;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return result;
}

}  // namespace epcomm::test
