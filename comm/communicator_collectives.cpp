// The collective entry points of Communicator: validate locally, agree across ranks
// (EPCOMM_CHECK_ARGS), then call the backend.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "comm/communicator.h"
#include "comm/src/argument_check.h"
#include "comm/src/backend_handle.h"

namespace epcomm {
namespace {

constexpr int kMaxTag = 32767;  // the MPI standard's guaranteed minimum of MPI_TAG_UB

std::int64_t i64(DataType d) {
  return static_cast<std::int64_t>(d);
}
std::int64_t i64(ReduceOp o) {
  return static_cast<std::int64_t>(o);
}
std::int64_t i64(std::size_t n) {
  return static_cast<std::int64_t>(
      std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
}

// Order-sensitive digest of a count array, so ranks can compare arrays in one all-reduce.
std::int64_t digest(const std::size_t* values, int n) {
  std::uint64_t h = kFnvOffset;
  for (int i = 0; i < n; ++i) h = fnvMix(h, values[i]);
  return static_cast<std::int64_t>(h >> 1);
}

// Largest end (displacement + count) over the ranks' blocks, 0 when all are empty.
std::size_t extentOf(const std::size_t* counts, const std::size_t* displs, int n,
                     ArgumentCheck& check, std::size_t maxCount, const char* what) {
  std::size_t extent = 0;
  for (int r = 0; r < n; ++r) {
    check.limit(counts[r], maxCount, what);
    check.limit(displs[r], maxCount, what);
    check.that(displs[r] <= SIZE_MAX - counts[r],
               [&] { return std::string(what) + ": displacement + count overflows"; });
    if (counts[r] && check.ok()) extent = std::max(extent, displs[r] + counts[r]);
  }
  return extent;
}

}  // namespace

void Communicator::allReduce(const void* send, void* recv, std::size_t count, DataType dtype,
                             ReduceOp op) {
  constexpr const char* kOp = "allReduce";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  ArgumentCheck check;
  check.dtype(dtype);
  check.op(op);
  check.limit(count, backend_->maxCountPerCall(), "count");
  check.buffer(send, count, es, "send");
  check.buffer(recv, count, es, "recv");
  check.that(send == recv || !overlaps(send, count * es, recv, count * es),
             "send and recv overlap without being the same buffer (in place)");
  agree(kOp, check, {{"count", i64(count)}, {"dtype", i64(dtype)}, {"op", i64(op)}});
  run(kOp, [&] { backend_->allReduce(send, recv, count, int(dtype), int(op)); });
}

void Communicator::allGather(const void* send, void* recv, std::size_t sendCount, DataType dtype) {
  constexpr const char* kOp = "allGather";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  ArgumentCheck check;
  check.dtype(dtype);
  check.limit(sendCount, backend_->maxCountPerCall(), "sendCount");
  check.buffer(send, sendCount, es, "send");
  check.that(es == 0 || sendCount <= SIZE_MAX / es / size_, "recv size overflows");
  if (check.ok()) {
    check.buffer(recv, sendCount * size_, es, "recv");
    const auto* inPlace = static_cast<const char*>(recv) + es * sendCount * rank_;
    check.that(send == inPlace || !overlaps(send, sendCount * es, recv, sendCount * es * size_),
               "send overlaps recv without being in place (in place: send == recv + rank * "
               "sendCount)");
  }
  agree(kOp, check, {{"sendCount", i64(sendCount)}, {"dtype", i64(dtype)}});
  run(kOp, [&] { backend_->allGather(send, recv, sendCount, int(dtype)); });
}

void Communicator::allGatherV(const void* send, std::size_t sendCount, void* recv,
                              const std::size_t* recvCounts, const std::size_t* recvDispls,
                              DataType dtype) {
  constexpr const char* kOp = "allGatherV";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  ArgumentCheck check;
  check.dtype(dtype);
  check.that(recvCounts != nullptr && recvDispls != nullptr, "recvCounts or recvDispls is null");
  std::int64_t countsDigest = 0;
  if (check.ok()) {
    check.that(recvCounts[rank_] == sendCount, [&] {
      return fmt::format("sendCount {} differs from recvCounts[rank] = {}", sendCount,
                         recvCounts[rank_]);
    });
    check.buffer(send, sendCount, es, "send");
    const std::size_t extent =
        extentOf(recvCounts, recvDispls, size_, check, backend_->maxCountPerCall(), "recv");
    check.buffer(recv, extent, es, "recv");
    const auto* inPlace = static_cast<const char*>(recv) + es * recvDispls[rank_];
    check.that(send == inPlace || !overlaps(send, sendCount * es, recv, extent * es),
               "send overlaps recv without being in place (in place: send == recv + "
               "recvDispls[rank])");
    // Displacements are each rank's own layout; only the counts must agree.
    countsDigest = digest(recvCounts, size_);
  }
  agree(kOp, check, {{"recvCounts (digest)", countsDigest}, {"dtype", i64(dtype)}});
  run(kOp,
      [&] { backend_->allGatherV(send, sendCount, recv, recvCounts, recvDispls, int(dtype)); });
}

void Communicator::reduceScatter(const void* send, void* recv, std::size_t recvCount,
                                 DataType dtype, ReduceOp op) {
  constexpr const char* kOp = "reduceScatter";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  ArgumentCheck check;
  check.dtype(dtype);
  check.op(op);
  check.limit(recvCount, backend_->maxCountPerCall(), "recvCount");
  check.that(es == 0 || recvCount <= SIZE_MAX / es / size_, "send size overflows");
  if (check.ok()) {
    check.buffer(send, recvCount * size_, es, "send");
    check.buffer(recv, recvCount, es, "recv");
    const auto* inPlace = static_cast<const char*>(send) + es * recvCount * rank_;
    check.that(recv == inPlace || !overlaps(send, recvCount * es * size_, recv, recvCount * es),
               "recv overlaps send without being in place (in place: recv == send + rank * "
               "recvCount)");
  }
  agree(kOp, check, {{"recvCount", i64(recvCount)}, {"dtype", i64(dtype)}, {"op", i64(op)}});
  run(kOp, [&] { backend_->reduceScatter(send, recv, recvCount, int(dtype), int(op)); });
}

void Communicator::broadcast(const void* send, void* recv, std::size_t count, DataType dtype,
                             int root) {
  constexpr const char* kOp = "broadcast";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  ArgumentCheck check;
  check.dtype(dtype);
  check.rank(root, size_, "root");
  check.limit(count, backend_->maxCountPerCall(), "count");
  check.buffer(recv, count, es, "recv");
  if (rank_ == root) {
    check.buffer(send, count, es, "send (on the root)");
    check.that(send == recv || !overlaps(send, count * es, recv, count * es),
               "send and recv overlap without being the same buffer (in place)");
  }
  agree(kOp, check, {{"count", i64(count)}, {"dtype", i64(dtype)}, {"root", root}});
  run(kOp, [&] { backend_->broadcast(send, recv, count, int(dtype), root); });
}

void Communicator::barrier() {
  constexpr const char* kOp = "barrier";
  checkUsable(kOp);
  // The agreement's all-reduce already waits for every rank.
  const ArgumentCheck none;
  if (agree(kOp, none, {}) == Agreement::kAgreed) return;
  run(kOp, [&] { backend_->barrier(); });
}

void Communicator::allToAll(const void* send, void* recv, std::size_t countPerRank,
                            DataType dtype) {
  constexpr const char* kOp = "allToAll";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  ArgumentCheck check;
  check.dtype(dtype);
  check.limit(countPerRank, backend_->maxCountPerCall(), "countPerRank");
  check.that(es == 0 || countPerRank <= SIZE_MAX / es / size_, "buffer size overflows");
  if (check.ok()) {
    const std::size_t total = countPerRank * size_;
    check.buffer(send, total, es, "send");
    check.buffer(recv, total, es, "recv");
    check.that(send == recv || !overlaps(send, total * es, recv, total * es),
               "send and recv overlap without being the same buffer (in place)");
  }
  agree(kOp, check, {{"countPerRank", i64(countPerRank)}, {"dtype", i64(dtype)}});
  run(kOp, [&] { backend_->allToAll(send, recv, countPerRank, int(dtype)); });
}

void Communicator::allToAllV(const void* send, const std::size_t* sendCounts,
                             const std::size_t* sendDispls, void* recv,
                             const std::size_t* recvCounts, const std::size_t* recvDispls,
                             DataType dtype) {
  constexpr const char* kOp = "allToAllV";
  checkUsable(kOp);
  const std::size_t es = dtypeSize(dtype);
  const std::size_t maxCount = backend_->maxCountPerCall();
  ArgumentCheck check;
  check.dtype(dtype);
  check.that(sendCounts && sendDispls && recvCounts && recvDispls,
             "a count or displacement array is null");
  if (check.ok()) {
    const std::size_t sendExtent = extentOf(sendCounts, sendDispls, size_, check, maxCount, "send");
    const std::size_t recvExtent = extentOf(recvCounts, recvDispls, size_, check, maxCount, "recv");
    check.buffer(send, sendExtent, es, "send");
    check.buffer(recv, recvExtent, es, "recv");
    if (send == recv) {
      // In place (MPI_IN_PLACE): each block is sent from where its reply lands.
      check.that(std::equal(sendCounts, sendCounts + size_, recvCounts) &&
                     std::equal(sendDispls, sendDispls + size_, recvDispls),
                 "in place needs sendCounts == recvCounts and sendDispls == recvDispls");
    } else {
      check.that(!overlaps(send, sendExtent * es, recv, recvExtent * es),
                 "send and recv overlap without being the same buffer (in place)");
    }
  }
  ArgumentCheck counts;
  if (agree(kOp, check, {{"dtype", i64(dtype)}}) != Agreement::kLocal) {
    // Every rank learns what each peer will send it and compares with its recvCounts.
    static_assert(sizeof(std::size_t) == sizeof(std::int64_t));
    std::vector<std::size_t> sentToMe(static_cast<std::size_t>(size_), 0);
    run(kOp, [&] { backend_->allToAll(sendCounts, sentToMe.data(), 1, int(DataType::kI64)); });
    for (int r = 0; r < size_ && counts.ok(); ++r) {
      counts.that(sentToMe[r] == recvCounts[r], [&] {
        return fmt::format("rank {} sends {} elements but recvCounts[{}] is {}", r, sentToMe[r], r,
                           recvCounts[r]);
      });
    }
    agree(kOp, counts, {});
  }
  run(kOp, [&] {
    backend_->allToAllV(send, sendCounts, sendDispls, recv, recvCounts, recvDispls, int(dtype));
  });
}

// Point to point: checked on this rank only (the peer cannot be asked without a message).
void Communicator::checkPointToPoint(const char* op, const void* buf, std::size_t count,
                                     DataType dtype, int peer, int tag) const {
  checkUsable(op);
  ArgumentCheck check;
  check.dtype(dtype);
  check.rank(peer, size_, "peer");
  check.that(peer != rank_, [&] {
    return fmt::format("peer is this rank ({} to or from self is not supported)", op);
  });
  check.that(tag >= 0 && tag <= kMaxTag,
             [&] { return fmt::format("tag {} is outside 0..32767", tag); });
  check.limit(count, backend_->maxCountPerCall(), "count");
  check.buffer(buf, count, dtypeSize(dtype), "buffer");
  if (!check.ok()) throwError(ErrorCode::kInvalidArgument, rank_, op, check.problem());
}

void Communicator::send(const void* buf, std::size_t count, DataType dtype, int peer, int tag) {
  checkPointToPoint("send", buf, count, dtype, peer, tag);
  run("send", [&] { backend_->send(buf, count, int(dtype), peer, tag); });
}

void Communicator::recv(void* buf, std::size_t count, DataType dtype, int peer, int tag) {
  checkPointToPoint("recv", buf, count, dtype, peer, tag);
  run("recv", [&] { backend_->recv(buf, count, int(dtype), peer, tag); });
}

}  // namespace epcomm
