// Backend conformance: every collective x dtype x op x size class, in place and out of
// place, through the Communicator on whatever backend EPCOMM_BACKEND picks. Run as real
// processes (mpirun -np 2 / 4) or as one process for single-rank backends. Every rank runs
// the same sequence of collectives; checks are non-fatal so no rank leaves the sequence.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "tests/common/fork_launcher.h"
#include "tests/common/test_values.h"

namespace epcomm::test {

Communicator* gComm = nullptr;

namespace {

using Bytes = std::vector<unsigned char>;

constexpr unsigned char kGuard = 0xA5;
// count elements plus one guard byte that no collective may touch.
Bytes buffer(std::size_t count, DataType d) {
  return Bytes(count * dtypeSize(d) + 1, kGuard);
}
bool guardIntact(const Bytes& b) {
  return b.back() == kGuard;
}

std::string label(DataType d, std::size_t n) {
  return std::string(toString(d)) + " n=" + std::to_string(n);
}

class Conformance : public ::testing::Test {
 protected:
  Communicator& comm() { return *gComm; }
  int rank() { return gComm->rank(); }
  int size() { return gComm->size(); }
};

TEST_F(Conformance, AllReduce) {
  for (DataType d : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t n : sizeClasses()) {
        for (bool inPlace : {false, true}) {
          Bytes send = buffer(n, d);
          for (std::size_t i = 0; i < n; ++i) store(send.data(), i, input(rank(), i, op, d), d);
          Bytes recv = inPlace ? send : buffer(n, d);
          void* out = inPlace ? send.data() : recv.data();
          comm().allReduce(send.data(), out, n, d, op);
          std::size_t wrong = 0;
          for (std::size_t i = 0; i < n; ++i) {
            wrong += !close(load(out, i, d), expected(size(), i, op, d), d, op);
          }
          EXPECT_EQ(wrong, 0u) << label(d, n) << " op " << toString(op) << " inPlace " << inPlace;
          EXPECT_TRUE(guardIntact(send) && guardIntact(recv)) << label(d, n);
        }
      }
    }
  }
}

TEST_F(Conformance, ReduceScatter) {
  for (DataType d : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      for (std::size_t n : sizeClasses()) {
        for (bool inPlace : {false, true}) {
          const std::size_t total = n * size();
          Bytes send = buffer(total, d);
          for (std::size_t i = 0; i < total; ++i) store(send.data(), i, input(rank(), i, op, d), d);
          Bytes recv = buffer(n, d);
          void* out = inPlace ? send.data() + n * dtypeSize(d) * rank() : recv.data();
          comm().reduceScatter(send.data(), out, n, d, op);
          std::size_t wrong = 0;
          for (std::size_t i = 0; i < n; ++i) {
            wrong += !close(load(out, i, d), expected(size(), rank() * n + i, op, d), d, op);
          }
          EXPECT_EQ(wrong, 0u) << label(d, n) << " op " << toString(op) << " inPlace " << inPlace;
          EXPECT_TRUE(guardIntact(send) && guardIntact(recv)) << label(d, n);
        }
      }
    }
  }
}

TEST_F(Conformance, AllGather) {
  for (DataType d : kAllDataTypes) {
    for (std::size_t n : sizeClasses()) {
      for (bool inPlace : {false, true}) {
        Bytes recv = buffer(n * size(), d);
        Bytes own = buffer(n, d);
        void* send = inPlace ? recv.data() + n * dtypeSize(d) * rank() : own.data();
        for (std::size_t i = 0; i < n; ++i) store(send, i, tag(rank(), i, d), d);
        comm().allGather(send, recv.data(), n, d);
        std::size_t wrong = 0;
        for (int r = 0; r < size(); ++r) {
          for (std::size_t i = 0; i < n; ++i)
            wrong += load(recv.data(), r * n + i, d) != tag(r, i, d);
        }
        EXPECT_EQ(wrong, 0u) << label(d, n) << " inPlace " << inPlace;
        EXPECT_TRUE(guardIntact(own) && guardIntact(recv)) << label(d, n);
      }
    }
  }
}

