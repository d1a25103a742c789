// Waiting on a peer's counter: spin briefly, then yield, then sleep on a futex, so that
// 8 ranks on 2 cores still make progress. Every wait checks the communicator's abort flag,
// the operation's deadline (EPCOMM_TIMEOUT_MS) and, every few ms, that the peer it waits
// for is still alive (its pid, published in the segment).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "backends/shm/segment.h"

namespace epcomm::shm {

// The operation a wait belongs to (for messages). The deadline applies to each wait, so
// a message chunked through many steps is not cut short by its own size.
struct OpClock {
  const char* op;
  explicit OpClock(const char* name) : op(name) {}
};

class Waiter {
 public:
  Waiter(Segment& segment, int rank, std::int64_t timeoutMs);

  // Returns once c.seq >= target (acquire). Throws epcomm::Error: kTimeout when this wait
  // lasted EPCOMM_TIMEOUT_MS, kPeerLost when `peer` died or another rank aborted, kInvalidUsage
  // when this rank aborted.
  void waitAtLeast(Counter& c, std::uint64_t target, int peer, const OpClock& clock) const;
  // Throws kInvalidUsage when this rank aborted the communicator.
  void checkAborted(const char* op) const;
  // Marks the communicator aborted by this rank, for itself and its peers; any thread.
  void abort();
  // Publishes value (release) and wakes sleepers, if any.
  static void post(Counter& c, std::uint64_t value);

 private:
  // Throws kTimeout once this wait (begun at `since`) passed EPCOMM_TIMEOUT_MS.
  void checkPeer(int peer, const OpClock& clock, std::chrono::steady_clock::time_point since,
                 std::chrono::steady_clock::time_point now) const;

  Segment& segment_;
  int rank_;
  std::int64_t timeoutMs_;
  std::atomic<bool> selfAborted_{false};
};

}  // namespace epcomm::shm
