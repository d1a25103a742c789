// The TCP rendezvous: UniqueId encoding, all-gather over 1..4 ranks (threads and forked
// processes), and peers that must be refused without harming the others (wrong secret,
// garbage, oversized claims, duplicate ranks), timeouts that name the missing ranks.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/src/bootstrap.h"
#include "comm/src/rendezvous_server.h"
#include "comm/unique_id.h"

namespace epcomm {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kTimeoutS = 20;  // generous: only failing tests ever wait for it

RendezvousInfo localInfo(unsigned char secretSeed) {
  RendezvousInfo info;
  info.host = "127.0.0.1";
  for (std::size_t i = 0; i < kSecretBytes; ++i) {
    info.secret[i] = static_cast<unsigned char>(secretSeed + 7 * i);
  }
  return info;
}

unsigned char pattern(int rank, int round, std::size_t i) {
  return static_cast<unsigned char>(rank * 131 + round * 17 + static_cast<int>(i % 251));
}

struct Outcome {
  std::optional<ErrorCode> code;  // empty: the rank succeeded
  std::string message;
};

// Runs body(rank) for every rank in its own thread; epcomm::Error becomes the outcome.
std::vector<Outcome> runRanks(int size, const std::function<void(int)>& body) {
  std::vector<Outcome> outcomes(static_cast<std::size_t>(size));
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank] {
      Outcome& out = outcomes[static_cast<std::size_t>(rank)];
      try {
        body(rank);
      } catch (const Error& e) {
        out.code = e.code();
        out.message = e.what();
      } catch (const std::exception& e) {
        out.code = ErrorCode::kInternal;
        out.message = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return outcomes;
}

// Connects, runs the rounds with the given sizes and checks every byte; returns the number
// of wrong bytes.
std::size_t gatherRounds(const RendezvousInfo& info, int rank, int size,
                         const std::vector<std::size_t>& sizes) {
  auto boot = connectRendezvous(info, rank, size, kTimeoutS);
  std::size_t wrong = 0;
  for (int round = 0; round < static_cast<int>(sizes.size()); ++round) {
    const std::size_t bytes = sizes[static_cast<std::size_t>(round)];
    std::vector<unsigned char> send(bytes);
    for (std::size_t i = 0; i < bytes; ++i) send[i] = pattern(rank, round, i);
    std::vector<unsigned char> recv(bytes * static_cast<std::size_t>(size), 0xEE);
    boot->allGather(send.data(), recv.data(), bytes);
    for (int r = 0; r < size; ++r) {
      for (std::size_t i = 0; i < bytes; ++i) {
        wrong += recv[static_cast<std::size_t>(r) * bytes + i] != pattern(r, round, i);
      }
    }
  }
  return wrong;
}

void expectAllSucceeded(const std::vector<Outcome>& outcomes) {
  for (std::size_t r = 0; r < outcomes.size(); ++r) {
    EXPECT_FALSE(outcomes[r].code.has_value()) << "rank " << r << ": " << outcomes[r].message;
  }
}

// ---- raw sockets, for peers that do not follow the protocol ----

int rawConnect(const RendezvousInfo& info) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{};
  tv.tv_sec = 5;  // bounds every recv below
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(info.port);
  inet_pton(AF_INET, info.host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool sendAll(int fd, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (bytes > 0) {
    const ssize_t n = send(fd, p, bytes, MSG_NOSIGNAL);
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return true;
}

bool recvAll(int fd, void* data, std::size_t bytes) {
  auto* p = static_cast<unsigned char*>(data);
  while (bytes > 0) {
    const ssize_t n = recv(fd, p, bytes, 0);
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
  }
  return true;
}

// True when the server closes the connection (EOF or reset) within ~5 s; reply bytes before
// the close are skipped.
bool closedByServer(int fd) {
  const auto deadline = Clock::now() + 6s;
  unsigned char buf[256];
  while (Clock::now() < deadline) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return true;
    if (n < 0) return errno == ECONNRESET;  // EAGAIN: the 5 s receive timeout passed
  }
  return false;
}

// Says a valid hello as rank/size and returns the server's answer status (or -1).
int rawHello(int fd, const RendezvousInfo& info, int rank, int size) {
  rendezvous::Hello h;
  std::memcpy(h.secret, info.secret, kSecretBytes);
  h.rank = rank;
  h.size = size;
  const auto bytes = rendezvous::encodeHello(h);
  if (!sendAll(fd, bytes.data(), bytes.size())) return -1;
  unsigned char in[rendezvous::kReplyHeaderBytes];
  if (!recvAll(fd, in, sizeof(in))) return -1;
  const auto reply = rendezvous::decodeReplyHeader(in);
  return reply.magic == rendezvous::kReplyMagic ? static_cast<int>(reply.status) : -1;
}

// ---- tests ----

TEST(UniqueIdTest, RoundTripsIpv4AndIpv6) {
  for (const char* host : {"10.1.2.3", "fd00::1:2"}) {
    RendezvousInfo info = localInfo(3);
    info.host = host;
    info.port = 40123;
    const UniqueId id = encodeUniqueId(info);
    EXPECT_EQ(std::memcmp(id.bytes.data(), "EPID", 4), 0);
    for (std::size_t i = 60; i < UniqueId::kBytes; ++i) EXPECT_EQ(id.bytes[i], 0) << i;
    const RendezvousInfo back = decodeUniqueId(id, 0);
    EXPECT_EQ(back.host, info.host);
    EXPECT_EQ(back.port, info.port);
    EXPECT_EQ(std::memcmp(back.secret, info.secret, kSecretBytes), 0);
  }
}

TEST(UniqueIdTest, GarbageIsInvalidArgument) {
  UniqueId zeros;
  UniqueId noise;
  for (std::size_t i = 0; i < UniqueId::kBytes; ++i)
    noise.bytes[i] = static_cast<unsigned char>(i * 37 + 11);
  RendezvousInfo info = localInfo(1);
  info.port = 1234;
  UniqueId badVersion = encodeUniqueId(info);
  badVersion.bytes[4] = 99;
  for (const UniqueId& id : {zeros, noise, badVersion}) {
    try {
      decodeUniqueId(id, 5);
      ADD_FAILURE() << "garbage decoded";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find("epcomm rank 5: bootstrap: not an epcomm UniqueId"),
                std::string::npos)
          << e.what();
    }
  }
  info.host = "not-an-address";
  EXPECT_THROW(encodeUniqueId(info), Error);
}

TEST(UniqueIdTest, DefaultHostIsAConcreteIpv4Address) {
  const std::string host = rendezvousHost(Config::defaults());
  in_addr addr{};
  ASSERT_EQ(inet_pton(AF_INET, host.c_str(), &addr), 1) << host;
  EXPECT_NE(addr.s_addr, htonl(INADDR_ANY));
}

// The UniqueId carries the selected interface's address, and its server listens there only.
TEST(UniqueIdTest, ListensOnTheSelectedInterfaceOnly) {
  setenv("EPCOMM_SOCKET_IFNAME", "=lo", 1);
  const UniqueId id = UniqueId::create();
  unsetenv("EPCOMM_SOCKET_IFNAME");
  const RendezvousInfo info = decodeUniqueId(id, 0);
  EXPECT_EQ(info.host, "127.0.0.1");
  // A connect to another local address on the same port finds nobody listening.
  setenv("EPCOMM_SOCKET_IFNAME", "^lo", 1);
  std::string other;
  try {
    other = rendezvousHost(Config::fromEnvironment());
  } catch (const Error&) {
  }
  unsetenv("EPCOMM_SOCKET_IFNAME");
  if (!other.empty() && other.find(':') == std::string::npos) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(info.port);
    inet_pton(AF_INET, other.c_str(), &addr.sin_addr);
    EXPECT_NE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << "something listens on " << other << ":" << info.port << " too";
    close(fd);
  }
  auto boot = connectRendezvous(info, 0, 1, kTimeoutS);
  int one = 1;
  int got = 0;
  boot->allGather(&one, &got, sizeof(one));
  EXPECT_EQ(got, 1);
}

TEST(UniqueIdTest, SelectionThatMatchesNothingNamesIt) {
  setenv("EPCOMM_SOCKET_IFNAME", "=nosuch0", 1);
  try {
    UniqueId::create();
    ADD_FAILURE() << "=nosuch0 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("EPCOMM_SOCKET_IFNAME=\"=nosuch0\""), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("lo (up, loopback"), std::string::npos) << e.what();
  }
  unsetenv("EPCOMM_SOCKET_IFNAME");
}

