// Bad input through the Communicator: each gives a clear epcomm::Error on every rank that
// names the operation and what was wrong; nothing crashes or hangs; the communicator stays
// usable after an argument error that all ranks agreed on.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "tests/conformance/conformance.h"

namespace epcomm::test {
namespace {

class Errors : public Conformance {};

TEST_F(Errors, NullBufferOnOneRank) {
  float data[4] = {};
  const int bad = size() - 1;
  expectError(
      [&] {
        comm().allReduce(rank() == bad ? nullptr : data, data, 4, DataType::kF32, ReduceOp::kSum);
      },
      ErrorCode::kInvalidArgument,
      {"allReduce", rank() == bad ? "send buffer is null" : "rank " + std::to_string(bad)});
  expectUsable();
}

// Every all-reduce algorithm size (inline, line mode, one-shot, two-shot): a bad rank, a
// count mismatch and a different collective are errors on every rank, never a wait.
TEST_F(Errors, AllReduceMismatchAtEverySize) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks";
  for (const std::size_t count :
       {std::size_t{4}, std::size_t{64}, std::size_t{1000}, std::size_t{100000}}) {
    SCOPED_TRACE("count " + std::to_string(count));
    std::vector<float> a(count, 1.0f), b(count);
    const int bad = size() - 1;
    expectError(
        [&] {
          comm().allReduce(rank() == bad ? nullptr : a.data(), b.data(), count, DataType::kF32,
                           ReduceOp::kSum);
        },
        ErrorCode::kInvalidArgument,
        {"allReduce", rank() == bad ? "send buffer is null" : "rank " + std::to_string(bad)});
    expectError(
        [&] {
          comm().allReduce(a.data(), b.data(), rank() == 0 ? count / 2 : count, DataType::kF32,
                           ReduceOp::kSum);
        },
        ErrorCode::kInvalidArgument, {"allReduce", "ranks disagree on count"});
    expectError(
        [&] {
          if (rank() == 0) {
            comm().broadcast(a.data(), b.data(), count, DataType::kF32, 0);
          } else {
            comm().allReduce(a.data(), b.data(), count, DataType::kF32, ReduceOp::kSum);
          }
        },
        ErrorCode::kInvalidArgument, {"different collectives"});
    expectUsable();
  }
}

TEST_F(Errors, NullBufferOnEveryCollective) {
  std::vector<int> a(8 * size()), b(8 * size());
  std::vector<std::size_t> counts(size(), 2), displs(size());
  for (int r = 0; r < size(); ++r) displs[r] = 2 * r;
  int* none = nullptr;
  const std::vector<std::pair<const char*, std::function<void()>>> calls = {
      {"allReduce", [&] { comm().allReduce(a.data(), none, 4, DataType::kI32, ReduceOp::kMax); }},
      {"allGather", [&] { comm().allGather(none, b.data(), 2, DataType::kI32); }},
      {"allGatherV",
       [&] { comm().allGatherV(a.data(), 2, none, counts.data(), displs.data(), DataType::kI32); }},
      {"reduceScatter",
       [&] { comm().reduceScatter(none, b.data(), 2, DataType::kI32, ReduceOp::kSum); }},
      {"broadcast", [&] { comm().broadcast(a.data(), none, 4, DataType::kI32, 0); }},
      {"allToAll", [&] { comm().allToAll(a.data(), none, 2, DataType::kI32); }},
      {"allToAllV",
       [&] {
         comm().allToAllV(none, counts.data(), displs.data(), b.data(), counts.data(),
                          displs.data(), DataType::kI32);
       }},
  };
  for (const auto& [name, call] : calls) {
    expectError(call, ErrorCode::kInvalidArgument, {name, "is null"});
  }
  expectUsable();
}

TEST_F(Errors, DifferentCollectivesAtTheSamePoint) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<int> a(4 * size()), b(4 * size());
  expectError(
      [&] {
        if (rank() == 0) {
          comm().allReduce(a.data(), b.data(), 4, DataType::kI32, ReduceOp::kSum);
        } else {
          comm().allGather(a.data(), b.data(), 4, DataType::kI32);
        }
      },
      ErrorCode::kInvalidArgument, {"different collectives"});
  expectError(
      [&] {
        if (rank() == 0) {
          comm().barrier();
        } else {
          comm().allReduce(a.data(), b.data(), 4, DataType::kI32, ReduceOp::kSum);
        }
      },
      ErrorCode::kInvalidArgument, {"different collectives"});
  expectUsable();
}

TEST_F(Errors, UnknownDtypeAndOp) {
  int data[4] = {};
  expectError([&] { comm().allReduce(data, data, 4, static_cast<DataType>(42), ReduceOp::kSum); },
              ErrorCode::kInvalidArgument, {"allReduce", "unknown data type 42"});
  expectError([&] { comm().allReduce(data, data, 4, DataType::kI32, static_cast<ReduceOp>(17)); },
              ErrorCode::kInvalidArgument, {"allReduce", "unknown reduce op 17"});
  expectError([&] { comm().allGather(data, data, 1, static_cast<DataType>(-1)); },
              ErrorCode::kInvalidArgument, {"allGather", "unknown data type"});
  std::vector<int> big(4 * size());
  expectError(
      [&] { comm().reduceScatter(big.data(), data, 1, DataType::kI32, static_cast<ReduceOp>(-2)); },
      ErrorCode::kInvalidArgument, {"reduceScatter", "unknown reduce op -2"});
  expectError([&] { comm().allToAll(big.data(), big.data(), 1, static_cast<DataType>(3)); },
              ErrorCode::kInvalidArgument, {"allToAll", "unknown data type 3"});
  expectUsable();
}

