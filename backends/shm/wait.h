// Waiting on a peer's counter: spin briefly, then yield, then sleep on a futex, so that
// 8 ranks on 2 cores still make progress. Every wait checks the communicator's abort flag,
// the operation's deadline (EPCOMM_TIMEOUT_MS) and, every few ms, that the peer it waits
// for is still alive (its pid, published in the segment).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "backends/shm/segment.h"
#include "comm/backend_plugin.h"

namespace epcomm::shm {

// The operation a wait belongs to (for messages). The deadline applies to each wait, so
// a message chunked through many steps is not cut short by its own size.
// One iteration of a spin-wait (pause / yield hint).
inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Asks for `p`'s cache line in exclusive state (a write is coming), so peers' copies are
// invalidated now rather than when the store issues. A hint: no effect on correctness.
// x86: PREFETCHW (executes as a NOP on CPUs without it); elsewhere the compiler's write hint.
inline void prefetchForWrite(const void* p) {
#if defined(__x86_64__) || defined(__i386__)
  asm volatile("prefetchw %0" ::"m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

// A pid that no longer names a running process (gone, or a zombie nobody reaped yet).
bool processGone(pid_t pid);

struct OpClock {
  const char* op;
  explicit OpClock(const char* name) : op(name) {}
};

class Waiter {
 public:
  Waiter(Segment& segment, int rank, std::int64_t timeoutMs);

  // `peer` of a wait whose poster is unknown (a window's signal slot): the slow path checks
  // every other rank's liveness and abort flag.
  static constexpr int kAnyPeer = -1;

  // Returns once seq >= target (acquire); sleepers counts waiters asleep on seq. Throws
  // epcomm::Error: kTimeout when this wait lasted EPCOMM_TIMEOUT_MS, kPeerLost when `peer`
  // (kAnyPeer: any other rank) died or another rank aborted, kInvalidUsage when this rank
  // aborted. The satisfied case costs one load; the slow path spins a while before it reads
  // any clock.
  void waitAtLeast(std::atomic<std::uint64_t>& seq, std::atomic<std::uint32_t>& sleepers,
                   std::uint64_t target, int peer, const OpClock& clock) const {
    if (seq.load(std::memory_order_acquire) >= target) return;
    waitSlow(seq, sleepers, target, peer, clock);
  }
  void waitAtLeast(Counter& c, std::uint64_t target, int peer, const OpClock& clock) const {
    waitAtLeast(c.seq, c.sleepers, target, peer, clock);
  }
  // Returns once *word >= target (acquire), for a word written by `peer` that no futex
  // waiter is registered on (a flag inside a data line), and that the peer writes without
  // waiting for anything first: spins, then yields, then sleeps briefly, with the same
  // abort, deadline and liveness checks and errors as waitAtLeast.
  void waitWord(const std::uint64_t* word, std::uint64_t target, int peer,
                const OpClock& clock) const;
  // While a wait lasts longer than reportMs (0: never), it logs a warning every reportMs
  // naming the call, the rank it waits for and how long (EPCOMM_WAIT_REPORT_S), through log.
  void setReport(std::int64_t reportMs, void (*log)(int level, const char* message)) {
    reportMs_ = reportMs;
    log_ = log;
  }
  // The wait in progress past its spin (any thread may ask): comm/backend.h waitState.
  bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const {
    return record_.read(peer, seconds, op, opLen);
  }
  // More ranks than cpus: waits yield before they sleep; else they spin, then sleep (wait.cpp).
  void setOversubscribed(bool oversubscribed) { oversubscribed_ = oversubscribed; }
  // Throws kInvalidUsage when this rank aborted the communicator.
  void checkAborted(const char* op) const;
  // Marks the communicator aborted by this rank, for itself and its peers; any thread.
  // `reason` (may be null): why, for the peers' messages (comm/backend.h: abortWithReason).
  void abort(const char* reason = nullptr);
  // "communicator was aborted by rank <peer>", with the reason it gave (if any).
  std::string abortedBy(int peer) const;
  // Publishes value (release) and wakes sleepers, if any (no syscall when none sleeps).
  static void post(std::atomic<std::uint64_t>& seq, std::atomic<std::uint32_t>& sleepers,
                   std::uint64_t value) {
    seq.store(value, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) != 0) wake(seq);
  }
  static void post(Counter& c, std::uint64_t value) { post(c.seq, c.sleepers, value); }

 private:
  void waitSlow(std::atomic<std::uint64_t>& seq, std::atomic<std::uint32_t>& sleepers,
                std::uint64_t target, int peer, const OpClock& clock) const;
  // Throws kPeerLost when `peer` (kAnyPeer: any other rank) aborted and seq < target.
  void checkPeerAborted(std::atomic<std::uint64_t>& seq, std::uint64_t target, int peer,
                        const OpClock& clock) const;
  static void wake(std::atomic<std::uint64_t>& seq);
  // Throws kTimeout once this wait (begun at `since`) passed EPCOMM_TIMEOUT_MS.
  void checkPeer(int peer, const OpClock& clock, std::chrono::steady_clock::time_point since,
                 std::chrono::steady_clock::time_point now) const;
  // Throws kPeerLost when `peer` (kAnyPeer: any other rank) died and seq < target.
  void checkPeerAlive(std::atomic<std::uint64_t>& seq, std::uint64_t target, int peer,
                      const OpClock& clock) const;

  // The warning setReport asks for, once `now` is past *next (then moves *next on).
  void report(int peer, const OpClock& clock, std::chrono::steady_clock::time_point since,
              std::chrono::steady_clock::time_point now,
              std::chrono::steady_clock::time_point* next) const;

  Segment& segment_;
  int rank_;
  std::int64_t timeoutMs_;
  std::int64_t reportMs_ = 0;
  void (*log_)(int level, const char* message) = nullptr;
  std::atomic<bool> selfAborted_{false};
  mutable WaitRecord record_;
  bool oversubscribed_ = true;  // until the backend says (the cautious policy)
};

}  // namespace epcomm::shm