TEST(BootstrapTest, AllGatherOneTwoFourRanksSeveralRounds) {
  const std::vector<std::size_t> sizes = {0, 1, 7, 4099, 64 * 1024, 3};
  for (int size : {1, 2, 4}) {
    const UniqueId id = UniqueId::create();
    const RendezvousInfo info = decodeUniqueId(id, 0);
    std::vector<std::size_t> wrong(static_cast<std::size_t>(size), 0);
    const auto outcomes = runRanks(size, [&](int rank) {
      wrong[static_cast<std::size_t>(rank)] = gatherRounds(info, rank, size, sizes);
    });
    expectAllSucceeded(outcomes);
    for (int r = 0; r < size; ++r)
      EXPECT_EQ(wrong[static_cast<std::size_t>(r)], 0u) << "size " << size;
  }
}

TEST(BootstrapTest, InPlaceAllGather) {
  const RendezvousInfo info = startRendezvousServer(localInfo(9), kTimeoutS);
  constexpr int kSize = 3;
  constexpr std::size_t kBytes = 33;
  std::vector<int> wrong(kSize, 0);
  expectAllSucceeded(runRanks(kSize, [&](int rank) {
    auto boot = connectRendezvous(info, rank, kSize, kTimeoutS);
    std::vector<unsigned char> buf(kBytes * kSize, 0);
    for (std::size_t i = 0; i < kBytes; ++i)
      buf[static_cast<std::size_t>(rank) * kBytes + i] = pattern(rank, 0, i);
    boot->allGather(buf.data() + static_cast<std::size_t>(rank) * kBytes, buf.data(), kBytes);
    for (std::size_t i = 0; i < buf.size(); ++i)
      wrong[static_cast<std::size_t>(rank)] +=
          buf[i] != pattern(static_cast<int>(i / kBytes), 0, i % kBytes);
  }));
  for (int w : wrong) EXPECT_EQ(w, 0);
}

