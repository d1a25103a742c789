// Collectives on registered buffers (Communicator::allocate) on the shm backend: every
// dtype, op and size class (0, 1, odd, not a multiple of the vector width, one-shot and
// two-shot sizes, larger than EPCOMM_BUFFSIZE), in and out of place, with registration on
// every rank, on some ranks only (mixed), and on sends or recvs only. Every result must be
// bitwise equal to the same call on ordinary (heap) buffers, which takes the copy path,
// and must leave every byte outside the call's extent alone. A separate test checks from
// the backend's debug log that the zero-copy paths are really taken (and the fallback when
// registration is mixed), so the equality checks cannot pass by never leaving the copy path.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/common/test_values.h"
#include "tests/shm/shm_suite.h"

namespace epcomm::test {
namespace {

using Bytes = std::vector<unsigned char>;

constexpr unsigned char kPoison = 0xA5;
constexpr std::size_t kGuard = 128;
// Element counts: below, inside and above the registered size classes.
const std::vector<std::size_t> kCounts = {0, 1, 7, 1027, 40001, 262147, 1000003};
constexpr std::size_t kLargest = 1000003;

// How one call's buffers are placed on this rank.
enum class Mode {
  kHeap,          // nothing registered (the copy-path reference)
  kRegistered,    // send and recv registered on every rank
  kMixed,         // rank 0 on the heap, the others registered
  kSendsOnly,     // every send registered, every recv on the heap
  kRecvsOnly,     // every recv registered, every send on the heap
  kLastSendOnly,  // the last rank registers only its send, the others both
};
const Mode kModes[] = {Mode::kRegistered, Mode::kMixed, Mode::kSendsOnly, Mode::kRecvsOnly,
                       Mode::kLastSendOnly};

const char* name(Mode m) {
  switch (m) {
    case Mode::kHeap: return "heap";
    case Mode::kRegistered: return "registered";
    case Mode::kMixed: return "mixed";
    case Mode::kSendsOnly: return "sends-only";
    case Mode::kRecvsOnly: return "recvs-only";
    case Mode::kLastSendOnly: return "last-send-only";
  }
  return "?";
}

// One collective call: extents in bytes, in-place offsets, how to fill the input and call.
struct Call {
  std::size_t sendBytes = 0, recvBytes = 0;
  // In place the call uses one buffer of max(sendBytes, recvBytes): send at sendOff, recv
  // at recvOff inside it.
  std::size_t inPlaceSendOff = 0, inPlaceRecvOff = 0;
  std::function<void(unsigned char* send)> fill;
  std::function<void(Communicator&, void* send, void* recv)> run;
};

class ShmRegistered : public ::testing::Test {
 protected:
  Communicator& comm() { return *gShmComm; }
  int rank() { return gShmComm->rank(); }
  int size() { return gShmComm->size(); }

  // Registered memory for send and recv, reused by every call of a test.
  void makePools(Communicator& c, std::size_t bytes) {
    sendPool_ = c.allocate(bytes + 2 * kGuard + 64);
    recvPool_ = c.allocate(bytes + 2 * kGuard + 64);
  }
  void dropPools() {
    sendPool_.reset();
    recvPool_.reset();
  }

  // Runs `call` with buffers placed per `mode` and returns the bytes of its recv extent;
  // counts bytes outside the extents that changed into `touched`.
  Bytes runPlaced(Communicator& c, Mode mode, bool inPlace, const Call& call,
                  std::size_t& touched) {
    const bool sendReg = mode == Mode::kRegistered || mode == Mode::kSendsOnly ||
                         mode == Mode::kLastSendOnly || (mode == Mode::kMixed && c.rank() != 0);
    const bool recvReg = mode == Mode::kRegistered || mode == Mode::kRecvsOnly ||
                         (mode == Mode::kLastSendOnly && c.rank() != c.size() - 1) ||
                         (mode == Mode::kMixed && c.rank() != 0);
    // An odd offset of whole elements: no registered buffer starts on a cache line.
    constexpr std::size_t kOffset = kGuard + 24;
    const std::size_t span = std::max(call.sendBytes, call.recvBytes);
    const std::size_t sendRegion = inPlace ? span : call.sendBytes;
    const std::size_t recvRegion = inPlace ? span : call.recvBytes;
    Bytes heapSend, heapRecv;
    auto place = [&](bool registered, RegisteredBuffer& pool, Bytes& heap, std::size_t region) {
      if (registered) return static_cast<unsigned char*>(pool.data());
      heap.assign(region + 2 * kGuard + 64, kPoison);
      return heap.data();
    };
    // In place: one buffer, registered when this rank's send is.
    unsigned char* sendBase = place(sendReg, *sendPool_, heapSend, sendRegion);
    unsigned char* recvBase = inPlace ? sendBase : place(recvReg, *recvPool_, heapRecv, recvRegion);
    std::memset(sendBase, kPoison, kOffset + sendRegion + kGuard);
    if (!inPlace) std::memset(recvBase, kPoison, kOffset + recvRegion + kGuard);
    unsigned char* send = sendBase + kOffset + (inPlace ? call.inPlaceSendOff : 0);
    unsigned char* recv = recvBase + kOffset + (inPlace ? call.inPlaceRecvOff : 0);
    // No barrier around the call: the collective itself must keep peers off this rank's
    // buffers before it entered and after it returned.
    call.fill(send);
    call.run(c, send, recv);
    Bytes out(recv, recv + call.recvBytes);
    // Bytes outside the extents: the guards, and in place the rest of the one buffer.
    touched = 0;
    auto countChanged = [&](const unsigned char* p, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) touched += p[i] != kPoison;
    };
    countChanged(sendBase, kOffset);
    countChanged(sendBase + kOffset + sendRegion, kGuard);
    if (!inPlace) {
      countChanged(recvBase, kOffset);
      countChanged(recvBase + kOffset + recvRegion, kGuard);
    }
    return out;
  }

