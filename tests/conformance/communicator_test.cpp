// Conformance: barrier, local ranks and split.
#include <cstdint>
#include <memory>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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
