// Low-latency mode state: the shape it was sized for, two alternating slots (ll_slot.h) and
// the transport (ll_transport.h). Made at the first low-latency call of a shape (a
// collective call, so the window transport can create its window there).
#pragma once

#include <cstddef>
#include <memory>

#include "comm/communicator.h"
#include "ep/src/ll_slot.h"
#include "ep/src/ll_transport.h"

namespace epcomm::ep {

class LowLatencyState {
 public:
  // Collective when kind is kWindow.
  LowLatencyState(Communicator& comm, const LlShape& shape, LlTransportKind kind);

  const LlShape& shape() const { return shape_; }
  std::size_t footprintBytes() const;
  bool anyPending() const;
  LlSlot& slot(int i) { return slots_[i]; }
  // The slot the next dispatch uses (alternates).
  int nextSlot() const { return next_; }
  void advance() { next_ ^= 1; }
  // Whether the ranks agreed that this shape's transport maps every peer (zero-copy dispatch).
  bool zeroCopyChecked() const { return zeroCopyChecked_; }
  void setZeroCopyChecked() { zeroCopyChecked_ = true; }
  LlTransport& transport() { return *transport_; }

 private:
  LlShape shape_;
  LlSlot slots_[2];
  int next_ = 0;
  bool zeroCopyChecked_ = false;
  std::unique_ptr<LlTransport> transport_;
};

}  // namespace epcomm::ep
