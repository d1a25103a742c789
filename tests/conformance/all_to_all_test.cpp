// Conformance: allToAll and allToAllV: every dtype x size class; V with uneven counts.
#include <cstdint>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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

}  // namespace
}  // namespace epcomm::test
