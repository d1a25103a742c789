// Conformance: worker threads (EPCOMM_THREADS, comm/workers.h) change nothing in the
// results. Large collectives (past the 128 KiB a loop needs before it splits, odd lengths
// that are no multiple of a line) run with 1, 2 and 3 threads per rank on inputs whose sums
// round, and every result must be bitwise the 1-thread one.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "comm/src/workers.h"
#include "comm/workers.h"
#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

// Inexact values, different on every rank and element, so that a changed order of the
// reduction would change bits.
Bytes roundingInput(int rank, std::size_t n, DataType d) {
  Bytes b = buffer(n, d);
  for (std::size_t i = 0; i < n; ++i) {
    const double v = std::sin(0.37 * static_cast<double>(i) + 1.3 * rank) * 3.1 + 0.001 * rank;
    const bool integral =
        d == DataType::kI32 || d == DataType::kI64 || d == DataType::kU8 || d == DataType::kI8;
    store(b.data(), i, integral ? std::floor(v * 10) + 40 : v, d);
  }
  return b;
}

// Runs every collective once at this rank's current thread count; returns the results.
std::vector<Bytes> runCollectives(Communicator& comm) {
  const int P = comm.size(), me = comm.rank();
  std::vector<Bytes> out;
  const std::size_t n = (std::size_t{1} << 18) + 13;  // 1 MiB of f32, odd
  for (DataType d : {DataType::kF32, DataType::kBf16, DataType::kF16, DataType::kI32}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kMax, ReduceOp::kAvg}) {
      if (op == ReduceOp::kAvg && d == DataType::kI32) continue;
      for (bool inPlace : {false, true}) {
        Bytes send = roundingInput(me, n, d);
        Bytes recv = inPlace ? send : buffer(n, d);
        void* dst = inPlace ? send.data() : recv.data();
        comm.allReduce(send.data(), dst, n, d, op);
        out.push_back(inPlace ? send : recv);
      }
    }
    Bytes rsSend = roundingInput(me, n * P, d);
    Bytes rsRecv = buffer(n, d);
    comm.reduceScatter(rsSend.data(), rsRecv.data(), n, d, ReduceOp::kSum);
    out.push_back(rsRecv);
  }
  Bytes mine = roundingInput(me, n, DataType::kF32);
  Bytes gathered = buffer(n * P, DataType::kF32);
  comm.allGather(mine.data(), gathered.data(), n, DataType::kF32);
  out.push_back(gathered);
  Bytes root = roundingInput(me, n, DataType::kBf16);
  comm.broadcast(root.data(), root.data(), n, DataType::kBf16, P - 1);
  out.push_back(root);
  Bytes a2aSend = roundingInput(me, n * P, DataType::kBf16);
  Bytes a2aRecv = buffer(n * P, DataType::kBf16);
  comm.allToAll(a2aSend.data(), a2aRecv.data(), n, DataType::kBf16);
  out.push_back(a2aRecv);
  return out;
}

TEST_F(Conformance, ThreadCountsGiveTheSameBits) {
  setThreads(1);
  const std::vector<Bytes> one = runCollectives(comm());
  for (int t : {2, 3}) {
    setThreads(t);
    EXPECT_EQ(threads(), t);
    const std::uint64_t splitBefore = splitLoops();
    const std::vector<Bytes> many = runCollectives(comm());
    // The shm backend (alone or inside each host) splits these copies and reductions, else
    // this test would compare one thread with itself; not with a small EPCOMM_BUFFSIZE, whose
    // pipeline steps stay under the 128 KiB a loop needs to split.
    const std::size_t buffer = comm().config().bufferBytes;
    if (comm().backendName().rfind("shm", 0) == 0 && (buffer == 0 || buffer >= (64u << 20))) {
      EXPECT_GT(splitLoops(), splitBefore) << t << " threads: no loop was split";
    }
    ASSERT_EQ(many.size(), one.size());
    for (std::size_t k = 0; k < one.size(); ++k) {
      EXPECT_TRUE(many[k] == one[k]) << "collective " << k << " with " << t
                                     << " threads differs from 1 thread (rank " << rank() << ")";
    }
  }
  setThreads(0);
  expectUsable();
}

}  // namespace
}  // namespace epcomm::test
