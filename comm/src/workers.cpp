#include "comm/src/workers.h"

#include <fmt/format.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_scheduler_observer.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/workers.h"
#include "topology/topology.h"

namespace epcomm {
namespace {

// Keeps the arena's worker threads on the cpus this process ran on when the arena was made
// (oneTBB's threads are shared by the process and start wherever the OS puts them).
class Confine final : public tbb::task_scheduler_observer {
 public:
  explicit Confine(tbb::task_arena& arena) : tbb::task_scheduler_observer(arena) {
    CPU_ZERO(&cpus_);
    valid_ = sched_getaffinity(0, sizeof cpus_, &cpus_) == 0;
    observe(true);
  }
  ~Confine() override { observe(false); }
  void on_scheduler_entry(bool worker) override {
    if (worker && valid_) sched_setaffinity(0, sizeof cpus_, &cpus_);
  }

 private:
  cpu_set_t cpus_;
  bool valid_ = false;
};

struct Arena {
  // oneTBB caps its workers at the machine's cpus - 1 unless told otherwise; a count the
  // engine or EPCOMM_THREADS asked for is honoured.
  explicit Arena(int threads)
      : allow(tbb::global_control::max_allowed_parallelism,
              std::max<std::size_t>(
                  static_cast<std::size_t>(threads),
                  tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism))),
        arena(threads),
        confine(arena) {}
  tbb::global_control allow;
  tbb::task_arena arena;
  Confine confine;
};

struct Pool {
  std::mutex mutex;
  int engine = 0;        // setThreads; 0: none
  int environment = 0;   // EPCOMM_THREADS of the last communicator; 0: unset
  int fallback = 1;      // the default, settled by the first communicator
  bool settled = false;  // fallback was settled
  std::shared_ptr<Arena> arena;

  int countLocked() const { return engine > 0 ? engine : environment > 0 ? environment : fallback; }
  // The arena for `threads`, made (or remade) here; callers hold their copy while they run.
  std::shared_ptr<Arena> arenaFor(int threads) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!arena || arena->arena.max_concurrency() != threads) {
      arena.reset();  // its global_control would cap the new one's threads
      arena = std::make_shared<Arena>(threads);
    }
    return arena;
  }
};

Pool& pool() {
  static Pool p;
  return p;
}

// OMP_NUM_THREADS as a hint for the default (torchrun sets it to 1 per rank): its first
// entry ("8" of "8,4"), or 0 when unset or not a count.
int openMpHint() {
  const std::optional<std::string> v = environmentValue("OMP_NUM_THREADS");
  if (!v) return 0;
  const std::optional<std::int64_t> n = parseInteger(v->substr(0, v->find(',')));
  return n && *n >= 1 ? static_cast<int>(std::min<std::int64_t>(*n, kMaxThreads)) : 0;
}

}  // namespace

Parts planParts(std::size_t n, std::size_t unitBytes, std::size_t align, int threads) {
  if (n == 0) return {0, 0};
  align = std::max<std::size_t>(align, 1);
  const std::size_t bytes = n * std::max<std::size_t>(unitBytes, 1);
  std::size_t count = std::min<std::size_t>(static_cast<std::size_t>(std::max(threads, 1)),
                                            std::max<std::size_t>(bytes / kMinPartBytes, 1));
  std::size_t size = (n + count - 1) / count;
  size = (size + align - 1) / align * align;
  count = (n + size - 1) / size;
  return {count, size};
}

int defaultThreads(int ownedCpus, int onlineCpus, int localSize) {
  int owned = std::max(ownedCpus, 1);
  if (onlineCpus > 0 && owned >= onlineCpus && localSize > 1) owned /= localSize;
  return std::clamp(owned, 1, kMaxDefaultThreads);
}

void configureThreads(const Config& config, int localSize) {
  Pool& p = pool();
  const int owned = static_cast<int>(topology::processCpus().size());
  const int online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  std::lock_guard<std::mutex> lock(p.mutex);
  p.environment = config.threads;
  const int hint = openMpHint();
  if (!p.settled) {
    p.fallback = hint > 0 ? hint : defaultThreads(owned, online, localSize);
    p.settled = true;
  }
  log().debug(
      "worker threads: {} (EPCOMM_THREADS {}, default {}: OMP_NUM_THREADS {}, {} cpus owned, {} "
      "local ranks)",
      p.countLocked(), config.threads, p.fallback, hint, owned, localSize);
}

int threads() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.countLocked();
}

void setThreads(int n) {
  if (n < 0 || n > kMaxThreads) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("epcomm: setThreads({}): the count must be 0 (EPCOMM_THREADS or the "
                            "default) or 1..{}",
                            n, kMaxThreads));
  }
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.engine = n;
}

void parallelFor(std::size_t n, std::size_t unitBytes, std::size_t align,
                 void (*body)(void* arg, std::size_t lo, std::size_t hi), void* arg) {
  if (n == 0) return;
  const int count = threads();
  const Parts parts = planParts(n, unitBytes, align, count);
  if (parts.count <= 1) {
    body(arg, 0, n);
    return;
  }
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer cannot see oneTBB's (uninstrumented) hand-offs: its builds run the parts
  // on plain threads, so it checks that the parts stay disjoint without false reports.
  std::exception_ptr failure;
  std::mutex failureMutex;
  const auto runPart = [&](std::size_t k) {
    try {
      const std::size_t lo = k * parts.size;
      body(arg, lo, std::min(n, lo + parts.size));
    } catch (...) {
      std::lock_guard<std::mutex> lock(failureMutex);
      if (!failure) failure = std::current_exception();
    }
  };
  std::vector<std::thread> helpers;
  for (std::size_t k = 1; k < parts.count; ++k) helpers.emplace_back(runPart, k);
  runPart(0);
  for (std::thread& t : helpers) t.join();
  if (failure) std::rethrow_exception(failure);
  return;
#endif
  const std::shared_ptr<Arena> arena = pool().arenaFor(count);
  arena->arena.execute([&] {
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, parts.count, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t k = r.begin(); k < r.end(); ++k) {
            const std::size_t lo = k * parts.size;
            body(arg, lo, std::min(n, lo + parts.size));
          }
        },
        tbb::simple_partitioner());
  });
}

extern "C" int epcommBackendParallelFor(std::size_t n, std::size_t unitBytes, std::size_t align,
                                        void (*body)(void* arg, std::size_t lo, std::size_t hi),
                                        void* arg) {
  try {
    parallelFor(n, unitBytes, align, body, arg);
    return 0;
  } catch (const std::exception& e) {
    log().error("a backend's parallel loop failed: {}", e.what());
    return 1;
  } catch (...) {
    log().error("a backend's parallel loop failed");
    return 1;
  }
}

}  // namespace epcomm