TEST(BootstrapTest, ServerFinishesWhenTheGroupLeaves) {
  const RendezvousInfo info = startRendezvousServer(localInfo(2), kTimeoutS);
  const std::size_t before = rendezvous::activeRendezvousServers();
  EXPECT_GE(before, 1u);
  expectAllSucceeded(runRanks(2, [&](int rank) { gatherRounds(info, rank, 2, {8}); }));
  // It stops listening and its thread ends (other servers can only end too, never start).
  const auto listening = [&] {
    const int fd = rawConnect(info);
    if (fd >= 0) close(fd);
    return fd >= 0;
  };
  const auto deadline = Clock::now() + 5s;
  while ((listening() || rendezvous::activeRendezvousServers() >= before) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(listening());
  EXPECT_LT(rendezvous::activeRendezvousServers(), before);
}

TEST(BootstrapTest, WrongSecretIsRefusedOthersComplete) {
  const RendezvousInfo info = startRendezvousServer(localInfo(4), kTimeoutS);
  RendezvousInfo wrong = info;
  wrong.secret[17] ^= 0x40;
  // Rank 0 has joined; an impostor with the wrong secret claims rank 1, then the real rank 1
  // comes and the group completes.
  auto rank0 = connectRendezvous(info, 0, 2, kTimeoutS);
  try {
    connectRendezvous(wrong, 1, 2, kTimeoutS);
    ADD_FAILURE() << "wrong secret accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("epcomm rank 1: bootstrap:"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("wrong secret"), std::string::npos) << e.what();
  }
  std::size_t wrongBytes = 1;
  std::thread rank1([&] { wrongBytes = gatherRounds(info, 1, 2, {16, 5}); });
  const std::vector<std::size_t> sizes = {16, 5};
  std::vector<std::vector<unsigned char>> recvs;
  for (int round = 0; round < 2; ++round) {
    const std::size_t bytes = sizes[static_cast<std::size_t>(round)];
    std::vector<unsigned char> send(bytes), recv(2 * bytes);
    for (std::size_t i = 0; i < bytes; ++i) send[i] = pattern(0, round, i);
    EXPECT_NO_THROW(rank0->allGather(send.data(), recv.data(), bytes));
    for (std::size_t i = 0; i < 2 * bytes; ++i) {
      EXPECT_EQ(recv[i], pattern(static_cast<int>(i / bytes), round, i % bytes));
    }
  }
  rank1.join();
  EXPECT_EQ(wrongBytes, 0u);
}

TEST(BootstrapTest, GarbageHugeClaimsAndSilentPeersDoNotHarmOthers) {
  const RendezvousInfo info = startRendezvousServer(localInfo(5), kTimeoutS);
  // Connected before the real ranks: they must not block the accept loop or the group.
  const int silent = rawConnect(info);  // sends a few bytes, then nothing
  ASSERT_GE(silent, 0);
  ASSERT_TRUE(sendAll(silent, "EPRV", 4));
  const int garbage = rawConnect(info);
  ASSERT_GE(garbage, 0);
  std::vector<unsigned char> junk(300);
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<unsigned char>(i * 91 + 3);
  ASSERT_TRUE(sendAll(garbage, junk.data(), junk.size()));
  const int huge = rawConnect(info);  // a round header claiming 1 TiB, then some bytes
  ASSERT_GE(huge, 0);
  auto header = rendezvous::encodeRoundHeader({rendezvous::kRoundMagic, 0, 1ull << 40});
  std::vector<unsigned char> claim(header.begin(), header.end());
  claim.resize(4096, 0xAB);
  ASSERT_TRUE(sendAll(huge, claim.data(), claim.size()));

  EXPECT_TRUE(closedByServer(garbage));
  EXPECT_TRUE(closedByServer(huge));
  expectAllSucceeded(runRanks(3, [&](int rank) {
    EXPECT_EQ(gatherRounds(info, rank, 3, {100, 1}), 0u);
  }));
  close(silent);
  close(garbage);
  close(huge);
}

TEST(BootstrapTest, AuthenticatedOversizedMessageDropsTheSenderAndFailsTheOthers) {
  const RendezvousInfo info = startRendezvousServer(localInfo(6), kTimeoutS);
  // Ranks 0 and 1 have joined (connect returns once the hello is accepted) before rank 2,
  // a raw socket with the right secret, announces an oversized round.
  std::vector<std::unique_ptr<Bootstrap>> boots;
  for (int rank = 0; rank < 2; ++rank) boots.push_back(connectRendezvous(info, rank, 3, kTimeoutS));
  const int bad = rawConnect(info);
  ASSERT_GE(bad, 0);
  ASSERT_EQ(rawHello(bad, info, 2, 3), 0);
  const auto header =
      rendezvous::encodeRoundHeader({rendezvous::kRoundMagic, 0, kMaxBootstrapBytes + 1});
  ASSERT_TRUE(sendAll(bad, header.data(), header.size()));
  EXPECT_TRUE(closedByServer(bad));
  close(bad);
  const auto outcomes = runRanks(2, [&](int rank) {
    char mine = 'x', all[3];
    boots[static_cast<std::size_t>(rank)]->allGather(&mine, all, 1);
  });
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o.code.has_value());
    EXPECT_EQ(*o.code, ErrorCode::kPeerLost) << o.message;
    EXPECT_NE(o.message.find("rank 2 announced"), std::string::npos) << o.message;
  }
}