  // The heap reference, then every mode and both placements, compared bitwise.
  void checkAllModes(Communicator& c, const Call& call, bool inPlaceToo, const std::string& label) {
    for (bool inPlace : {false, true}) {
      if (inPlace && !inPlaceToo) continue;
      std::size_t touched = 0;
      const Bytes want = runPlaced(c, Mode::kHeap, inPlace, call, touched);
      for (Mode mode : kModes) {
        const Bytes got = runPlaced(c, mode, inPlace, call, touched);
        EXPECT_TRUE(got == want) << label << " mode " << name(mode) << " inPlace " << inPlace
                                 << ": differs from the copy path";
        EXPECT_EQ(touched, 0u) << label << " mode " << name(mode) << " inPlace " << inPlace
                               << ": bytes outside the call changed";
      }
    }
  }

  std::unique_ptr<RegisteredBuffer> sendPool_, recvPool_;
};

bool heavy(std::size_t n, ReduceOp op) {
  return n == kLargest && op != ReduceOp::kSum && op != ReduceOp::kMax;
}

TEST_F(ShmRegistered, AllReduce) {
  makePools(comm(), kLargest * 8);
  for (DataType d : kAllDataTypes) {
    const std::size_t es = dtypeSize(d);
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t n : kCounts) {
        if (heavy(n, op)) continue;
        Call call;
        call.sendBytes = call.recvBytes = n * es;
        call.fill = [&](unsigned char* p) {
          for (std::size_t i = 0; i < n; ++i) store(p, i, input(rank(), i, op, d), d);
        };
        call.run = [&](Communicator& c, void* s, void* r) { c.allReduce(s, r, n, d, op); };
        const std::string label = "allReduce " + std::string(toString(d)) + " " +
                                  std::string(toString(op)) + " n=" + std::to_string(n);
        checkAllModes(comm(), call, true, label);
      }
    }
  }
  dropPools();
}

TEST_F(ShmRegistered, ReduceScatter) {
  makePools(comm(), kLargest * 8 * size() / 4 + 64);
  for (DataType d : kAllDataTypes) {
    const std::size_t es = dtypeSize(d);
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t n : kCounts) {
        if (heavy(n, op)) continue;
        const std::size_t per = n / 4;  // recvCount, so the send stays within the pools
        Call call;
        call.sendBytes = per * es * size();
        call.recvBytes = per * es;
        call.inPlaceRecvOff = rank() * per * es;
        call.fill = [&](unsigned char* p) {
          for (std::size_t i = 0; i < per * size(); ++i) store(p, i, input(rank(), i, op, d), d);
        };
        call.run = [&](Communicator& c, void* s, void* r) { c.reduceScatter(s, r, per, d, op); };
        const std::string label = "reduceScatter " + std::string(toString(d)) + " " +
                                  std::string(toString(op)) + " n=" + std::to_string(per);
        checkAllModes(comm(), call, true, label);
      }
    }
  }
  dropPools();
}

TEST_F(ShmRegistered, AllGather) {
  makePools(comm(), kLargest * 8 * size() / 4 + 64);
  for (DataType d : kAllDataTypes) {
    const std::size_t es = dtypeSize(d);
    for (std::size_t n : kCounts) {
      const std::size_t per = n / 4;
      Call call;
      call.sendBytes = per * es;
      call.recvBytes = per * es * size();
      call.inPlaceSendOff = rank() * per * es;
      call.fill = [&](unsigned char* p) {
        for (std::size_t i = 0; i < per; ++i) store(p, i, tag(rank(), i, d), d);
      };
      call.run = [&](Communicator& c, void* s, void* r) { c.allGather(s, r, per, d); };
      checkAllModes(comm(), call, true,
                    "allGather " + std::string(toString(d)) + " n=" + std::to_string(per));
    }
  }
  dropPools();
}

