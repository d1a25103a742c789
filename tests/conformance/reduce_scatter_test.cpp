// Conformance: reduceScatter: every dtype x op x size class, in place (own block of send) and out
// of place.
#include <cstdint>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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

}  // namespace
}  // namespace epcomm::test
