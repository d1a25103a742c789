// Conformance: allReduce: every dtype x op x size class, in place and out of place.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

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

// The backend names the algorithm it ran (shm: its table, all_reduce_algorithms.h), and
// EPCOMM_SHM_ALLREDUCE forces one wherever it can run.
// The mpi backend carries an all-reduce inside its call check's message when the data fits
// EPCOMM_MPI_CHECK_FOLD_BYTES (and the check is on), else in its own MPI_Allreduce.
TEST_F(Conformance, MpiFoldsSmallAllReducesIntoTheCheck) {
  if (comm().backendName() != "mpi" || size() < 2) GTEST_SKIP() << "the mpi backend's fold";
  const bool check = comm().config().checkArgs;
  const std::int64_t fold = comm().config().integer("EPCOMM_MPI_CHECK_FOLD_BYTES");
  for (std::size_t n : {std::size_t{2}, std::size_t{1} << 10}) {
    std::vector<float> v(n, 1.f);
    comm().allReduce(v.data(), v.data(), n, DataType::kF32, ReduceOp::kSum);
    const bool folds = check && static_cast<std::int64_t>(n * sizeof(float)) <= fold;
    EXPECT_EQ(comm().lastAlgorithm(), folds ? "check-folded" : "MPI_Allreduce") << n;
    EXPECT_EQ(v[n - 1], static_cast<float>(size()));
  }
}

// The ucx backend carries an all-reduce inside its call check's exchange when the data fits
// EPCOMM_UCX_CHECK_FOLD_BYTES (and the check is on), else runs its own algorithm.
TEST_F(Conformance, UcxFoldsSmallAllReducesIntoTheCheck) {
  if (comm().backendName() != "ucx" || size() < 2) GTEST_SKIP() << "the ucx backend's fold";
  const bool check = comm().config().checkArgs;
  const std::int64_t fold = comm().config().integer("EPCOMM_UCX_CHECK_FOLD_BYTES");
  for (std::size_t n : {std::size_t{2}, std::size_t{1} << 10}) {
    std::vector<float> v(n, 1.f);
    comm().allReduce(v.data(), v.data(), n, DataType::kF32, ReduceOp::kSum);
    const bool folds = check && static_cast<std::int64_t>(n * sizeof(float)) <= fold;
    const std::string ran = comm().lastAlgorithm();
    if (folds) {
      EXPECT_EQ(ran, "check-folded") << n;
    } else {
      EXPECT_TRUE(ran == "recursive_doubling" || ran == "ring") << n << " ran " << ran;
    }
    EXPECT_EQ(v[n - 1], static_cast<float>(size()));
  }
}

TEST_F(Conformance, AllReduceAlgorithmIsReported) {
  if (comm().backendName() != "shm" || size() < 2) GTEST_SKIP() << "shm's algorithm table";
  const std::string forced = comm().config().text("EPCOMM_SHM_ALLREDUCE");
  // 512 KiB: above auto's one-shot limit also when ranks outnumber the cpus (256 KiB).
  for (std::size_t n : {std::size_t{2}, std::size_t{1} << 10, std::size_t{1} << 17}) {
    std::vector<float> v(n, 1.f);
    comm().allReduce(v.data(), v.data(), n, DataType::kF32, ReduceOp::kSum);
    const std::string ran = comm().lastAlgorithm();
    EXPECT_TRUE(ran == "lines" || ran == "oneshot" || ran == "twoshot") << ran;
    // twoshot and oneshot run at any size on 2+ ranks; lines only where it fits.
    if (forced == "twoshot" || forced == "oneshot") {
      EXPECT_EQ(ran, forced) << n;
    }
    if (forced == "lines" && n == 2) {
      EXPECT_EQ(ran, "lines");
    }
    if (forced == "auto" && n == (std::size_t{1} << 17)) {
      EXPECT_EQ(ran, "twoshot");
    }
    EXPECT_EQ(v[n - 1], static_cast<float>(size()));
  }
}

}  // namespace
}  // namespace epcomm::test
