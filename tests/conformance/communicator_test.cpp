// Conformance: barrier, local ranks and split.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

TEST_F(Conformance, BarrierAndLocalRanks) {
  for (int i = 0; i < 10; ++i) comm().barrier();
  EXPECT_GE(comm().localSize(), 1);
  EXPECT_LT(comm().localRank(), comm().localSize());
  // The host each rank runs on: EPCOMM_HOST where tests/hosts/run_on_hosts.sh started it on
  // one of several namespace hosts, else this one host.
  const char* hostVar = std::getenv("EPCOMM_HOST");
  int local[3] = {comm().localRank(), comm().localSize(), hostVar ? std::atoi(hostVar) : 0};
  std::vector<int> all(3 * size());
  comm().allGather(local, all.data(), 3, DataType::kI32);
  for (int r = 0; r < size(); ++r) {
    int before = 0, same = 0;
    for (int q = 0; q < size(); ++q) {
      if (all[3 * q + 2] != all[3 * r + 2]) continue;
      ++same;
      before += q < r;
    }
    EXPECT_EQ(all[3 * r], before) << "rank " << r;
    EXPECT_EQ(all[3 * r + 1], same) << "rank " << r;
  }
  // Hosts are numbered by their lowest rank; the harness starts host 0's ranks first, so
  // that is EPCOMM_HOST.
  int hosts = 0;
  for (int r = 0; r < size(); ++r) hosts = std::max(hosts, all[3 * r + 2] + 1);
  EXPECT_EQ(comm().host(), local[2]);
  EXPECT_EQ(comm().numHosts(), hosts);
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
