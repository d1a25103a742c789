// Conformance: send / recv around a ring.
#include <cstdint>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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

}  // namespace
}  // namespace epcomm::test
