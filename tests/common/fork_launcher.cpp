#include "tests/common/fork_launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include <gtest/gtest.h>

namespace epcomm::test {
namespace {

// In the child: reads the id from the pipe, runs body, never returns.
[[noreturn]] void runChild(int readFd, int rank,
                           const std::function<int(int, const UniqueId&)>& body) {
  UniqueId id;
  std::size_t got = 0;
  while (got < id.bytes.size()) {
    const ssize_t n = read(readFd, id.bytes.data() + got, id.bytes.size() - got);
    if (n <= 0) std::_Exit(1);  // the parent gave up before sending the id
    got += static_cast<std::size_t>(n);
  }
  const int rc = body(rank, id);
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(rc);  // no atexit handlers or static destructors of the parent's state
}

}  // namespace

std::vector<RankExit> forkRanks(int ranks, const std::function<int(int, const UniqueId&)>& body,
                                std::chrono::seconds deadline) {
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
      runChild(fds[0], r, body);
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
    std::fprintf(stderr, "forkRanks: %s\n", e.what());
  }
  for (int fd : writers) close(fd);  // a child still waiting for the id then exits 1

  // Ranks that could not be forked count as failed (status 1).
  std::vector<RankExit> exits(static_cast<std::size_t>(ranks), RankExit{1 << 8, false});
  std::vector<bool> done(children.size(), false);
  const auto until = std::chrono::steady_clock::now() + deadline;
  for (std::size_t left = children.size(); left > 0;) {
    for (std::size_t i = 0; i < children.size(); ++i) {
      if (!done[i] && waitpid(children[i], &exits[i].status, WNOHANG) == children[i]) {
        done[i] = true;
        --left;
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > until) {
      for (std::size_t i = 0; i < children.size(); ++i) {
        if (done[i]) continue;
        kill(children[i], SIGKILL);
        waitpid(children[i], &exits[i].status, 0);
        exits[i].timedOut = true;
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return exits;
}

ForkResult runForkedRanks(int ranks, const Config& config,
                          const std::function<int(std::unique_ptr<Communicator>)>& body,
                          std::chrono::seconds deadline) {
  const auto exits = forkRanks(
      ranks,
      [&](int rank, const UniqueId& id) {
        try {
          return body(Communicator::init(id, rank, ranks, config));
        } catch (const Error& e) {
          std::fprintf(stderr, "forked rank %d: %s\n", rank, e.what());
          return 1;
        }
      },
      deadline);
  ForkResult result;
  for (const RankExit& e : exits) {
    if (e.timedOut) {
      ++result.timedOutRanks;
    } else if (!WIFEXITED(e.status) || WEXITSTATUS(e.status) != 0) {
      ++result.failedRanks;
    }
  }
  return result;
}

namespace {

int runSuite(Communicator& comm, Communicator** current, bool quietPeers) {
  if (quietPeers && comm.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  *current = &comm;
  int failed = RUN_ALL_TESTS() == 0 ? 0 : 1;
  comm.allReduce(&failed, &failed, 1, DataType::kI32, ReduceOp::kMax);
  *current = nullptr;
  return failed;
}

}  // namespace

int runSuiteOnRanks(const char* name, Communicator** current, bool quietPeers) {
  int rc = 1;
  try {
    const char* forkRanks = std::getenv("EPCOMM_TEST_FORK_RANKS");
    if (forkRanks && std::atoi(forkRanks) > 0) {
      const ForkResult result = runForkedRanks(
          std::atoi(forkRanks), Config::fromEnvironment(),
          [&](std::unique_ptr<Communicator> comm) { return runSuite(*comm, current, quietPeers); },
          std::chrono::seconds(540));
      std::fprintf(stderr, "%s: %d forked ranks failed, %d timed out\n", name, result.failedRanks,
                   result.timedOutRanks);
      return result.failedRanks + result.timedOutRanks == 0 ? 0 : 1;
    }
    auto comm = Communicator::initFromEnvironment();
    rc = runSuite(*comm, current, quietPeers);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    rc = 1;
  }
  if (rc != 0) std::_Exit(rc);
  return rc;
}

}  // namespace epcomm::test
