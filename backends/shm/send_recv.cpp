// Point-to-point: each ordered pair (from, to) has a two-deep mailbox in the segment and two
// counters, chunks posted by `from` and chunks acknowledged by `to`. Chunk c (1, 2, ...)
// goes to parity c % 2; the sender reuses that buffer only once chunk c - 2 was acked.
// Every chunk carries the message's total size, count and tag, so a recv learns how many
// chunks to consume. A send returns once its last chunk is posted (the data is copied).
#include <fmt/format.h>

#include <string>

#include "backends/shm/algorithms.h"
#include "backends/shm/backend.h"
#include "backends/shm/plan.h"
#include "comm/error.h"

namespace epcomm::shm {

void Backend::send(const void* buf, size_t count, int dtype, int peer, int tag) {
  const OpClock clock("send");
  waiter_->checkAborted(clock.op);
  const Layout& l = segment_->layout();
  const std::size_t total = count * dtypeSize(static_cast<DataType>(dtype));
  const std::size_t chunks = std::max<std::size_t>(1, chunkCount(total, l.mailBytes));
  Counter& posted = segment_->counter(l.mailCounterOff(rank_, peer, 0));
  Counter& acked = segment_->counter(l.mailCounterOff(rank_, peer, 1));
  const auto* in = static_cast<const char*>(buf);
  for (std::size_t k = 0; k < chunks; ++k) {
    const std::uint64_t c = ++sentChunks_[peer];
    if (c > 2) waiter_->waitAtLeast(acked, c - 2, peer, clock);
    char* box = segment_->at(l.mailSlotOff(rank_, peer, static_cast<int>(c & 1)));
    auto* h = reinterpret_cast<MailHeader*>(box);
    h->totalBytes = total;
    h->count = count;
    h->tag = tag;
    const Piece p = pieceOf(total, l.mailBytes, k);
    copyBytes(box + sizeof(MailHeader), in + p.lo, p.len);
    Waiter::post(posted, c);
  }
}

void Backend::recv(void* buf, size_t count, int dtype, int peer, int tag) {
  const OpClock clock("recv");
  waiter_->checkAborted(clock.op);
  const Layout& l = segment_->layout();
  const std::size_t expected = count * dtypeSize(static_cast<DataType>(dtype));
  Counter& posted = segment_->counter(l.mailCounterOff(peer, rank_, 0));
  Counter& acked = segment_->counter(l.mailCounterOff(peer, rank_, 1));
  auto* out = static_cast<char*>(buf);
  std::size_t chunks = 1;
  bool match = true;
  std::uint64_t sentCount = 0;
  std::int32_t sentTag = tag;
  for (std::size_t k = 0; k < chunks; ++k) {
    const std::uint64_t c = ++receivedChunks_[peer];
    waiter_->waitAtLeast(posted, c, peer, clock);
    const char* box = segment_->at(l.mailSlotOff(peer, rank_, static_cast<int>(c & 1)));
    const auto* h = reinterpret_cast<const MailHeader*>(box);
    if (k == 0) {
      chunks = std::max<std::size_t>(1, chunkCount(h->totalBytes, l.mailBytes));
      sentCount = h->count;
      sentTag = h->tag;
      match = h->totalBytes == expected && sentTag == tag;
    }
    if (match) {
      const Piece p = pieceOf(expected, l.mailBytes, k);
      copyBytes(out + p.lo, box + sizeof(MailHeader), p.len);
    }
    Waiter::post(acked, c);
  }
  // The mismatched message was consumed whole, so the sender is not left waiting.
  if (sentTag != tag) {
    throwError(ErrorCode::kInvalidArgument, rank_, clock.op,
               fmt::format("rank {} sent tag {}, this recv expects tag {} (the shm backend matches "
                           "messages in order per pair)",
                           peer, sentTag, tag));
  }
  if (!match) {
    throwError(ErrorCode::kInvalidArgument, rank_, clock.op,
               fmt::format("rank {} sent {} elements, this recv expects {}; send and recv must "
                           "pass the same count",
                           peer, sentCount, count));
  }
}

}  // namespace epcomm::shm
