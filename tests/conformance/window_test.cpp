// Symmetric windows and registered buffers on whatever backend the conformance suite runs
// on, testing only the contract of comm/window.h: put + signal + waitSignal, kSet / kAdd,
// ordering, self and empty puts, several windows at once, registered buffers in every
// collective, bad arguments, and a wait that nobody signals. Backends without windows skip
// (after checking that they refuse windows with kInvalidUsage naming themselves). Checks
// are non-fatal so no rank leaves the sequence of collective calls.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

using Clock = std::chrono::steady_clock;

// A byte that identifies (writer, target, position, round).
unsigned char pattern(int from, int to, std::size_t i, int round = 0) {
  return static_cast<unsigned char>(from * 131 + to * 17 + i * 7 + i / 251 + round * 29 + 1);
}

std::vector<unsigned char> block(int from, int to, std::size_t n, int round = 0) {
  std::vector<unsigned char> b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = pattern(from, to, i, round);
  return b;
}

std::size_t mismatches(const void* got, int from, int to, std::size_t n, int round = 0) {
  const auto* p = static_cast<const unsigned char*>(got);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) wrong += p[i] != pattern(from, to, i, round);
  return wrong;
}

bool allZero(const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

// Whether this communicator's backend has windows; empty when it has, else the reason.
// The probe is collective (every rank runs the tests in the same order).
const std::optional<std::string>& noWindows() {
  static std::optional<std::optional<std::string>> probed;
  if (!probed) {
    try {
      gComm->createWindow(64, 1).reset();
      probed.emplace(std::nullopt);
    } catch (const Error& e) {
      probed.emplace(std::string(e.what()));
    }
  }
  return *probed;
}

class Windows : public Conformance {
 protected:
  void SetUp() override {
    if (noWindows()) GTEST_SKIP() << "backend has no windows: " << *noWindows();
  }
};

// Not skipped: a backend without windows refuses them with kInvalidUsage naming itself.
TEST(WindowSupport, RefusedWithInvalidUsageNamingTheBackend) {
  Communicator& comm = *gComm;
  if (comm.backendName() == "loopback") {
    EXPECT_TRUE(noWindows()) << "loopback has no windows";
  }
  if (!noWindows()) {
    auto w = comm.createWindow(128, 2);
    EXPECT_EQ(w->bytes(), 128u);
    EXPECT_EQ(w->numSignals(), 2);
    return;
  }
  const std::vector<std::string> names = {"backend " + comm.backendName(), "windows"};
  expectError([&] { comm.createWindow(64, 1); }, ErrorCode::kInvalidUsage, names);
  expectError([&] { comm.allocate(64); }, ErrorCode::kInvalidUsage, names);
  // A refusal is no failure: the communicator works on.
  int v = 1;
  comm.allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
  EXPECT_EQ(v, comm.size());
}

TEST_F(Windows, ZeroAtCreationAndAligned) {
  for (std::size_t bytes : {std::size_t{0}, std::size_t{1}, std::size_t{4099}}) {
    auto w = comm().createWindow(bytes, 3);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(w->data()) % 64, 0u) << bytes;
    EXPECT_TRUE(allZero(w->data(), bytes)) << bytes;
    for (int s = 0; s < 3; ++s) EXPECT_EQ(w->readSignal(s), 0u);
  }
}

// Every rank puts a rank-specific block into every rank's window (itself included), at an
// offset of its own, then signals; each waits for all and checks every block.
TEST_F(Windows, PutSignalWaitBetweenAllRanks) {
  for (std::size_t n : {std::size_t{1003}, (std::size_t{1} << 20) + 5}) {
    auto w = comm().createWindow(n * size(), 1);
    for (int k = 0; k < size(); ++k) {
      const int peer = (rank() + k) % size();  // staggered, so peers are not all hit at once
      const std::vector<unsigned char> b = block(rank(), peer, n);
      w->put(peer, n * rank(), b.data(), n);
      w->signal(peer, 0, 1, SignalOp::kAdd);
    }
    w->waitSignal(0, size());
    EXPECT_EQ(w->readSignal(0), static_cast<std::uint64_t>(size()));
    for (int r = 0; r < size(); ++r) {
      EXPECT_EQ(mismatches(static_cast<char*>(w->data()) + n * r, r, rank(), n), 0u)
          << "block from rank " << r << ", " << n << " bytes";
    }
  }
}

