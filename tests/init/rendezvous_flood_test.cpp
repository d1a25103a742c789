// The rendezvous under a flood (issue 17): while a flooder keeps 2,000 idle connections
// thrown at rank 0's EPCOMM_INIT_ADDR (reconnecting whenever one is closed), rank 0 runs
// with `ulimit -n 1024`; the legit ranks, arriving together, must form the communicator
// within 1 s of arriving, and rank 0 must keep descriptors free. Every process is forked.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/error.h"

namespace epcomm::test {
namespace {

constexpr int kRanks = 4;
constexpr int kHostile = 2000;
constexpr int kDescriptorLimit = 1024;
constexpr double kArriveWithinS = 1.0;
constexpr int kMinFreeDescriptors = 256;

using Clock = std::chrono::steady_clock;

int freePort() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

Config rankConfig(int rank, int port) {
  Config c = Config::defaults();
  c.backend = "shm";
  c.initAddr = "127.0.0.1:" + std::to_string(port);
  c.initRank = rank;
  c.initSize = kRanks;
  c.connectTimeoutS = 30;
  c.timeoutMs = 30000;
  return c;
}

int openDescriptors() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// Rank 0 under the descriptor limit: after init, how many descriptors are free.
[[noreturn]] void rankZero(int port) {
  const rlimit limit{kDescriptorLimit, kDescriptorLimit};
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(20);
  // The fewest descriptors free at any moment while init serves the rendezvous.
  std::atomic<int> fewestFree{kDescriptorLimit};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling.load()) {
      const int now = kDescriptorLimit - openDescriptors();
      if (now < fewestFree.load()) fewestFree.store(now);
      usleep(5000);
    }
  });
  try {
    auto comm = Communicator::initFromEnvironment(rankConfig(0, port));
    sampling.store(false);
    sampler.join();
    const int free = fewestFree.load();
    int v = 1;
    comm->allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
    std::printf("rank 0: at least %d descriptors free during init (limit %d), sum %d\n", free,
                kDescriptorLimit, v);
    std::fflush(stdout);
    _exit(free >= kMinFreeDescriptors && v == kRanks ? 0 : 21);
  } catch (const Error& e) {
    sampling.store(false);
    sampler.join();
    std::printf("rank 0: %s\n", e.what());
    std::fflush(stdout);
    _exit(22);
  }
}

// A legit rank: how long from arriving to a working communicator.
[[noreturn]] void legitRank(int rank, int port) {
  const auto start = Clock::now();
  try {
    auto comm = Communicator::initFromEnvironment(rankConfig(rank, port));
    int v = 1;
    comm->allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("rank %d: formed in %.3f s\n", rank, s);
    std::fflush(stdout);
    _exit(s <= kArriveWithinS && v == kRanks ? 0 : 23);
  } catch (const Error& e) {
    std::printf("rank %d: %s\n", rank, e.what());
    std::fflush(stdout);
    _exit(24);
  }
}

// Keeps kHostile idle connections open against the port, reconnecting each one the server
// closes, until killed.
[[noreturn]] void flooder(int port) {
  const rlimit limit{kHostile + 256, kHostile + 256};
  setrlimit(RLIMIT_NOFILE, &limit);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<pollfd> fds(kHostile, pollfd{-1, POLLIN, 0});
  long reconnects = 0;
  for (;;) {
    for (pollfd& p : fds) {
      if (p.fd >= 0) continue;
      p.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (p.fd < 0) continue;
      connect(p.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);  // in progress
      ++reconnects;
    }
    poll(fds.data(), fds.size(), 20);
    for (pollfd& p : fds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char b[64];
      if (read(p.fd, b, sizeof b) <= 0) {  // closed by the server (or refused): again
        close(p.fd);
        p.fd = -1;
      }
    }
  }
}

pid_t spawn(const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(99);
  }
  return pid;
}

int statusOf(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(RendezvousFlood, LegitRanksFormWithinASecondAndRankZeroKeepsDescriptors) {
  const int port = freePort();
  const pid_t zero = spawn([&] { rankZero(port); });
  usleep(300 * 1000);  // rank 0 listens
  const pid_t flood = spawn([&] { flooder(port); });
  sleep(2);  // the flood at full strength: every pending slot taken, reconnecting
  std::vector<pid_t> legit;
  for (int r = 1; r < kRanks; ++r) legit.push_back(spawn([&, r] { legitRank(r, port); }));
  for (int r = 1; r < kRanks; ++r) {
    EXPECT_EQ(statusOf(legit[static_cast<std::size_t>(r - 1)]), 0) << "rank " << r;
  }
  EXPECT_EQ(statusOf(zero), 0) << "rank 0";
  kill(flood, SIGKILL);
  statusOf(flood);
}

}  // namespace
}  // namespace epcomm::test