TEST_F(Conformance, AllGatherV) {
  for (DataType d : kAllDataTypes) {
    for (std::size_t n : sizeClasses()) {
      for (bool inPlace : {false, true}) {
        // Rank r sends n + r elements (nothing when n == 0); gaps of 3 between blocks.
        std::vector<std::size_t> counts(size()), displs(size());
        std::size_t off = 0;
        for (int r = 0; r < size(); ++r) {
          counts[r] = n == 0 ? 0 : n + r;
          displs[r] = off;
          off += counts[r] + 3;
        }
        Bytes own = buffer(counts[rank()], d);
        Bytes recv = buffer(off, d);
        void* send = inPlace ? recv.data() + displs[rank()] * dtypeSize(d) : own.data();
        for (std::size_t i = 0; i < counts[rank()]; ++i) store(send, i, tag(rank(), i, d), d);
        comm().allGatherV(send, counts[rank()], recv.data(), counts.data(), displs.data(), d);
        std::size_t wrong = 0;
        for (int r = 0; r < size(); ++r) {
          for (std::size_t i = 0; i < counts[r]; ++i)
            wrong += load(recv.data(), displs[r] + i, d) != tag(r, i, d);
        }
        EXPECT_EQ(wrong, 0u) << label(d, n) << " inPlace " << inPlace;
        EXPECT_TRUE(guardIntact(own) && guardIntact(recv)) << label(d, n);
      }
    }
  }
}

TEST_F(Conformance, Broadcast) {
  for (DataType d : kAllDataTypes) {
    for (std::size_t n : sizeClasses()) {
      for (int root : {0, size() - 1}) {
        for (bool inPlace : {false, true}) {
          Bytes send = buffer(n, d);
          Bytes recv = buffer(n, d);
          if (rank() == root) {
            for (std::size_t i = 0; i < n; ++i)
              store(inPlace ? recv.data() : send.data(), i, tag(root, i, d), d);
          }
          comm().broadcast(inPlace ? recv.data() : send.data(), recv.data(), n, d, root);
          std::size_t wrong = 0;
          for (std::size_t i = 0; i < n; ++i) wrong += load(recv.data(), i, d) != tag(root, i, d);
          EXPECT_EQ(wrong, 0u) << label(d, n) << " root " << root << " inPlace " << inPlace;
          EXPECT_TRUE(guardIntact(send) && guardIntact(recv)) << label(d, n);
        }
      }
    }
  }
}

TEST_F(Conformance, AllToAll) {
  for (DataType d : kAllDataTypes) {
    for (std::size_t n : sizeClasses()) {
      for (bool inPlace : {false, true}) {
        // Element i of the block for rank p carries tag(rank * 16 + p, i).
        Bytes send = buffer(n * size(), d);
        for (int p = 0; p < size(); ++p) {
          for (std::size_t i = 0; i < n; ++i)
            store(send.data(), p * n + i, tag(rank() * 16 + p, i, d), d);
        }
        Bytes recv = inPlace ? send : buffer(n * size(), d);
        void* out = inPlace ? send.data() : recv.data();
        comm().allToAll(send.data(), out, n, d);
        std::size_t wrong = 0;
        for (int p = 0; p < size(); ++p) {
          for (std::size_t i = 0; i < n; ++i)
            wrong += load(out, p * n + i, d) != tag(p * 16 + rank(), i, d);
        }
        EXPECT_EQ(wrong, 0u) << label(d, n) << " inPlace " << inPlace;
        EXPECT_TRUE(guardIntact(send) && guardIntact(recv)) << label(d, n);
      }
    }
  }
}