TEST_F(Windows, SignalSetAndAddSemantics) {
  auto w = comm().createWindow(8, 3);
  const int next = (rank() + 1) % size();
  const int prev = (rank() + size() - 1) % size();
  // kSet stores the value: the ring neighbour's slot 0 ends at exactly 100 + rank.
  w->signal(next, 0, 100 + rank(), SignalOp::kSet);
  // kAdd accumulates: slot 1 of every rank collects 1 + 2 + ... + size.
  for (int p = 0; p < size(); ++p) w->signal(p, 1, rank() + 1, SignalOp::kAdd);
  w->waitSignal(0, 100 + prev);
  const std::uint64_t total = static_cast<std::uint64_t>(size()) * (size() + 1) / 2;
  w->waitSignal(1, total);
  EXPECT_EQ(w->readSignal(0), static_cast<std::uint64_t>(100 + prev));
  EXPECT_EQ(w->readSignal(1), total);
  // A wait for a value already reached returns at once; so does one for 0.
  w->waitSignal(1, 1);
  w->waitSignal(2, 0);
  // Own slot 2 through self-signals: kSet may lower the value, comparisons are unsigned,
  // kAdd wraps modulo 2^64.
  w->signal(rank(), 2, 500, SignalOp::kSet);
  w->signal(rank(), 2, 7, SignalOp::kSet);
  w->waitSignal(2, 7);
  EXPECT_EQ(w->readSignal(2), 7u);
  const std::uint64_t high = (std::uint64_t{1} << 63) + 1;
  w->signal(rank(), 2, high, SignalOp::kSet);
  w->waitSignal(2, std::uint64_t{1} << 63);
  EXPECT_EQ(w->readSignal(2), high);
  w->signal(rank(), 2, UINT64_MAX, SignalOp::kSet);
  w->signal(rank(), 2, 2, SignalOp::kAdd);
  w->waitSignal(2, 1);
  EXPECT_EQ(w->readSignal(2), 1u);
  comm().barrier();  // no rank's signals are still to come when slots are checked again
  EXPECT_EQ(w->readSignal(0), static_cast<std::uint64_t>(100 + prev));
  EXPECT_EQ(w->readSignal(1), total);
}

// Many puts (overlapping ones included: the later wins), then one signal: the target must
// see every one of them. Rounds are paced by an acknowledgement back to the writer.
TEST_F(Windows, ManyPutsThenOneSignalAreAllVisible) {
  constexpr std::size_t kBytes = 64 * 1024;
  constexpr int kPuts = 400;
  constexpr int kRounds = 12;
  auto w = comm().createWindow(kBytes, 2);
  const int next = (rank() + 1) % size();
  const int prev = (rank() + size() - 1) % size();
  std::vector<unsigned char> expectedFromPrev(kBytes, 0);
  std::vector<unsigned char> src(kBytes);
  std::size_t wrong = 0;
  for (int round = 1; round <= kRounds; ++round) {
    // The target's copy of what it must see (it replays the writer's sequence).
    auto writeSequence = [&](int writer, int target, auto&& emit) {
      std::uint64_t x = 0x9E3779B97F4A7C15ull * (round + 1) + writer;
      for (int i = 0; i < kPuts; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const std::size_t len = 1 + (x >> 40) % 700;
        const std::size_t off = (x >> 8) % (kBytes - len);
        for (std::size_t j = 0; j < len; ++j) src[j] = pattern(writer, target, off + j, round + i);
        emit(off, len);
      }
    };
    writeSequence(rank(), next,
                  [&](std::size_t off, std::size_t len) { w->put(next, off, src.data(), len); });
    w->signal(next, 0, round, SignalOp::kSet);
    writeSequence(prev, rank(), [&](std::size_t off, std::size_t len) {
      std::memcpy(expectedFromPrev.data() + off, src.data(), len);
    });
    w->waitSignal(0, round);
    wrong += std::memcmp(w->data(), expectedFromPrev.data(), kBytes) != 0;
    w->signal(prev, 1, round, SignalOp::kSet);  // prev may write the next round
    w->waitSignal(1, round);
  }
  EXPECT_EQ(wrong, 0u) << "rounds where some put was not visible after the signal";
}

