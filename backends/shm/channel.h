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
  int matchedPeers = 0;  // peers whose posted record was found equal to this one
};

// The step counter every channel of one communicator shares.
struct Stream {
  std::uint64_t step = 0;  // last step begun; equals this rank's posts after exchange()
  ArmedCheck check;
};

class Channel {
 public:
  Channel(Segment& segment, const Waiter& waiter, Stream& stream, int kind, int rank, int size);

  // Starts the next step; returns this rank's slot for it (capacity() bytes).
  char* begin() {
    ++stream_.step;
    return kind_ < kDataKinds ? segment_.at(slotOff(rank_)) : nullptr;
  }
  // This rank's side data for the current step (kind with data only).
  SlotHeader& header() { return *reinterpret_cast<SlotHeader*>(segment_.at(headerOff(rank_))); }
  // Posts the current step and waits for every peer's (staggered order). On the first step
  // of a collective with a check armed, compares every rank's record and throws
  // kInvalidArgument (on every rank alike) when one is invalid or they differ.
  void exchange(const OpClock& clock) {
    post();
    wait(clock);
  }
  // exchange() in two halves, so a rank can do work of its own (that its peers do not read)
  // while they catch up. After post() this rank's slot of the step is published: it writes
  // it no more, and it must not read peers' slots of the previous step any longer.
  void post();
  void wait(const OpClock& clock);
  // Peer's slot and side data of the current step (valid after exchange()).
  const char* slot(int peer) { return segment_.at(slotOff(peer)); }
  const SlotHeader& header(int peer) {
    return *reinterpret_cast<const SlotHeader*>(segment_.at(headerOff(peer)));
  }
  // Peer's slot of the step before the current one: still readable between begin() and
  // exchange() of the current step (the peer reuses it only after this rank posted).
  const char* previousSlot(int peer) {
    return segment_.at(segment_.layout().slotOff(kind_, peer, parity() ^ 1));
  }
  // Bytes of this rank's slot that begin() hands out. The all-reduce slots keep their last
  // kLineRegionBytes for line mode, so the step flags there are only ever written by line
  // mode (monotonic), never overwritten by other algorithms' data.
  std::size_t capacity() const {
    return segment_.layout().slotBytes - (kind_ == kAllReduceKind ? kLineRegionBytes : 0);
  }

  // The current step's number (equal on every rank at the same step).
  std::uint64_t step() const { return stream_.step; }

  // Line mode, for small messages: each 64-byte line of a slot carries kLinePayload bytes
  // and, in its last 8, the step that wrote it, so a reader learns data and arrival from one
  // cache line and needs no separate step line. The payload starts with the step's call
  // check in 16 bytes (LineRecord), so a reader whose record is bitwise equal need not wait
  // for the step line either (8-40 bytes of data then take one line in all). A step in line
  // mode still posts its step line, after its data lines: it carries the full record, which
  // decides whenever the short ones differ or one is not exact (a shape >= 2^20), and a
  // slow waiter sleeps on it.
  struct LineRecord {
    std::int64_t opId;
    // Bit 0 kCheckPresent, 1 kCheckValid, 2 exact (every shape in [0, 2^20), packed in
    // bits 3-22, 23-42, 43-62); 0 when no check is armed.
    std::uint64_t packed;
  };
  static constexpr std::size_t kLinePayload = kLine - sizeof(std::uint64_t);
  static constexpr std::size_t kLineRegionBytes = 20 * kLine;  // 1120 payload bytes
  // Lines a line-mode step with `bytes` of data takes (its record included).
  static constexpr std::size_t linesFor(std::size_t bytes) {
    return (sizeof(LineRecord) + bytes + kLinePayload - 1) / kLinePayload;
  }
  // Writes the record and `bytes` of data (at most kLineRegionBytes / kLine lines in all)
  // into this rank's slot lines, then posts the current step (all-reduce kind only).
  void postLines(const void* data, std::size_t bytes);
  // Copies peer's `bytes` out of its slot lines of the current step, each as it arrives.
  // Returns false, having stopped, when the peer posted a call check that disagrees with
  // this rank's armed one (its data lines may never come); finishLines() then throws. The
  // peer posts its step line either way (after its data lines, if any).
  bool readLines(int peer, void* dst, std::size_t bytes, const OpClock& clock);
  // After every readLines() of the step: the armed call check, as wait() does (having
  // waited, when a record differed, for the step lines it has not read yet).
  void finishLines(const OpClock& clock);
  // prepareNext() for a line-mode step of `bytes` next.
  void prepareNextLines(std::size_t bytes) {
    const int next = parity() ^ 1;
    prefetchForWrite(&segment_.stepLine(rank_, next));
    const char* p = segment_.at(segment_.layout().slotOff(kind_, rank_, next)) + capacity();
    for (std::size_t off = 0; off < linesFor(bytes) * kLine; off += kLine) {
      prefetchForWrite(p + off);
    }
  }
  // A hint, no effect on correctness: claims for writing this rank's step line and the
  // first `bytes` of its slot for the next step (parity of step + 1), which every peer has
  // finished reading once this step's waits returned. The peers' copies are invalidated now,
  // in the background, instead of stalling the next step's stores.
  void prepareNext(std::size_t bytes) {
    constexpr std::size_t kMaxBytes = 16 << 10;
    const int next = parity() ^ 1;
    prefetchForWrite(&segment_.stepLine(rank_, next));
    if (kind_ >= kDataKinds || bytes > kMaxBytes) return;
    const char* p = segment_.at(segment_.layout().slotOff(kind_, rank_, next));
    for (std::size_t off = 0; off < bytes; off += kLine) prefetchForWrite(p + off);
  }

 private:
  int parity() const { return static_cast<int>(stream_.step & 1); }
  StepLine& line(int r) { return segment_.stepLine(r, parity()); }
  std::size_t slotOff(int r) const { return segment_.layout().slotOff(kind_, r, parity()); }
  std::size_t headerOff(int r) const { return segment_.layout().slotHeaderOff(kind_, r, parity()); }
  // Waits (spin, then the peer's step line, then yield/sleep) until *flag >= current step.
  bool waitFlag(int peer, const std::uint64_t* flag, const OpClock& clock);
  // True when peer's step line of the current step carries a check record that differs
  // from the armed one (invalid, another collective, another shape).
  bool peerDisagrees(int peer) const;
  // Counts peer's posted record (its step line of this step) when it equals the armed one.
  void notePeerRecord(const StepLine& l);
  // The armed check as this rank posts it (flags 0 when none is armed).
  LineRecord armedRecord() const;
  // Disarms the check; verify() unless every peer's record was noted equal.
  void finishCheck();
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
