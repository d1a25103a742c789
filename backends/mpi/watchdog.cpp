#include "backends/mpi/watchdog.h"

#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace epcomm::mpi {
namespace {

// One thread for every backend of the process; started with the first, stopped at exit.
class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog watchdog;
    return watchdog;
  }

  void watch(CallClock* clock) {
    std::lock_guard<std::mutex> lock(mutex_);
    clocks_.push_back(clock);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
  }

  void unwatch(CallClock* clock) {
    std::lock_guard<std::mutex> lock(mutex_);
    clocks_.erase(std::remove(clocks_.begin(), clocks_.end(), clock), clocks_.end());
  }

  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      wake_.wait_for(lock, std::chrono::milliseconds(50));
      const std::int64_t now = steadyNowNs();
      for (CallClock* clock : clocks_) clock->check(now);
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<CallClock*> clocks_;
  std::thread thread_;
  bool stop_ = false;
};

}  // namespace

std::int64_t steadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

CallClock::CallClock(int rank, std::int64_t timeoutMs, std::int64_t reportMs,
                     void (*log)(int, const char*))
    : rank_(rank),
      timeoutNs_(std::max<std::int64_t>(timeoutMs, 0) * 1000000),
      log_(log),
      reportNs_(std::max<std::int64_t>(reportMs, 0) * 1000000) {
  Watchdog::instance().watch(this);
}

CallClock::~CallClock() {
  Watchdog::instance().unwatch(this);
}

CallClock::Scope::Scope(CallClock& clock, const char* op)
    : clock_(counted(clock)), recording_(clock.record_, op, -1) {
  clock_.op_.store(op, std::memory_order_relaxed);
  // EPCOMM_TIMEOUT_MS=0: no deadline (0 is "not in a call" to check()).
  clock_.deadlineNs_.store(clock_.timeoutNs_ > 0 ? steadyNowNs() + clock_.timeoutNs_ : 0,
                           std::memory_order_release);
}

CallClock::Scope::~Scope() {
  clock_.deadlineNs_.store(0, std::memory_order_release);
}

void CallClock::check(std::int64_t nowNs) {
  int peer = -1;
  double waited = 0;
  const char* waiting = nullptr;
  if (reportNs_ > 0 && log_ && record_.read(&peer, &waited, &waiting)) {
    const std::uint64_t call = calls_.load(std::memory_order_relaxed);
    if (call != reportedCall_) {  // a new call: its first report after reportNs
      reportedCall_ = call;
      nextReportNs_ = nowNs - static_cast<std::int64_t>(waited * 1e9) + reportNs_;
    }
    if (nowNs >= nextReportNs_) {
      nextReportNs_ = nowNs + reportNs_;
      const std::string message =
          waitReportText(rank_, waiting, waited, "its peers (MPI does not say which rank)",
                         timeoutNs_ / 1000000, reportNs_ / 1000000);
      log_(3, message.c_str());
    }
  }
  const std::int64_t deadline = deadlineNs_.load(std::memory_order_acquire);
  if (deadline == 0 || nowNs < deadline) return;
  const char* op = op_.load(std::memory_order_relaxed);
  const std::string message = fmt::format(
      "epcomm rank {}: {}: timeout: no completion within EPCOMM_TIMEOUT_MS={} ms (a peer died, or "
      "did not make the same call); the mpi backend cannot cancel a blocking MPI call, so it "
      "aborts the MPI job",
      rank_, op ? op : "mpi call", timeoutNs_ / 1000000);
  if (log_) log_(4, message.c_str());
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 124);
}

}  // namespace epcomm::mpi
