// The worker pool (comm/workers.h): how loops are cut, the default count, setThreads, and
// that a parallel loop runs every unit exactly once and passes a part's exception on.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "comm/error.h"
#include "comm/src/workers.h"
#include "comm/workers.h"

namespace epcomm {
namespace {

TEST(Workers, PartsCoverTheLoopAlignedAndBounded) {
  for (int threads : {1, 2, 3, 8}) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, std::size_t{131071},
                          std::size_t{131072}, std::size_t{1} << 20, std::size_t{(1 << 20) + 7}}) {
      for (std::size_t align : {std::size_t{1}, std::size_t{16}, std::size_t{64}}) {
        const Parts p = planParts(n, 1, align, threads);
        if (n == 0) {
          EXPECT_EQ(p.count, 0u);
          continue;
        }
        EXPECT_GE(p.count, 1u);
        EXPECT_LE(p.count, static_cast<std::size_t>(threads));
        EXPECT_EQ(p.size % align, 0u) << n << " " << align;
        // The parts cover [0, n) and none is empty.
        EXPECT_GE(p.count * p.size, n);
        EXPECT_LT((p.count - 1) * p.size, n);
        if (n < 2 * kMinPartBytes) {
          EXPECT_EQ(p.count, 1u) << n;
        }
        if (p.count > 1) {
          EXPECT_GE(p.size, kMinPartBytes - align);
        }
      }
    }
  }
  // unitBytes counts: 64 Ki units of 8 bytes split, 64 Ki bytes do not.
  EXPECT_EQ(planParts(1 << 16, 8, 1, 4).count, 4u);
  EXPECT_EQ(planParts(1 << 16, 1, 1, 4).count, 1u);
}

TEST(Workers, DefaultIsTheOwnedCpusCapped) {
  EXPECT_EQ(defaultThreads(1, 2, 2), 1);    // bound to one cpu
  EXPECT_EQ(defaultThreads(2, 2, 2), 1);    // two ranks share an unbound machine
  EXPECT_EQ(defaultThreads(6, 64, 4), 6);   // bound to 6 of 64
  EXPECT_EQ(defaultThreads(16, 64, 4), 8);  // bound to 16 of 64, capped
  EXPECT_EQ(defaultThreads(64, 64, 4), 8);  // 16 each, capped
  EXPECT_EQ(defaultThreads(64, 64, 16), 4);
  EXPECT_EQ(defaultThreads(0, 0, 1), 1);
}

TEST(Workers, SetThreadsWinsAndRejectsBadCounts) {
  setThreads(3);
  EXPECT_EQ(threads(), 3);
  EXPECT_THROW(setThreads(-1), Error);
  EXPECT_THROW(setThreads(kMaxThreads + 1), Error);
  EXPECT_EQ(threads(), 3);
  setThreads(0);
  EXPECT_GE(threads(), 1);
}

TEST(Workers, EveryUnitRunsOnceWhateverTheCount) {
  const std::size_t n = (1 << 20) + 13;
  for (int t : {1, 2, 3}) {
    setThreads(t);
    std::vector<std::atomic<int>> seen(n);
    std::atomic<int> parts{0};
    parallelFor(n, 1, 64, [&](std::size_t lo, std::size_t hi) {
      ++parts;
      EXPECT_EQ(lo % 64, 0u);
      for (std::size_t i = lo; i < hi; ++i) seen[i].fetch_add(1, std::memory_order_relaxed);
    });
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < n; ++i) wrong += seen[i].load() != 1;
    EXPECT_EQ(wrong, 0u) << t << " threads";
    EXPECT_EQ(parts.load(), t) << "a 1 MiB loop takes every thread";
  }
  setThreads(0);
}

TEST(Workers, APartsExceptionReachesTheCaller) {
  setThreads(3);
  EXPECT_THROW(parallelFor(std::size_t{1} << 20, 1, 1,
                           [&](std::size_t lo, std::size_t) {
                             if (lo > 0) throw std::runtime_error("part failed");
                           }),
               std::runtime_error);
  // Still usable.
  std::atomic<std::size_t> total{0};
  parallelFor(std::size_t{1} << 20, 1, 1,
              [&](std::size_t lo, std::size_t hi) { total += hi - lo; });
  EXPECT_EQ(total.load(), std::size_t{1} << 20);
  setThreads(0);
}

}  // namespace
}  // namespace epcomm
