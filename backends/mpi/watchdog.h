// EPCOMM_TIMEOUT_MS for the mpi backend. Blocking MPI calls cannot be interrupted, so a
// process-wide thread watches every backend's call in flight; one that passes its deadline
// (a peer died or never called the collective) is reported, naming the rank and the call,
// and the MPI job is aborted, so no rank hangs. Before that, a call that lasts is reported in
// the log every EPCOMM_WAIT_REPORT_S, and its wait is readable (waitState) from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "comm/backend_plugin.h"

namespace epcomm::mpi {

// What one backend is doing now; written by the calling thread, read by the watchdog.
class CallClock {
 public:
  CallClock(int rank, std::int64_t timeoutMs, std::int64_t reportMs, void (*log)(int, const char*));
  ~CallClock();
  CallClock(const CallClock&) = delete;
  CallClock& operator=(const CallClock&) = delete;

  // RAII: marks one MPI call in flight for its lifetime.
  class Scope {
   public:
    Scope(CallClock& clock, const char* op);
    ~Scope();

   private:
    // The clock, its call count raised first (before the record shows the new call).
    static CallClock& counted(CallClock& clock) {
      clock.calls_.fetch_add(1, std::memory_order_relaxed);
      return clock;
    }
    CallClock& clock_;
    WaitRecord::Scope recording_;  // peer -1: MPI does not say which rank it waits for
  };

  // Called by the watchdog: reports a call that lasts (every reportMs), and aborts the job
  // when the call in flight is past its deadline.
  void check(std::int64_t nowNs);
  // The call in flight (comm/backend.h: waitState).
  bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const {
    return record_.read(peer, seconds, op, opLen);
  }

 private:
  int rank_;
  std::int64_t timeoutNs_;
  void (*log_)(int, const char*);
  std::atomic<std::int64_t> deadlineNs_{0};  // 0: no call in flight
  std::atomic<const char*> op_{nullptr};
  std::int64_t reportNs_;
  mutable WaitRecord record_;
  // The watchdog's own: the call it last reported on and when it reports next.
  std::atomic<std::uint64_t> calls_{0};
  std::uint64_t reportedCall_ = 0;
  std::int64_t nextReportNs_ = 0;
};

std::int64_t steadyNowNs();

}  // namespace epcomm::mpi
