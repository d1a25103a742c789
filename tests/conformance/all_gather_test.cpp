// Conformance: allGather and allGatherV: every dtype x size class, in place and out of place; V
// with uneven counts and gaps.
#include <cstdint>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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

}  // namespace
}  // namespace epcomm::test
