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
  // Fork first, while this process has no threads (a child forked while the rendezvous
  // thread holds a lock could deadlock), then make the id and hand it over through pipes.
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> children;
  std::vector<int> writers;
  for (int r = 0; r < ranks; ++r) {
    int fds[2];
    if (pipe(fds) != 0) {
      std::perror("pipe");
      break;
    }
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[1]);
      UniqueId id;
      std::size_t got = 0;
      while (got < id.bytes.size()) {
        const ssize_t n = read(fds[0], id.bytes.data() + got, id.bytes.size() - got);
        if (n <= 0) std::_Exit(1);  // the parent gave up before sending the id
        got += static_cast<std::size_t>(n);
      }
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
    close(fds[0]);
    if (pid < 0) {
      std::perror("fork");
      close(fds[1]);
      break;
    }
    children.push_back(pid);
    writers.push_back(fds[1]);
  }
  try {
    const UniqueId id = UniqueId::create();
    for (int fd : writers) {
      if (write(fd, id.bytes.data(), id.bytes.size()) != static_cast<ssize_t>(id.bytes.size())) {
        std::perror("write");
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "runForkedRanks: %s\n", e.what());
  }
  for (int fd : writers) close(fd);
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
