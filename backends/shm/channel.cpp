#include "backends/shm/channel.h"

namespace epcomm::shm {

Channel::Channel(Segment& segment, const Waiter& waiter, int kind, int rank, int size)
    : segment_(segment), waiter_(waiter), kind_(kind), rank_(rank), size_(size) {}

char* Channel::begin() {
  ++step_;
  return kind_ < kDataKinds ? segment_.at(slotOff(rank_)) : nullptr;
}

void Channel::exchange(const OpClock& clock) {
  const Layout& l = segment_.layout();
  Waiter::post(segment_.counter(l.counterOff(kind_, rank_)), step_);
  for (int i = 1; i < size_; ++i) {
    const int peer = (rank_ + i) % size_;
    waiter_.waitAtLeast(segment_.counter(l.counterOff(kind_, peer)), step_, peer, clock);
  }
}

}  // namespace epcomm::shm