TEST_F(Windows, SelfPutAndZeroBytePut) {
  constexpr std::size_t kBytes = 4096;
  auto w = comm().createWindow(kBytes, 1);
  const std::vector<unsigned char> b = block(rank(), rank(), 1000);
  w->put(rank(), 100, b.data(), b.size());
  // Empty puts anywhere in range, with or without a source, change nothing.
  w->put(rank(), 0, nullptr, 0);
  w->put(rank(), kBytes, b.data(), 0);
  for (int p = 0; p < size(); ++p) w->put(p, 17, nullptr, 0);
  w->signal(rank(), 0, 1, SignalOp::kAdd);
  w->waitSignal(0, 1);
  const auto* d = static_cast<const unsigned char*>(w->data());
  EXPECT_EQ(mismatches(d + 100, rank(), rank(), 1000), 0u);
  EXPECT_TRUE(allZero(d, 100));
  EXPECT_TRUE(allZero(d + 1100, kBytes - 1100));
}

// peerData: a mapped peer's memory shows what it stored in its own data() before a signal
// this rank waited for, round after round. shm and mpi's shared transport map every peer;
// mpi's message transport maps none (only data() itself).
TEST_F(Windows, PeerDataShowsWhatThePeerStoredBeforeItsSignal) {
  constexpr std::size_t kBytes = 5000;
  auto w = comm().createWindow(kBytes, 1);
  const char* transport = std::getenv("EPCOMM_MPI_WINDOW");
  const bool mapsPeers =
      comm().backendName() == "shm" ||
      (comm().backendName() == "mpi" && !(transport && std::string(transport) == "messages"));
  EXPECT_EQ(w->peerData(rank()), w->data());
  for (int round = 1; round <= 3; ++round) {
    const std::vector<unsigned char> b = block(rank(), -1, kBytes, round);
    std::memcpy(w->data(), b.data(), kBytes);  // plain stores into its own memory
    for (int p = 0; p < size(); ++p) {
      if (p != rank()) w->signal(p, 0, 1, SignalOp::kAdd);
    }
    w->waitSignal(0, static_cast<std::uint64_t>(size() - 1) * round);  // every peer's signal
    for (int p = 0; p < size(); ++p) {
      const void* peer = w->peerData(p);
      if (p != rank() && !mapsPeers) {
        EXPECT_EQ(peer, nullptr) << "peer " << p;
        continue;
      }
      ASSERT_NE(peer, nullptr) << "peer " << p << " on " << comm().backendName();
      EXPECT_EQ(mismatches(peer, p, -1, kBytes, round), 0u) << "peer " << p << " round " << round;
    }
    comm().barrier();  // every rank read round r before anyone stores round r + 1
  }
  expectError([&] { w->peerData(size()); }, ErrorCode::kInvalidArgument,
              {"peerData", "peer " + std::to_string(size())});
}

// Windows of different shapes alive together keep their memory and slots apart, and can
// be destroyed in any order every rank shares.
TEST_F(Windows, SeveralWindowsAtOnce) {
  const std::size_t sizes[] = {0, 3000, 64, 1 << 16};
  std::vector<std::unique_ptr<Window>> ws;
  for (std::size_t i = 0; i < 4; ++i) ws.push_back(comm().createWindow(sizes[i], i == 2 ? 0 : 2));
  auto buffer = comm().allocate(512);
  const int next = (rank() + 1) % size();
  const int prev = (rank() + size() - 1) % size();
  for (int i : {1, 3}) {
    const std::vector<unsigned char> b = block(rank(), next, sizes[i], i);
    ws[i]->put(next, 0, b.data(), b.size());
    ws[i]->signal(next, 1, i, SignalOp::kSet);
  }
  ws[0]->signal(next, 0, 42, SignalOp::kSet);
  std::memset(ws[2]->data(), 0x5a, 64);
  std::memset(buffer->data(), 0x33, 512);
  for (int i : {1, 3}) {
    ws[i]->waitSignal(1, i);
    EXPECT_EQ(mismatches(ws[i]->data(), prev, rank(), sizes[i], i), 0u) << "window " << i;
    EXPECT_EQ(ws[i]->readSignal(0), 0u) << "window " << i;
  }
  ws[0]->waitSignal(0, 42);
  EXPECT_EQ(ws[0]->readSignal(1), 0u);
  std::vector<unsigned char> fives(64, 0x5a), threes(512, 0x33);
  EXPECT_EQ(std::memcmp(ws[2]->data(), fives.data(), 64), 0);
  EXPECT_EQ(std::memcmp(buffer->data(), threes.data(), 512), 0);
  ws[1].reset();  // collective, in the same order on every rank
  buffer.reset();
  ws.clear();
  expectUsable();
}