TEST(BootstrapTest, MismatchedBytesIsAnErrorOnEveryRank) {
  const RendezvousInfo info = startRendezvousServer(localInfo(7), kTimeoutS);
  const auto outcomes = runRanks(2, [&](int rank) {
    auto boot = connectRendezvous(info, rank, 2, kTimeoutS);
    const std::size_t bytes = rank == 0 ? 8 : 16;
    std::vector<unsigned char> send(bytes, 1), recv(2 * bytes);
    boot->allGather(send.data(), recv.data(), bytes);
  });
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o.code.has_value());
    EXPECT_EQ(*o.code, ErrorCode::kPeerLost) << o.message;
    EXPECT_NE(o.message.find("bootstrap:"), std::string::npos) << o.message;
  }
}

TEST(BootstrapTest, DuplicateRankIsRefused) {
  const RendezvousInfo info = startRendezvousServer(localInfo(8), kTimeoutS);
  auto first = connectRendezvous(info, 0, 2, kTimeoutS);
  try {
    connectRendezvous(info, 0, 2, kTimeoutS);
    ADD_FAILURE() << "duplicate rank accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("already taken"), std::string::npos) << e.what();
  }
  try {
    connectRendezvous(info, 1, 3, kTimeoutS);
    ADD_FAILURE() << "mismatched size accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
  std::vector<unsigned char> recv0(8), recv1(8);
  std::thread other([&] {
    auto second = connectRendezvous(info, 1, 2, kTimeoutS);
    const std::uint32_t v = 0x22222222;
    second->allGather(&v, recv1.data(), 4);
  });
  const std::uint32_t v = 0x11111111;
  first->allGather(&v, recv0.data(), 4);
  other.join();
  const std::vector<unsigned char> expected = {0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22};
  EXPECT_EQ(recv0, expected);
  EXPECT_EQ(recv1, expected);
}

TEST(BootstrapTest, TimeoutNamesTheMissingRank) {
  constexpr std::int64_t kShortS = 2;
  const RendezvousInfo info = startRendezvousServer(localInfo(10), kShortS);
  const auto start = Clock::now();
  const auto outcomes = runRanks(2, [&](int i) {
    const int rank = i == 0 ? 0 : 2;  // rank 1 of 3 never comes
    auto boot = connectRendezvous(info, rank, 3, kShortS);
    int x = rank;
    std::vector<int> all(3);
    boot->allGather(&x, all.data(), sizeof(int));
  });
  const auto elapsed = Clock::now() - start;
  EXPECT_LT(elapsed, 8s);
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o.code.has_value());
    EXPECT_EQ(*o.code, ErrorCode::kTimeout) << o.message;
    EXPECT_NE(o.message.find("missing ranks: 1"), std::string::npos) << o.message;
  }
}

