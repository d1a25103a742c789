// A stream of steps of one collective kind: every rank takes part in every step.
//
// Step s (1, 2, ...): begin() hands out this rank's slot of parity s % 2; the rank writes
// its contribution, exchange() posts s on its counter and waits until every peer posted s;
// then peer slots of step s may be read, until the rank's next exchange().
// Invariant: a rank posts s only after it finished reading every slot of step s - 1. So once
// exchange(s - 1) returned (every peer posted s - 1), nobody still reads this rank's slot of
// parity s % 2 (last used at step s - 2): double buffering with no closing barrier.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/shm/segment.h"
#include "backends/shm/wait.h"

namespace epcomm::shm {

class Channel {
 public:
  Channel(Segment& segment, const Waiter& waiter, int kind, int rank, int size);

  // Starts the next step; returns this rank's slot for it (capacity() bytes).
  char* begin();
  // This rank's side data for the current step (kind with data only).
  SlotHeader& header() { return *reinterpret_cast<SlotHeader*>(segment_.at(headerOff(rank_))); }
  // Posts the current step and waits for every peer's (staggered order).
  void exchange(const OpClock& clock);
  // Peer's slot and side data of the current step (valid after exchange()).
  const char* slot(int peer) { return segment_.at(slotOff(peer)); }
  const SlotHeader& header(int peer) {
    return *reinterpret_cast<const SlotHeader*>(segment_.at(headerOff(peer)));
  }
  std::size_t capacity() const { return segment_.layout().slotBytes; }

 private:
  std::size_t slotOff(int r) const {
    return segment_.layout().slotOff(kind_, r, static_cast<int>(step_ & 1));
  }
  std::size_t headerOff(int r) const {
    return segment_.layout().slotHeaderOff(kind_, r, static_cast<int>(step_ & 1));
  }

  Segment& segment_;
  const Waiter& waiter_;
  int kind_;
  int rank_;
  int size_;
  std::uint64_t step_ = 0;  // last step begun; equals this rank's counter after exchange()
};

}  // namespace epcomm::shm