// Collectives on registered buffers give what they give on ordinary memory.
TEST_F(Windows, RegisteredBuffersInEveryCollective) {
  constexpr std::size_t n = 1027;
  const std::size_t total = n * size();
  const std::size_t bytes = total * sizeof(std::int32_t);
  auto regIn = comm().allocate(bytes);
  auto regOut = comm().allocate(bytes + 64);
  auto* in = static_cast<std::int32_t*>(regIn->data());
  auto* out = static_cast<std::int32_t*>(regOut->data()) + 16;  // inside, not at the start
  std::vector<std::int32_t> plainIn(total), plainOut(total);
  auto fill = [&] {
    for (std::size_t i = 0; i < total; ++i) {
      plainIn[i] = in[i] = static_cast<std::int32_t>(rank() * 1000 + i % 977) - 300;
      plainOut[i] = out[i] = -1;
    }
  };
  auto same = [&](const char* what) {
    EXPECT_EQ(std::memcmp(out, plainOut.data(), bytes), 0) << what;
    EXPECT_EQ(std::memcmp(in, plainIn.data(), bytes), 0) << what << " (input/in-place)";
  };
  const auto i32 = DataType::kI32;
  std::vector<std::size_t> counts(size()), displs(size());
  for (int r = 0; r < size(); ++r) {
    counts[r] = n - r;
    displs[r] = n * r;
  }
  fill();
  comm().allReduce(in, out, n, i32, ReduceOp::kSum);
  comm().allReduce(plainIn.data(), plainOut.data(), n, i32, ReduceOp::kSum);
  same("allReduce");
  comm().allReduce(in, in, total, i32, ReduceOp::kMax);
  comm().allReduce(plainIn.data(), plainIn.data(), total, i32, ReduceOp::kMax);
  same("allReduce in place");
  fill();
  comm().allGather(in, out, n, i32);
  comm().allGather(plainIn.data(), plainOut.data(), n, i32);
  same("allGather");
  comm().allGatherV(in, counts[rank()], out, counts.data(), displs.data(), i32);
  comm().allGatherV(plainIn.data(), counts[rank()], plainOut.data(), counts.data(), displs.data(),
                    i32);
  same("allGatherV");
  comm().reduceScatter(in, out, n, i32, ReduceOp::kSum);
  comm().reduceScatter(plainIn.data(), plainOut.data(), n, i32, ReduceOp::kSum);
  same("reduceScatter");
  comm().broadcast(in, out, total, i32, size() - 1);
  comm().broadcast(plainIn.data(), plainOut.data(), total, i32, size() - 1);
  same("broadcast");
  comm().allToAll(in, out, n, i32);
  comm().allToAll(plainIn.data(), plainOut.data(), n, i32);
  same("allToAll");
  // Rank s sends n - p elements to p, so p receives n - p from everyone.
  const std::vector<std::size_t> recvCounts(size(), n - rank());
  comm().allToAllV(in, counts.data(), displs.data(), out, recvCounts.data(), displs.data(), i32);
  comm().allToAllV(plainIn.data(), counts.data(), displs.data(), plainOut.data(), recvCounts.data(),
                   displs.data(), i32);
  same("allToAllV");
  if (size() > 1) {
    const int next = (rank() + 1) % size();
    const int prev = (rank() + size() - 1) % size();
    for (bool registered : {true, false}) {
      std::int32_t* s = registered ? in : plainIn.data();
      std::int32_t* r = registered ? out : plainOut.data();
      if (rank() % 2 == 0) {
        comm().send(s, n, i32, next, 5);
        comm().recv(r, n, i32, prev, 5);
      } else {
        comm().recv(r, n, i32, prev, 5);
        comm().send(s, n, i32, next, 5);
      }
    }
    same("send/recv");
  }
}