TEST(BootstrapTest, ConnectTimesOutWhenNothingListens) {
  // A port that was free a moment ago.
  RendezvousInfo info = localInfo(11);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  info.port = ntohs(addr.sin_port);
  close(fd);
  const auto start = Clock::now();
  try {
    connectRendezvous(info, 1, 2, 1);
    ADD_FAILURE() << "connected to nothing";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(e.what()).find("epcomm rank 1: bootstrap: could not connect"),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(Clock::now() - start, 4s);
}

TEST(BootstrapTest, RankThatLeavesFailsTheNextRound) {
  const RendezvousInfo info = startRendezvousServer(localInfo(12), kTimeoutS);
  const auto outcomes = runRanks(2, [&](int rank) {
    auto boot = connectRendezvous(info, rank, 2, kTimeoutS);
    char c = 'a', all[2];
    boot->allGather(&c, all, 1);
    if (rank == 1) return;  // leaves after round 0
    std::this_thread::sleep_for(100ms);
    boot->allGather(&c, all, 1);
  });
  EXPECT_FALSE(outcomes[1].code.has_value()) << outcomes[1].message;
  ASSERT_TRUE(outcomes[0].code.has_value());
  EXPECT_EQ(*outcomes[0].code, ErrorCode::kPeerLost);
  EXPECT_NE(outcomes[0].message.find("rank 1"), std::string::npos) << outcomes[0].message;
}

TEST(BootstrapTest, BadArgumentsAreInvalidArgument) {
  const RendezvousInfo info = localInfo(13);
  EXPECT_THROW(connectRendezvous(info, 2, 2, kTimeoutS), Error);
  EXPECT_THROW(connectRendezvous(info, -1, 2, kTimeoutS), Error);
  EXPECT_THROW(startRendezvousServer(info, 0), Error);
  RendezvousInfo bad = info;
  bad.host = "example.com";
  EXPECT_THROW(startRendezvousServer(bad, kTimeoutS), Error);
}

// Ranks 1..3 are forked children (the parent's server thread is not in them); rank 0 is the
// parent. Children leave with exit(), so the static destructors run in a process that
// inherited the server registry but not its thread.
TEST(BootstrapTest, ForkedRanks) {
  constexpr int kSize = 4;
  // Servers of earlier tests wind down first: a fork while one of their threads is busy
  // would hand the children memory only that (absent) thread refers to.
  const auto quiet = Clock::now() + 5s;
  while (rendezvous::activeRendezvousServers() > 0 && Clock::now() < quiet) {
    std::this_thread::sleep_for(10ms);
  }
  const UniqueId id = UniqueId::create();
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  std::vector<pid_t> children;
  for (int rank = 1; rank < kSize; ++rank) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(go[1]);
      int status = 0;
      try {
        // Every child is forked before any connects, so the server is idle at each fork.
        pollfd p{go[0], POLLIN, 0};
        char byte = 0;
        if (poll(&p, 1, 20000) != 1 || read(go[0], &byte, 1) != 1) std::exit(4);
        const RendezvousInfo info = decodeUniqueId(id, rank);
        status = gatherRounds(info, rank, kSize, {4, 0, 1000}) == 0 ? 0 : 2;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child rank %d: %s\n", rank, e.what());
        status = 3;
      }
      std::exit(status);  // runs the static destructors with the inherited registry
    }
    children.push_back(pid);
  }
  close(go[0]);
  const char bytes[kSize] = {};
  EXPECT_EQ(write(go[1], bytes, kSize - 1), kSize - 1);
  close(go[1]);
  std::size_t wrong = 1;
  try {
    wrong = gatherRounds(decodeUniqueId(id, 0), 0, kSize, {4, 0, 1000});
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  EXPECT_EQ(wrong, 0u);
  const auto deadline = Clock::now() + 30s;
  for (const pid_t pid : children) {
    int status = -1;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        ADD_FAILURE() << "child " << pid << " hung";
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(WIFEXITED(status)) << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
}

// A process that leaves with exit() while its rendezvous is still serving: the static
// destructor stops and joins the server thread (bounded, exit code 0). The process is a
// child that also inherited the parent's registry, whose servers it must leave alone.
TEST(BootstrapTest, ExitWhileServingIsClean) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "TSan does not support new threads in a child of a multi-threaded process";
#else
  const UniqueId parentId = UniqueId::create();  // serving in the parent while it forks
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int status = 0;
    try {
      const RendezvousInfo info = startRendezvousServer(localInfo(14), kTimeoutS);
      auto boot = connectRendezvous(info, 0, 2, kTimeoutS);  // rank 1 never comes
      status = rendezvous::activeRendezvousServers() >= 1 ? 0 : 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      status = 3;
    }
    std::exit(status);
  }
  int status = -1;
  const auto deadline = Clock::now() + 15s;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ADD_FAILURE() << "child hung at exit";
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The parent's own server is unharmed by the child's exit.
  const RendezvousInfo info = decodeUniqueId(parentId, 0);
  expectAllSucceeded(runRanks(1, [&](int) { EXPECT_EQ(gatherRounds(info, 0, 1, {3}), 0u); }));
#endif
}

}  // namespace
}  // namespace epcomm
