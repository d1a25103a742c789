// A stream of steps of one collective kind: every rank takes part in every step.
//
// All kinds step through one Stream per communicator (step s = 1, 2, ... counts the steps of
// every collective on it), each kind with its own data slots. Step s: begin() hands out this
// rank's slot of parity s % 2; the rank writes its contribution, exchange() posts s on its
// step line of parity s % 2 and waits until every peer posted s there; then peer slots of
// step s may be read, until the rank's next exchange().
// Invariant: a rank posts s only after it finished reading every slot and line of step
// s - 1. So once exchange(s - 1) returned (every peer posted s - 1), nobody still reads this
// rank's slot or line of parity s % 2 (last used at step s - 2, whatever kind used it):
// double buffering with no closing barrier.
//
// Since every collective's first step goes through the same step lines, the call check
// armed for it (comm/backend.h, EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY) rides on that step:
// ranks that called different collectives at the same point meet on it and both fail.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/shm/segment.h"
#include "backends/shm/wait.h"

namespace epcomm::shm {

// The cross-rank check the next collective's first step carries.
struct ArmedCheck {
  bool armed = false;
  bool valid = true;
  std::int64_t opId = 0;
  int numShapes = 0;
  std::int64_t shape[3] = {};
  const char* op = "";
  const char* shapeName[3] = {};
};

// The step counter every channel of one communicator shares.
struct Stream {
  std::uint64_t step = 0;  // last step begun; equals this rank's posts after exchange()
  ArmedCheck check;
};

class Channel {
 public:
  // Bytes of inline data a step line carries beside its step number.
  static constexpr std::size_t kInlineBytes = sizeof(StepLine::payload);

  Channel(Segment& segment, const Waiter& waiter, Stream& stream, int kind, int rank, int size);

  // Starts the next step; returns this rank's slot for it (capacity() bytes).
  char* begin() {
    ++stream_.step;
    return kind_ < kDataKinds ? segment_.at(slotOff(rank_)) : nullptr;
  }
  // This rank's side data for the current step (kind with data only).
  SlotHeader& header() { return *reinterpret_cast<SlotHeader*>(segment_.at(headerOff(rank_))); }
  // This rank's inline data of the current step (kInlineBytes), posted by exchange().
  unsigned char* inlineData() { return line(rank_).payload; }
  // Posts the current step and waits for every peer's (staggered order). On the first step
  // of a collective with a check armed, compares every rank's record and throws
  // kInvalidArgument (on every rank alike) when one is invalid or they differ.
  void exchange(const OpClock& clock);
  // Peer's slot, side data and inline data of the current step (valid after exchange()).
  const char* slot(int peer) { return segment_.at(slotOff(peer)); }
  const SlotHeader& header(int peer) {
    return *reinterpret_cast<const SlotHeader*>(segment_.at(headerOff(peer)));
  }
  const unsigned char* inlineData(int peer) { return line(peer).payload; }
  std::size_t capacity() const { return segment_.layout().slotBytes; }
  // The current step's number (equal on every rank at the same step).
  std::uint64_t step() const { return stream_.step; }
  // A hint, no effect on correctness: claims for writing the first `bytes` of this rank's
  // slot for the next step (parity of step + 1), which every peer has finished reading once
  // exchange() returned. The peers' copies are invalidated now, in the background, instead
  // of stalling the next step's stores. (Not the step line: peers poll it.)
  void prepareNext(std::size_t bytes) {
    constexpr std::size_t kMaxBytes = 16 << 10;
    const int next = parity() ^ 1;
    if (kind_ >= kDataKinds || bytes == 0 || bytes > kMaxBytes) return;
    const char* p = segment_.at(segment_.layout().slotOff(kind_, rank_, next));
    for (std::size_t off = 0; off < bytes; off += kLine) __builtin_prefetch(p + off, 1, 3);
  }

 private:
  int parity() const { return static_cast<int>(stream_.step & 1); }
  StepLine& line(int r) { return segment_.stepLine(r, parity()); }
  std::size_t slotOff(int r) const { return segment_.layout().slotOff(kind_, r, parity()); }
  std::size_t headerOff(int r) const { return segment_.layout().slotHeaderOff(kind_, r, parity()); }
  // Compares the records every rank posted with the current step; throws on a problem.
  void verify(const ArmedCheck& check);

  Segment& segment_;
  const Waiter& waiter_;
  Stream& stream_;
  int kind_;
  int rank_;
  int size_;
};

}  // namespace epcomm::shm
