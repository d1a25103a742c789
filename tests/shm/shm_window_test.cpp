// Symmetric windows on the shm backend, every rank a real process: put + signal + wait
// correctness and ordering, signal ops, self-puts, zero-byte and out-of-range calls.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/shm/shm_suite.h"

namespace epcomm::test {
namespace {

class ShmWindow : public ::testing::Test {
 protected:
  Communicator& comm() { return *gShmComm; }
  int rank() { return gShmComm->rank(); }
  int size() { return gShmComm->size(); }
};

std::uint8_t pattern(int from, int to, std::size_t i, std::uint64_t round) {
  return static_cast<std::uint8_t>(from * 31 + to * 7 + i * 13 + round * 101);
}

TEST_F(ShmWindow, CreatedZeroedAndAligned) {
  auto w = comm().createWindow(100003, 5);
  ASSERT_NE(w->data(), nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(w->data()) % 64, 0u);
  EXPECT_EQ(w->bytes(), 100003u);
  EXPECT_EQ(w->numSignals(), 5);
  const auto* p = static_cast<const unsigned char*>(w->data());
  std::size_t nonZero = 0;
  for (std::size_t i = 0; i < w->bytes(); ++i) nonZero += p[i] != 0;
  EXPECT_EQ(nonZero, 0u);
  for (int s = 0; s < 5; ++s) EXPECT_EQ(w->readSignal(s), 0u);
  comm().barrier();
}

// Every rank puts a block into every rank (itself included), then signals it; each waits
// for every sender and checks every block.
TEST_F(ShmWindow, PutSignalWaitAllPairs) {
  constexpr std::size_t kBlock = 4099;
  auto w = comm().createWindow(kBlock * size(), size());
  std::vector<std::uint8_t> src(kBlock);
  for (std::uint64_t round = 1; round <= 3; ++round) {
    for (int i = 0; i < size(); ++i) {
      const int peer = (rank() + i) % size();
      for (std::size_t k = 0; k < kBlock; ++k) src[k] = pattern(rank(), peer, k, round);
      w->put(peer, rank() * kBlock, src.data(), kBlock);
      w->signal(peer, rank(), round);
    }
    std::size_t wrong = 0;
    for (int from = 0; from < size(); ++from) {
      w->waitSignal(from, round);
      const auto* got = static_cast<const std::uint8_t*>(w->data()) + from * kBlock;
      for (std::size_t k = 0; k < kBlock; ++k) wrong += got[k] != pattern(from, rank(), k, round);
    }
    EXPECT_EQ(wrong, 0u) << "round " << round;
    comm().barrier();  // nobody overwrites a block before its receiver checked it
  }
}

// Many puts of assorted sizes, then one signal (kAdd): the receiver must see every byte of
// every put once its wait returns; it acks so the sender can reuse the window.
TEST_F(ShmWindow, ManyPutsThenSignalOrdering) {
  constexpr std::size_t kBytes = 1 << 18;
  constexpr int kRounds = 200;
  auto w = comm().createWindow(kBytes, 2);
  const int to = (rank() + 1) % size();
  const int from = (rank() + size() - 1) % size();
  std::vector<std::uint8_t> src(kBytes);
  std::size_t wrong = 0;
  for (int round = 1; round <= kRounds; ++round) {
    // Puts of 1 B .. 64 KiB tiling the window, in a round-dependent order of sizes.
    std::size_t off = 0;
    for (std::size_t piece = 1 + round % 7; off < kBytes; piece = piece * 3 % 65521 + 1) {
      const std::size_t n = std::min(piece, kBytes - off);
      for (std::size_t k = 0; k < n; ++k) src[off + k] = pattern(rank(), to, off + k, round);
      w->put(to, off, src.data() + off, n);
      off += n;
    }
    w->signal(to, 0, 1, SignalOp::kAdd);
    w->waitSignal(0, static_cast<std::uint64_t>(round));
    const auto* got = static_cast<const std::uint8_t*>(w->data());
    for (std::size_t k = 0; k < kBytes; ++k) wrong += got[k] != pattern(from, rank(), k, round);
    w->signal(from, 1, static_cast<std::uint64_t>(round), SignalOp::kSet);  // ack: reuse it
    w->waitSignal(1, static_cast<std::uint64_t>(round));
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(w->readSignal(0), static_cast<std::uint64_t>(kRounds));
  comm().barrier();
}

TEST_F(ShmWindow, SetAndAddSemantics) {
  auto w = comm().createWindow(64, 3);
  // Slot 0 of rank 0: every rank adds rank + 1.
  w->signal(0, 0, static_cast<std::uint64_t>(rank() + 1), SignalOp::kAdd);
  // Slot 1 of every rank: set by itself to a large value, then set lower by its successor
  // after a barrier (a set replaces, it does not add).
  w->signal(rank(), 1, std::uint64_t{1} << 40, SignalOp::kSet);
  comm().barrier();
  EXPECT_EQ(w->readSignal(1), std::uint64_t{1} << 40);
  comm().barrier();
  w->signal((rank() + 1) % size(), 1, 7, SignalOp::kSet);
  w->waitSignal(1, 7);
  comm().barrier();
  EXPECT_EQ(w->readSignal(1), 7u);
  if (rank() == 0) {
    const auto total = static_cast<std::uint64_t>(size() * (size() + 1) / 2);
    w->waitSignal(0, total);
    EXPECT_EQ(w->readSignal(0), total);
  }
  // Slot 2: values above 2^32 (the futex word is the low half) still wake the waiter.
  const int next = (rank() + 1) % size();
  w->signal(next, 2, (std::uint64_t{3} << 32), SignalOp::kAdd);
  w->waitSignal(2, std::uint64_t{3} << 32);
  EXPECT_EQ(w->readSignal(2), std::uint64_t{3} << 32);
  comm().barrier();
}

TEST_F(ShmWindow, SelfPutAndSignal) {
  auto w = comm().createWindow(4096, 1);
  std::vector<std::uint8_t> src(4096);
  for (std::size_t k = 0; k < src.size(); ++k) src[k] = pattern(rank(), rank(), k, 9);
  w->put(rank(), 0, src.data(), src.size());
  w->signal(rank(), 0, 5);
  w->waitSignal(0, 5);
  EXPECT_EQ(std::memcmp(w->data(), src.data(), src.size()), 0);
  // Overlapping self-put inside the window (memmove semantics).
  w->put(rank(), 1, w->data(), 4095);
  EXPECT_EQ(static_cast<const std::uint8_t*>(w->data())[4095], src[4094]);
  comm().barrier();
}

TEST_F(ShmWindow, ZeroBytePutAndZeroByteWindow) {
  auto w = comm().createWindow(256, 1);
  w->put((rank() + 1) % size(), 256, nullptr, 0);  // at the very end: allowed, no-op
  w->put((rank() + 1) % size(), 0, w->data(), 0);
  auto empty = comm().createWindow(0, 1);
  EXPECT_EQ(empty->bytes(), 0u);
  empty->put((rank() + 1) % size(), 0, nullptr, 0);
  empty->signal((rank() + 1) % size(), 0, 1);
  empty->waitSignal(0, 1);
  comm().barrier();
}

TEST_F(ShmWindow, OutOfRangeIsInvalidArgumentAndCommStaysUsable) {
  auto w = comm().createWindow(128, 2);
  char src[256] = {};
  auto expectInvalid = [&](auto&& call, const char* what) {
    try {
      call();
      ADD_FAILURE() << what << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << what << ": " << e.what();
    }
  };
  expectInvalid([&] { w->put(0, 100, src, 29); }, "put past the end");
  expectInvalid([&] { w->put(0, 129, src, 0); }, "offset past the end");
  expectInvalid([&] { w->put(size(), 0, src, 1); }, "peer out of range");
  expectInvalid([&] { w->put(-1, 0, src, 1); }, "negative peer");
  expectInvalid([&] { w->signal(0, 2, 1); }, "slot out of range");
  expectInvalid([&] { w->signal(size(), 0, 1); }, "signal peer out of range");
  expectInvalid([&] { w->waitSignal(-1, 1); }, "wait slot out of range");
  expectInvalid([&] { w->readSignal(2); }, "read slot out of range");
  EXPECT_FALSE(comm().aborted());
  int v = 1;
  comm().allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
  EXPECT_EQ(v, size());
}

// Several windows alive at once, destroyed in creation order and in reverse.
TEST_F(ShmWindow, SeveralWindowsIndependent) {
  std::vector<std::unique_ptr<Window>> ws;
  for (int i = 0; i < 4; ++i) ws.push_back(comm().createWindow(1000 + i, 1));
  for (int i = 0; i < 4; ++i) {
    const auto v = static_cast<std::uint8_t>(i + 1);
    std::vector<std::uint8_t> src(1000 + i, v);
    ws[i]->put((rank() + 1) % size(), 0, src.data(), src.size());
    ws[i]->signal((rank() + 1) % size(), 0, 1);
  }
  for (int i = 3; i >= 0; --i) {
    ws[i]->waitSignal(0, 1);
    const auto* p = static_cast<const std::uint8_t*>(ws[i]->data());
    std::size_t wrong = 0;
    for (int k = 0; k < 1000 + i; ++k) wrong += p[k] != i + 1;
    EXPECT_EQ(wrong, 0u) << "window " << i;
  }
  ws[0].reset();
  ws[2].reset();
  ws.clear();
  comm().barrier();
}

// A window on a split communicator: its own ranks, its own signals.
TEST_F(ShmWindow, WindowOnSplitCommunicator) {
  auto half = comm().split(rank() % 2, rank());
  auto w = half->createWindow(64, 1);
  std::uint64_t v = static_cast<std::uint64_t>(rank());
  w->put((half->rank() + 1) % half->size(), 0, &v, sizeof v);
  w->signal((half->rank() + 1) % half->size(), 0, 1);
  w->waitSignal(0, 1);
  std::uint64_t got = 0;
  std::memcpy(&got, w->data(), sizeof got);
  // The sender is the previous member of this half: global rank - 2 (mod the half).
  const int prevLocal = (half->rank() + half->size() - 1) % half->size();
  EXPECT_EQ(got, static_cast<std::uint64_t>(prevLocal * 2 + rank() % 2));
  w.reset();
  half.reset();
  comm().barrier();
}

}  // namespace
}  // namespace epcomm::test
