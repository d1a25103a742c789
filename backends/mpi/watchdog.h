// EPCOMM_TIMEOUT_MS for the mpi backend. Blocking MPI calls cannot be interrupted, so a
// process-wide thread watches every backend's call in flight; one that passes its deadline
// (a peer died or never called the collective) is reported, naming the rank and the call,
// and the MPI job is aborted, so no rank hangs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace epcomm::mpi {

// What one backend is doing now; written by the calling thread, read by the watchdog.
class CallClock {
 public:
  CallClock(int rank, std::int64_t timeoutMs, void (*log)(int, const char*));
  ~CallClock();
  CallClock(const CallClock&) = delete;
  CallClock& operator=(const CallClock&) = delete;

  // RAII: marks one MPI call in flight for its lifetime.
  class Scope {
   public:
    Scope(CallClock& clock, const char* op);
    ~Scope();

   private:
    CallClock& clock_;
  };

  // Called by the watchdog: aborts the job when the call in flight is past its deadline.
  void check(std::int64_t nowNs);

 private:
  int rank_;
  std::int64_t timeoutNs_;
  void (*log_)(int, const char*);
  std::atomic<std::int64_t> deadlineNs_{0};  // 0: no call in flight
  std::atomic<const char*> op_{nullptr};
};

std::int64_t steadyNowNs();

}  // namespace epcomm::mpi