TEST_F(Errors, InvalidRootAndPeer) {
  int data[4] = {};
  expectError([&] { comm().broadcast(data, data, 4, DataType::kI32, size()); },
              ErrorCode::kInvalidArgument, {"broadcast", "root " + std::to_string(size())});
  expectError([&] { comm().broadcast(data, data, 4, DataType::kI32, -1); },
              ErrorCode::kInvalidArgument, {"broadcast", "root -1"});
  expectError([&] { comm().send(data, 4, DataType::kI32, size(), 0); }, ErrorCode::kInvalidArgument,
              {"send", "peer " + std::to_string(size())});
  expectError([&] { comm().recv(data, 4, DataType::kI32, -3, 0); }, ErrorCode::kInvalidArgument,
              {"recv", "peer -3"});
  expectError([&] { comm().send(data, 4, DataType::kI32, rank(), 0); }, ErrorCode::kInvalidArgument,
              {"send", "this rank"});
  expectUsable();
}

TEST_F(Errors, CountMismatchAcrossRanks) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<float> data(64, 1.0f);
  expectError(
      [&] {
        comm().allReduce(data.data(), data.data(), rank() == 0 ? 33 : 32, DataType::kF32,
                         ReduceOp::kSum);
      },
      ErrorCode::kInvalidArgument, {"allReduce", "disagree"});
  // An empty call on one rank against a non-empty one elsewhere (at most 8 ranks x 4 fit).
  expectError(
      [&] { comm().allGather(data.data(), data.data() + 32, rank() == 0 ? 0 : 4, DataType::kF32); },
      ErrorCode::kInvalidArgument, {"allGather", "disagree"});
  expectError(
      [&] {
        comm().allReduce(data.data(), data.data(), 8, rank() == 0 ? DataType::kF32 : DataType::kI32,
                         ReduceOp::kSum);
      },
      // Data types by name, on every rank.
      ErrorCode::kInvalidArgument, {"allReduce", "disagree", "i32 (2)", "f32 (7)"});
  expectError(
      [&] { comm().broadcast(data.data(), data.data(), 8, DataType::kF32, rank() == 0 ? 1 : 0); },
      ErrorCode::kInvalidArgument, {"broadcast", "disagree"});
  // All-to-all-v: rank 0 claims to receive one element more from rank 1 than rank 1 sends.
  std::vector<std::size_t> sc(size(), 2), sd(size()), rc(size(), 2), rd(size());
  for (int p = 0; p < size(); ++p) sd[p] = rd[p] = 4 * p;
  if (rank() == 0) rc[1] = 3;
  std::vector<float> in(4 * size()), out(4 * size());
  expectError(
      [&] {
        comm().allToAllV(in.data(), sc.data(), sd.data(), out.data(), rc.data(), rd.data(),
                         DataType::kF32);
      },
      ErrorCode::kInvalidArgument, {"allToAllV"});
  expectUsable();
}

TEST_F(Errors, RecvCountMismatch) {
  if (size() < 2) GTEST_SKIP() << "needs two ranks";
  std::vector<int> data(16, 5);
  if (rank() == 0) {
    comm().send(data.data(), 10, DataType::kI32, 1, 3);
  } else if (rank() == 1) {
    expectError([&] { comm().recv(data.data(), 12, DataType::kI32, 0, 3); },
                ErrorCode::kInvalidArgument, {"recv", "sent 10", "expects 12"});
  }
}

TEST_F(Errors, UseAfterAbort) {
  std::unique_ptr<Communicator> child = comm().split(0, rank());
  ASSERT_TRUE(child);
  child->abort();
  EXPECT_TRUE(child->aborted());
  int v = 0;
  expectError([&] { child->allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum); },
              ErrorCode::kInvalidUsage, {"allReduce", "aborted"});
  expectError([&] { child->barrier(); }, ErrorCode::kInvalidUsage, {"barrier", "aborted"});
  expectUsable();
}

TEST_F(Errors, OverlappingBuffers) {
  std::vector<float> data(64 * size(), 0.0f);
  expectError(
      [&] { comm().allReduce(data.data(), data.data() + 1, 8, DataType::kF32, ReduceOp::kSum); },
      ErrorCode::kInvalidArgument, {"allReduce", "overlap"});
  expectError([&] { comm().allToAll(data.data(), data.data() + 1, 2, DataType::kF32); },
              ErrorCode::kInvalidArgument, {"allToAll", "overlap"});
  // In-place all-to-all-v must send each block from where its reply lands.
  std::vector<std::size_t> sc(size(), 2), sd(size()), rd(size());
  for (int p = 0; p < size(); ++p) {
    sd[p] = 2 * p;
    rd[p] = 4 * p + 1;
  }
  expectError(
      [&] {
        comm().allToAllV(data.data(), sc.data(), sd.data(), data.data(), sc.data(), rd.data(),
                         DataType::kF32);
      },
      ErrorCode::kInvalidArgument, {"allToAllV", "in place needs"});
  expectUsable();
}

}  // namespace
}  // namespace epcomm::test
