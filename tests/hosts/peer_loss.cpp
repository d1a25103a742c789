// A rank that dies mid-run (SIGKILL from tests/hosts/run_on_hosts.sh --kill) must give every
// survivor an error within EPCOMM_TIMEOUT_MS: kPeerLost or kTimeout naming the lost rank
// (EPCOMM_TEST_VICTIM; unset for a dropped link: any peer), never a hang; a later call then fails
// with kInvalidUsage. Survivors exit 0 when that held, 1 otherwise; every loop is bounded in time.
// A failed init (a rank with the wrong EPCOMM_INIT_SECRET, or its peers waiting for it) exits 3,
// naming why. A watchdog thread polls Communicator::waitState and prints the first wait that
// lasts a second ("wait state: <call> waits for rank P"), as an engine's watchdog would.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Polls comm's waitState every 50 ms until destroyed; prints the first wait of >= 1 s.
class Watchdog {
 public:
  explicit Watchdog(const epcomm::Communicator& comm)
      : thread_([this, &comm] {
          while (!done_.load()) {
            const epcomm::Communicator::WaitState w = comm.waitState();
            if (w.waiting && w.seconds >= 1.0) {
              std::fprintf(stderr,
                           "peer_loss: rank %d: wait state: %s waits for rank %d (%.1f s)\n",
                           comm.rank(), w.call.c_str(), w.peer, w.seconds);
              return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }) {}
  ~Watchdog() {
    done_.store(true);
    thread_.join();
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

int main() {
  const char* victimVar = std::getenv("EPCOMM_TEST_VICTIM");
  const int victim = victimVar ? std::atoi(victimVar) : -1;
  std::unique_ptr<epcomm::Communicator> comm;
  try {
    comm = epcomm::Communicator::initFromEnvironment();
  } catch (const epcomm::Error& e) {
    std::fprintf(stderr, "peer_loss: init failed: %s\n", e.what());
    return 3;
  }
  const Watchdog watchdog(*comm);
  const double timeoutS = static_cast<double>(comm->config().timeoutMs) / 1000.0;
  std::vector<float> v(1 << 14, 1.f);
  const Clock::time_point start = Clock::now();
  Clock::time_point lastOk = start;
  try {
    for (long i = 0;; ++i) {
      comm->allReduce(v.data(), v.data(), v.size(), epcomm::DataType::kF32, epcomm::ReduceOp::kMax);
      lastOk = Clock::now();
      if (secondsSince(start) > 120) {
        std::fprintf(stderr, "peer_loss: rank %d: no error after 120 s\n", comm->rank());
        return 1;
      }
    }
  } catch (const epcomm::Error& e) {
    const double detect = secondsSince(lastOk);
    const bool kind =
        e.code() == epcomm::ErrorCode::kPeerLost || e.code() == epcomm::ErrorCode::kTimeout;
    // EPCOMM_TEST_VICTIM unset (a link that drops): any peer named will do.
    const std::string named = victim >= 0 ? "rank " + std::to_string(victim) : "rank";
    const bool names = std::string(e.what()).find(named) != std::string::npos;
    std::fprintf(stderr, "peer_loss: rank %d: error after %.2f s (timeout %.1f s): %s\n",
                 comm->rank(), detect, timeoutS, e.what());
    bool later = false;
    try {
      comm->allReduce(v.data(), v.data(), v.size(), epcomm::DataType::kF32, epcomm::ReduceOp::kMax);
    } catch (const epcomm::Error& again) {
      later = again.code() == epcomm::ErrorCode::kInvalidUsage;
      std::fprintf(stderr, "peer_loss: rank %d: later call: %s\n", comm->rank(), again.what());
    }
    const bool inTime = detect <= timeoutS + 2.0;
    // A serving survivor does not vanish at once; leaving now would make the others see this
    // rank lost before the victim.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    if (kind && (names || e.code() == epcomm::ErrorCode::kTimeout) && later && inTime) {
      std::fprintf(stderr, "peer_loss: rank %d: ok\n", comm->rank());
      return 0;
    }
    std::fprintf(stderr, "peer_loss: rank %d: FAILED (kind %d names %d later %d in time %d)\n",
                 comm->rank(), kind, names, later, inTime);
    return 1;
  }
}
