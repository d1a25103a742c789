#include "backends/shm/backend.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "backends/shm/algorithms.h"
#include "comm/error.h"
#include "comm/types.h"

namespace epcomm::shm {
namespace {

constexpr std::size_t kDefaultBufferBytes = std::size_t{64} << 20;

DataType dt(int dtype) {
  return static_cast<DataType>(dtype);
}

}  // namespace

Backend::Backend(const epcommBackendCreateArgs& args)
    : rank_(args.rank),
      size_(args.size),
      timeoutMs_(args.timeoutMs),
      bufferBytes_(args.bufferBytes ? args.bufferBytes : kDefaultBufferBytes) {
  const char* op = "init";
  if (!args.bootstrap && size_ > 1) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               "shm backend: " + std::to_string(size_) + " ranks need a bootstrap all-gather");
  }
  const epcommBackendBootstrap* boot = args.bootstrap;
  const int rank = rank_;
  GatherFn gather = [boot, rank](const void* send, void* recv, std::size_t bytes) {
    if (!boot) {
      std::memcpy(recv, send, bytes);
      return;
    }
    if (boot->allGather(boot->ctx, send, recv, bytes) != 0) {
      throwError(ErrorCode::kPeerLost, rank, "init", "shm backend: bootstrap all-gather failed");
    }
  };
  segment_ = Segment::establish(gather, rank_, size_, 0, rank_, size_, bufferBytes_, op);
  setUp();
}

Backend::Backend(std::unique_ptr<Segment> segment, int rank, int size, std::int64_t timeoutMs,
                 std::size_t bufferBytes)
    : segment_(std::move(segment)),
      rank_(rank),
      size_(size),
      timeoutMs_(timeoutMs),
      bufferBytes_(bufferBytes) {
  setUp();
}

Backend::~Backend() = default;

void Backend::setUp() {
  waiter_ = std::make_unique<Waiter>(*segment_, rank_, timeoutMs_);
  for (int k = 0; k < kKinds; ++k) {
    channels_.push_back(std::make_unique<Channel>(*segment_, *waiter_, k, rank_, size_));
  }
  sentChunks_.assign(static_cast<std::size_t>(size_), 0);
  receivedChunks_.assign(static_cast<std::size_t>(size_), 0);
}

void Backend::abort() {
  waiter_->abort();
}

std::unique_ptr<epcomm::Backend> Backend::split(int color, int key) {
  const char* op = "split";
  waiter_->checkAborted(op);
  // Every rank learns every (color, key); members of a color are ordered by (key, rank).
  std::int32_t mine[2] = {color, key};
  std::vector<std::int32_t> all(2 * static_cast<std::size_t>(size_));
  allGather(mine, all.data(), 2, static_cast<int>(DataType::kI32));
  std::vector<int> members;
  if (color >= 0) {
    for (int r = 0; r < size_; ++r) {
      if (all[2 * r] == color) members.push_back(r);
    }
    std::stable_sort(members.begin(), members.end(),
                     [&](int a, int b) { return all[2 * a + 1] < all[2 * b + 1]; });
  }
  const int childRank =
      color >= 0
          ? static_cast<int>(std::find(members.begin(), members.end(), rank_) - members.begin())
          : -1;
  const int childSize = static_cast<int>(members.size());
  const int leader = color >= 0 ? members.front() : -1;
  // The parent's own all-gather carries the child's bootstrap.
  GatherFn gather = [this](const void* send, void* recv, std::size_t bytes) {
    allGather(send, recv, bytes, static_cast<int>(DataType::kU8));
  };
  std::unique_ptr<Segment> child =
      Segment::establish(gather, rank_, size_, leader, childRank, childSize, bufferBytes_, op);
  if (!child) return nullptr;
  return std::unique_ptr<epcomm::Backend>(
      new Backend(std::move(child), childRank, childSize, timeoutMs_, bufferBytes_));
}

void Backend::allReduce(const void* send, void* recv, size_t count, int dtype, int op) {
  const OpClock clock("allReduce");
  waiter_->checkAborted(clock.op);
  const Step s{channel(kAllReduceKind), clock, rank_, size_};
  if (count * dtypeSize(dt(dtype)) <= kOneShotMaxBytes || size_ == 1) {
    allReduceOneShot(s, send, recv, count, dt(dtype), static_cast<ReduceOp>(op));
  } else {
    allReduceTwoShot(s, send, recv, count, dt(dtype), static_cast<ReduceOp>(op));
  }
}

void Backend::reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) {
  const OpClock clock("reduceScatter");
  waiter_->checkAborted(clock.op);
  shm::reduceScatter(Step{channel(kReduceScatterKind), clock, rank_, size_}, send, recv, recvCount,
                     dt(dtype), static_cast<ReduceOp>(op));
}

void Backend::allGather(const void* send, void* recv, size_t sendCount, int dtype) {
  const OpClock clock("allGather");
  waiter_->checkAborted(clock.op);
  shm::allGather(Step{channel(kAllGatherKind), clock, rank_, size_}, send, recv,
                 sendCount * dtypeSize(dt(dtype)));
}

void Backend::allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                         const size_t* recvDispls, int dtype) {
  const OpClock clock("allGatherV");
  waiter_->checkAborted(clock.op);
  (void)sendCount;  // == recvCounts[rank] (validated)
  shm::allGatherV(Step{channel(kAllGatherKind), clock, rank_, size_}, send, recv, recvCounts,
                  recvDispls, dtypeSize(dt(dtype)));
}

void Backend::broadcast(const void* send, void* recv, size_t count, int dtype, int root) {
  const OpClock clock("broadcast");
  waiter_->checkAborted(clock.op);
  shm::broadcast(Step{channel(kBroadcastKind), clock, rank_, size_}, send, recv,
                 count * dtypeSize(dt(dtype)), root);
}

void Backend::barrier() {
  const OpClock clock("barrier");
  waiter_->checkAborted(clock.op);
  shm::barrier(Step{channel(kBarrierKind), clock, rank_, size_});
}

void Backend::allToAll(const void* send, void* recv, size_t countPerRank, int dtype) {
  const OpClock clock("allToAll");
  waiter_->checkAborted(clock.op);
  shm::allToAll(Step{channel(kAllToAllKind), clock, rank_, size_}, send, recv,
                countPerRank * dtypeSize(dt(dtype)));
}

void Backend::allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls,
                        void* recv, const size_t* recvCounts, const size_t* recvDispls, int dtype) {
  const OpClock clock("allToAllV");
  waiter_->checkAborted(clock.op);
  shm::allToAllV(Step{channel(kAllToAllKind), clock, rank_, size_}, send, sendCounts, sendDispls,
                 recv, recvCounts, recvDispls, dtypeSize(dt(dtype)));
}

}  // namespace epcomm::shm