TEST_F(Windows, BadArgumentsAreInvalidArgumentAndLeaveEverythingUsable) {
  auto w = comm().createWindow(64, 2);
  char src[128] = {};
  const auto bad = ErrorCode::kInvalidArgument;
  expectError([&] { w->put(size(), 0, src, 8); }, bad, {"put", "peer " + std::to_string(size())});
  expectError([&] { w->put(-1, 0, src, 8); }, bad, {"put", "peer -1"});
  expectError([&] { w->put(0, 60, src, 8); }, bad, {"put", "offset 60"});
  expectError([&] { w->put(0, 65, src, 0); }, bad, {"put", "offset 65"});
  expectError([&] { w->put(0, 0, src, 65); }, bad, {"put", "65 bytes"});
  expectError([&] { w->put(0, 8, nullptr, 8); }, bad, {"put"});
  expectError([&] { w->signal(0, 2, 1); }, bad, {"signal", "slot 2"});
  expectError([&] { w->signal(0, -1, 1); }, bad, {"signal", "slot -1"});
  expectError([&] { w->signal(size(), 0, 1); }, bad, {"signal", "peer " + std::to_string(size())});
  expectError([&] { w->signal(0, 0, 1, static_cast<SignalOp>(7)); }, bad, {"signal"});
  expectError([&] { w->waitSignal(2, 1); }, bad, {"waitSignal", "slot 2"});
  expectError([&] { w->readSignal(-1); }, bad, {"readSignal", "slot -1"});
  expectError([&] { comm().createWindow(64, -1); }, bad, {"createWindow", "numSignals -1"});
  if (size() > 1) {
    expectError([&] { comm().createWindow(rank() == 0 ? 64 : 128, 1); }, bad,
                {"createWindow", "bytes"});
    expectError([&] { comm().createWindow(64, rank() == size() - 1 ? 2 : 1); }, bad,
                {"createWindow", "numSignals"});
    expectError([&] { comm().allocate(rank() == 1 ? 0 : 4096); }, bad, {"createWindow", "bytes"});
  }
  expectUsable();
  // The window survived the refused calls.
  const int next = (rank() + 1) % size();
  const std::vector<unsigned char> b = block(rank(), next, 64);
  w->put(next, 0, b.data(), 64);
  w->signal(next, 1, 9);
  w->waitSignal(1, 9);
  EXPECT_EQ(mismatches(w->data(), (rank() + size() - 1) % size(), rank(), 64), 0u);
}

// A wait nobody signals fails with kTimeout after EPCOMM_TIMEOUT_MS (and aborts the
// communicator it ran on, here a child); needs a short timeout, so it has its own ctest
// entries. On a backend that cannot return from the wait (it ends the job instead) that
// entry matches the report.
TEST(WindowTimeout, WaitNobodySignalsTimesOut) {
  Communicator& comm = *gComm;
  const std::int64_t timeoutMs = comm.config().timeoutMs;
  if (timeoutMs == 0 || timeoutMs > 10000) {
    GTEST_SKIP() << "needs 0 < EPCOMM_TIMEOUT_MS <= 10000 (has " << timeoutMs
                 << "); run by the *window_timeout* ctest entries";
  }
  if (noWindows()) GTEST_SKIP() << "backend has no windows: " << *noWindows();
  std::unique_ptr<Communicator> child = comm.split(0, comm.rank());
  auto w = child->createWindow(64, 1);
  const auto start = Clock::now();
  expectError([&] { w->waitSignal(0, 1); }, ErrorCode::kTimeout,
              {"waitSignal", "EPCOMM_TIMEOUT_MS"});
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_GE(ms, timeoutMs * 9 / 10);
  EXPECT_LT(ms, timeoutMs * 4 + 2000);
  EXPECT_TRUE(child->aborted());
  expectError([&] { w->readSignal(0); }, ErrorCode::kInvalidUsage, {"readSignal", "aborted"});
  w.reset();  // after the abort: releases this rank's resources only
  child.reset();
  int v = 1;
  comm.allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
  EXPECT_EQ(v, comm.size());
}

}  // namespace
}  // namespace epcomm::test
