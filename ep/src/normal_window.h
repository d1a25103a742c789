// Normal mode over one symmetric window (the Buffer's transport is kWindow and a call runs
// in one round): rows go from the sender's memory straight into the receiver's window, with
// no staging copy at the sender and no all-to-all through the backend's buffers.
//
// Layout of every rank's window, per source rank s (s never writes another's region):
//   rows[s]  [capacity, rowBytes]   dispatch: s's token rows for this rank, in token order
//                                   combine: this rank's tokens coming back from s
//   meta[s]  [capacity, metaBytes]  dispatch: s's metadata records; combine: topk weights
// Signals: dispatch(s) = s, combine(s) = R + s, set by s to the call's number after its
// last put (numbers grow by one per window call on every rank; never reset).
//
// Reuse invariant (no acknowledgements needed): every normal call starts with its
// CallAgreement, an all-reduce that no rank leaves before every rank has entered the call, and
// a rank reads its window only inside the call whose puts filled it. So a put of call q+1
// never lands while the receiver still reads what call q put there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "comm/window.h"
#include "ep/src/row_runs.h"

namespace epcomm::ep {

class NormalWindow {
 public:
  // Sizes one call's regions. Collective when the window must grow: every rank passes the
  // same (agreed) values. Returns the call's number, for the signals.
  std::uint64_t begin(Communicator& comm, std::size_t rowBytes, std::size_t metaBytes,
                      std::size_t capacity);
  // Bytes the window needs for these values (for the Buffer's size bound).
  static std::size_t bytesFor(int numRanks, std::size_t rowBytes, std::size_t metaBytes,
                              std::size_t capacity);
  std::size_t footprintBytes() const { return window_ ? window_->bytes() : 0; }

  // Row `index` of this rank's region at peer. Deferred: src must stay unchanged until
  // flushAndSignal(); rows contiguous at both ends go as one put.
  void putRow(int peer, std::size_t index, const void* src);
  // `count` rows / metadata records from index 0 of this rank's region at peer.
  void putRows(int peer, const void* src, std::size_t count);
  void putMeta(int peer, const void* src, std::size_t count);
  // Sends pending rows, then sets signal base + (this rank) of every peer to the call's
  // number; waitAll waits until signal base + s reached it for every peer s.
  void flushAndSignal(int base);
  void waitAll(int base);
  static constexpr int kDispatchSignals = 0;
  int combineSignals() const { return comm_->size(); }

  const std::byte* rows(int src) const { return base() + src * region_; }
  const std::byte* meta(int src) const { return base() + src * region_ + metaAt_; }

 private:
  const std::byte* base() const { return static_cast<const std::byte*>(window_->data()); }
  void flush(int peer);

  Communicator* comm_ = nullptr;
  std::unique_ptr<Window> window_;
  std::size_t rowBytes_ = 0, metaBytes_ = 0, metaAt_ = 0, region_ = 0;
  std::uint64_t calls_ = 0;
  std::vector<RowRun> runs_;  // per peer: rows put as one when contiguous
};

}  // namespace epcomm::ep
