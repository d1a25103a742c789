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
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/workers.h"

// ThreadSanitizer builds (GCC defines __SANITIZE_THREAD__, clang has the feature).
#if defined(__SANITIZE_THREAD__)
#define EPCOMM_HAS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EPCOMM_HAS_TSAN 1
#endif
#endif
#ifndef EPCOMM_HAS_TSAN
#define EPCOMM_HAS_TSAN 0
#endif

namespace epcomm {
namespace {

// Keeps the arena's worker threads on `cpus` (oneTBB's threads are shared by the process
// and start wherever the OS puts them).
class Confine final : public tbb::task_scheduler_observer {
 public:
  Confine(tbb::task_arena& arena, const cpu_set_t& cpus, bool valid)
      : tbb::task_scheduler_observer(arena), cpus_(cpus), valid_(valid) {
    observe(true);
  }
  ~Confine() override { observe(false); }
  void on_scheduler_entry(bool worker) override {
    if (worker && valid_) sched_setaffinity(0, sizeof cpus_, &cpus_);
  }

 private:
  cpu_set_t cpus_;
  bool valid_;
};

struct Arena {
  // oneTBB caps its workers at the machine's cpus - 1 unless told otherwise; a count the
  // engine or EPCOMM_THREADS asked for is honoured.
  Arena(int threads, const cpu_set_t& on, bool valid)
      : allow(tbb::global_control::max_allowed_parallelism,
              std::max<std::size_t>(
                  static_cast<std::size_t>(threads),
                  tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism))),
        arena(threads),
        cpus(on),
        confine(arena, on, valid) {}
  tbb::global_control allow;
  tbb::task_arena arena;
  cpu_set_t cpus;
  Confine confine;
};

// OMP_NUM_THREADS as a hint for the default (torchrun sets it to 1 per rank): its first
// entry ("8" of "8,4"), or 0 when unset or not a count.
int openMpHint() {
  const std::optional<std::string> v = environmentValue("OMP_NUM_THREADS");
  if (!v) return 0;
  const std::optional<std::int64_t> n = parseInteger(v->substr(0, v->find(',')));
  return n && *n >= 1 ? static_cast<int>(std::min<std::int64_t>(*n, kMaxThreads)) : 0;
}

struct Pool {
  std::mutex mutex;
  int engine = 0;        // setThreads; 0: none
  int environment = 0;   // EPCOMM_THREADS; 0: unset
  int fallback = 1;      // the default
  bool settled = false;  // environment and fallback were read
  cpu_set_t cpus{};      // the process's cpus when a communicator last came up (its binding)
  bool cpusValid = false;
  std::shared_ptr<Arena> arena;
  std::atomic<std::uint64_t> splitLoops{0};

  // Reads the default and the process's cpus (a communicator coming up, after its binding,
  // with its ranks on this host; or the first call before any communicator, with 1).
  void settleLocked(int localSize) {
    CPU_ZERO(&cpus);
    cpusValid = sched_getaffinity(0, sizeof cpus, &cpus) == 0;
    const int owned = cpusValid ? CPU_COUNT(&cpus) : 1;
    const int online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    const int hint = openMpHint();
    fallback =
        hint > 0 ? std::min(hint, std::max(owned, 1)) : defaultThreads(owned, online, localSize);
    settled = true;
    log().debug("worker threads: default {} (OMP_NUM_THREADS {}, {} cpus owned, {} local ranks)",
                fallback, hint, owned, localSize);
  }
  int countLocked() {
    if (!settled) {
      if (const auto v = environmentValue("EPCOMM_THREADS")) {
        const std::optional<std::int64_t> n = parseInteger(*v);
        if (n && *n >= 1 && *n <= kMaxThreads) environment = static_cast<int>(*n);
      }
      settleLocked(1);
    }
    return engine > 0 ? engine : environment > 0 ? environment : fallback;
  }
  // The arena for `threads` on the current cpus, made (or remade) here; callers hold their
  // copy while they run.
  std::shared_ptr<Arena> arenaForLocked(int threads) {
    if (!arena || arena->arena.max_concurrency() != threads || !CPU_EQUAL(&arena->cpus, &cpus)) {
      arena.reset();  // its global_control would cap the new one's threads
      arena = std::make_shared<Arena>(threads, cpus, cpusValid);
    }
    return arena;
  }
};

Pool& pool() {
  static Pool p;
  return p;
}

#if EPCOMM_HAS_TSAN
// ThreadSanitizer builds: plain threads TSan sees, kept for the process's life (never
// joined: a thread ending inside libucm's madvise hook crashes under TSan).
class PlainThreads {
 public:
  // Runs part(0) .. part(count - 1), part(0) on the caller; returns when all ended.
  void run(std::size_t count, const std::function<void(std::size_t)>& part) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (threads_.size() + 1 < count) threads_.emplace_back([this] { serve(); });
    job_ = &part;
    next_ = 1;
    total_ = count;
    finished_ = 1;
    work_.notify_all();
    lock.unlock();
    part(0);
    lock.lock();
    done_.wait(lock, [&] { return finished_ == total_; });
    job_ = nullptr;
  }

 private:
  void serve() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      work_.wait(lock, [&] { return job_ && next_ < total_; });
      const std::function<void(std::size_t)>& part = *job_;
      const std::size_t k = next_++;
      lock.unlock();
      part(k);
      lock.lock();
      if (++finished_ == total_) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable work_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(std::size_t)>* job_ = nullptr;
  std::size_t next_ = 0, total_ = 0, finished_ = 0;
};

PlainThreads& plainThreads() {
  static auto* threads = new PlainThreads;  // never destroyed (see above)
  return *threads;
}
#endif

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
  std::lock_guard<std::mutex> lock(p.mutex);
  if (config.threads > 0) p.environment = config.threads;
  p.settleLocked(localSize);
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

std::uint64_t splitLoops() {
  return pool().splitLoops.load(std::memory_order_relaxed);
}

void parallelFor(std::size_t n, std::size_t unitBytes, std::size_t align,
                 void (*body)(void* arg, std::size_t lo, std::size_t hi), void* arg) {
  if (n == 0) return;
  // A loop too small to split never takes the pool's lock (planParts gives it one part).
  if (!worthSplitting(n, unitBytes)) {
    body(arg, 0, n);
    return;
  }
  Pool& p = pool();
  std::unique_lock<std::mutex> lock(p.mutex);
  const int count = p.countLocked();
  const Parts parts = planParts(n, unitBytes, align, count);
  if (parts.count <= 1) {
    lock.unlock();
    body(arg, 0, n);
    return;
  }
  p.splitLoops.fetch_add(1, std::memory_order_relaxed);
#if EPCOMM_HAS_TSAN
  // ThreadSanitizer cannot see oneTBB's (uninstrumented) hand-offs: its builds run the parts
  // on plain threads, so it checks that the parts stay disjoint without false reports.
  lock.unlock();
  std::exception_ptr failure;
  std::mutex failureMutex;
  plainThreads().run(parts.count, [&](std::size_t k) {
    try {
      const std::size_t lo = k * parts.size;
      body(arg, lo, std::min(n, lo + parts.size));
    } catch (...) {
      std::lock_guard<std::mutex> lock(failureMutex);
      if (!failure) failure = std::current_exception();
    }
  });
  if (failure) std::rethrow_exception(failure);
  return;
#endif
  const std::shared_ptr<Arena> arena = p.arenaForLocked(count);
  lock.unlock();
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
