// Conformance: broadcast: every dtype x size class from every root.
#include <cstdint>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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

}  // namespace
}  // namespace epcomm::test