TEST_F(ShmRegistered, Broadcast) {
  makePools(comm(), kLargest * 8);
  for (DataType d : {DataType::kU8, DataType::kF32, DataType::kI64}) {
    const std::size_t es = dtypeSize(d);
    for (std::size_t n : kCounts) {
      for (int root : {0, size() - 1}) {
        Call call;
        call.sendBytes = call.recvBytes = n * es;
        call.fill = [&](unsigned char* p) {
          for (std::size_t i = 0; i < n; ++i) store(p, i, tag(rank(), i, d), d);
        };
        call.run = [&, root](Communicator& c, void* s, void* r) { c.broadcast(s, r, n, d, root); };
        checkAllModes(comm(), call, true,
                      "broadcast " + std::string(toString(d)) + " n=" + std::to_string(n) +
                          " root " + std::to_string(root));
      }
    }
  }
  dropPools();
}

// The backend's notes (debug log) show which path each call took: zero-copy when every
// rank is registered, the copy path, on every rank alike, when registration is mixed.
TEST_F(ShmRegistered, ZeroCopyPathsTakenAndMixedFallsBack) {
  if (size() < 2) GTEST_SKIP() << "one rank never takes the handshake";
  StderrCapture capture;
  auto c = comm().split(0, rank());  // a fresh backend: every note is logged once more
  makePools(*c, 1 << 22);
  const std::size_t small = 40000, large = 1 << 19;  // f32: 160 KB, 2 MiB
  auto reduceCall = [&](std::size_t n) {
    Call call;
    call.sendBytes = call.recvBytes = n * 4;
    call.fill = [&, n](unsigned char* p) {
      for (std::size_t i = 0; i < n; ++i)
        store(p, i, input(rank(), i, ReduceOp::kSum, DataType::kF32), DataType::kF32);
    };
    call.run = [n](Communicator& cc, void* s, void* r) {
      cc.allReduce(s, r, n, DataType::kF32, ReduceOp::kSum);
    };
    return call;
  };
  std::size_t touched = 0;
  // Sends registered, recvs not: one-shot (small only); both registered: two-shot.
  runPlaced(*c, Mode::kSendsOnly, false, reduceCall(small), touched);
  EXPECT_TRUE(capture.contains("allReduce on registered buffers: zero-copy one-shot"));
  EXPECT_FALSE(capture.contains("allReduce on registered buffers: zero-copy two-shot"));
  runPlaced(*c, Mode::kRegistered, true, reduceCall(small), touched);
  EXPECT_TRUE(capture.contains("allReduce on registered buffers: zero-copy two-shot"));
  runPlaced(*c, Mode::kRegistered, false, reduceCall(large), touched);
  EXPECT_FALSE(capture.contains("allReduce: buffers not registered"));
  runPlaced(*c, Mode::kMixed, false, reduceCall(large), touched);
  EXPECT_TRUE(capture.contains("allReduce: buffers not registered on every rank: copy path"));

  Call gather;
  gather.sendBytes = large;
  gather.recvBytes = large * c->size();
  gather.fill = [](unsigned char* p) { std::memset(p, 1, 1 << 19); };
  gather.run = [&](Communicator& cc, void* s, void* r) {
    cc.allGather(s, r, large, DataType::kU8);
  };
  dropPools();
  makePools(*c, large * c->size());
  runPlaced(*c, Mode::kSendsOnly, false, gather, touched);
  EXPECT_TRUE(capture.contains("allGather on registered buffers: zero-copy"));
  Call scatter;
  scatter.sendBytes = large;
  scatter.recvBytes = large / c->size();
  scatter.fill = [](unsigned char* p) { std::memset(p, 1, 1 << 19); };
  scatter.run = [&](Communicator& cc, void* s, void* r) {
    cc.reduceScatter(s, r, large / cc.size(), DataType::kU8, ReduceOp::kMax);
  };
  runPlaced(*c, Mode::kRegistered, false, scatter, touched);
  EXPECT_TRUE(capture.contains("reduceScatter on registered buffers: zero-copy"));
  Call bcast;
  bcast.sendBytes = bcast.recvBytes = large;
  bcast.fill = [](unsigned char* p) { std::memset(p, 2, 1 << 19); };
  bcast.run = [&](Communicator& cc, void* s, void* r) {
    cc.broadcast(s, r, large, DataType::kU8, 0);
  };
  runPlaced(*c, Mode::kMixed, false, bcast, touched);  // the root (rank 0) is on the heap
  EXPECT_TRUE(capture.contains("broadcast: root's send not registered: copy path"));
  runPlaced(*c, Mode::kRegistered, false, bcast, touched);
  EXPECT_TRUE(capture.contains("broadcast on registered buffers: zero-copy"));
  dropPools();
  c.reset();
}

}  // namespace
}  // namespace epcomm::test