TEST_F(Conformance, AllToAllV) {
  for (DataType d : kAllDataTypes) {
    for (std::size_t n : sizeClasses()) {
      for (bool inPlace : {false, true}) {
        // Out of place, rank s sends (n + 2s + p) % (n + 2) elements to p (some zero), blocks
        // in reverse order. In place both sides of a pair use the same symmetric count.
        auto count = [&](int s, int p) {
          if (n == 0) return std::size_t{0};
          return inPlace ? (n + s + p) % (n + 2) : (n + 2 * s + p) % (n + 2);
        };
        std::vector<std::size_t> sc(size()), sd(size()), rc(size()), rd(size());
        std::size_t sendTotal = 0, recvTotal = 0;
        for (int p = size() - 1; p >= 0; --p) {
          sc[p] = count(rank(), p);
          sd[p] = sendTotal;
          sendTotal += sc[p] + 1;
        }
        for (int p = 0; p < size(); ++p) {
          rc[p] = count(p, rank());
          rd[p] = recvTotal;
          recvTotal += rc[p] + 2;
        }
        if (inPlace) {
          sd = rd;
          sendTotal = recvTotal;
        }
        Bytes send = buffer(sendTotal, d);
        for (int p = 0; p < size(); ++p) {
          for (std::size_t i = 0; i < sc[p]; ++i)
            store(send.data(), sd[p] + i, tag(rank() * 16 + p, i, d), d);
        }
        Bytes recv = buffer(inPlace ? 0 : recvTotal, d);
        void* out = inPlace ? send.data() : recv.data();
        comm().allToAllV(send.data(), sc.data(), sd.data(), out, rc.data(), rd.data(), d);
        std::size_t wrong = 0;
        for (int p = 0; p < size(); ++p) {
          for (std::size_t i = 0; i < rc[p]; ++i)
            wrong += load(out, rd[p] + i, d) != tag(p * 16 + rank(), i, d);
        }
        EXPECT_EQ(wrong, 0u) << label(d, n) << " inPlace " << inPlace;
        EXPECT_TRUE(guardIntact(send) && guardIntact(recv)) << label(d, n);
      }
    }
  }
}

TEST_F(Conformance, SendRecvRing) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks";
  const int next = (rank() + 1) % size();
  const int prev = (rank() + size() - 1) % size();
  for (DataType d : kAllDataTypes) {
    for (std::size_t n : sizeClasses()) {
      Bytes out = buffer(n, d);
      Bytes in = buffer(n, d);
      for (std::size_t i = 0; i < n; ++i) store(out.data(), i, tag(rank(), i, d), d);
      // Even ranks send first, odd ranks receive first: no reliance on eager buffering.
      if (rank() % 2 == 0) {
        comm().send(out.data(), n, d, next, 7);
        comm().recv(in.data(), n, d, prev, 7);
      } else {
        comm().recv(in.data(), n, d, prev, 7);
        comm().send(out.data(), n, d, next, 7);
      }
      std::size_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i) wrong += load(in.data(), i, d) != tag(prev, i, d);
      EXPECT_EQ(wrong, 0u) << label(d, n);
      EXPECT_TRUE(guardIntact(out) && guardIntact(in)) << label(d, n);
    }
  }
}

TEST_F(Conformance, BarrierAndLocalRanks) {
  for (int i = 0; i < 10; ++i) comm().barrier();
  EXPECT_GE(comm().localSize(), 1);
  EXPECT_LT(comm().localRank(), comm().localSize());
  int local[2] = {comm().localRank(), comm().localSize()};
  std::vector<int> all(2 * size());
  comm().allGather(local, all.data(), 2, DataType::kI32);
  // All ranks of these tests run on one host.
  for (int r = 0; r < size(); ++r) {
    EXPECT_EQ(all[2 * r], r);
    EXPECT_EQ(all[2 * r + 1], size());
  }
}

TEST_F(Conformance, Split) {
  // Even and odd ranks, ordered by descending key.
  std::unique_ptr<Communicator> half = comm().split(rank() % 2, -rank());
  ASSERT_TRUE(half);
  const int members = (size() + 1 - rank() % 2) / 2;
  EXPECT_EQ(half->size(), members);
  EXPECT_EQ(half->rank(), members - 1 - rank() / 2);
  std::int64_t v = rank();
  half->allReduce(&v, &v, 1, DataType::kI64, ReduceOp::kSum);
  std::int64_t want = 0;
  for (int r = rank() % 2; r < size(); r += 2) want += r;
  EXPECT_EQ(v, want);
  // A negative color takes part and gets nothing.
  std::unique_ptr<Communicator> none = comm().split(rank() == 0 ? -1 : 1, 0);
  EXPECT_EQ(none == nullptr, rank() == 0);
  if (none) {
    EXPECT_EQ(none->size(), size() - 1);
  }
}

}  // namespace
}  // namespace epcomm::test

// Ranks come from the environment (mpirun, or one process), or, with
// EPCOMM_TEST_FORK_RANKS=N, from N forked processes bootstrapped by UniqueId (no mpirun).
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return epcomm::test::runSuiteOnRanks("conformance_test", &epcomm::test::gComm, false);
}
