#include "backends/shm/wait.h"

#include <fmt/format.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "comm/backend.h"
#include "comm/backend_plugin.h"
#include "comm/error.h"

static_assert(std::endian::native == std::endian::little, "the futex word is the low half");

namespace epcomm::shm {
namespace {

constexpr int kSpins = 512;         // pause iterations before yielding
constexpr int kYields = 64;         // sched_yield iterations before sleeping
constexpr long kSleepNs = 1000000;  // futex sleep: 1 ms, so a lost wake costs little
constexpr auto kLivenessPeriod = std::chrono::milliseconds(5);
// Ranks no more than cpus: after the first spins a wait keeps spinning this long before it
// sleeps, and never yields: on a busy machine sched_yield hands the core to any runnable task
// (a background compile, an idle pool thread) for up to a time slice, which is what a wait
// that sleeps on a futex (and is woken with preemption) does not pay. Oversubscribed ranks
// yield instead, so every rank progresses.
// 200 us measured best of 0 (yield), 50 and 200 under two nice-19 busy loops
// (docs/performance.md, "Latency on a busy machine").
constexpr auto kSpinBudget = std::chrono::microseconds(200);

}  // namespace

bool processGone(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) == -1 && errno == ESRCH) return true;
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return false;
  char buf[256] = {};
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  // "pid (comm) S ...": the state follows the last ')'.
  const std::string s(buf, n);
  const size_t close = s.rfind(')');
  if (close == std::string::npos || close + 2 >= s.size()) return false;
  const char state = s[close + 2];
  return state == 'Z' || state == 'X';
}

Waiter::Waiter(Segment& segment, int rank, std::int64_t timeoutMs)
    : segment_(segment), rank_(rank), timeoutMs_(timeoutMs) {}

void Waiter::abort(const char* reason) {
  // The first call publishes: its reason, then the flag (a peer that sees the flag reads
  // the reason whole). A later or concurrent call changes nothing.
  if (selfAborted_.exchange(true)) return;
  RankInfo& mine = segment_.rankInfo(rank_);
  if (reason) {
    const std::size_t n = std::min(std::strlen(reason), RankInfo::kReasonBytes - 1);
    std::memcpy(mine.abortReason, reason, n);
    mine.abortReason[n] = '\0';
  }
  mine.aborted.store(1);
}

std::string Waiter::abortedBy(int peer) const {
  const RankInfo& info = segment_.rankInfo(peer);
  const std::size_t n = strnlen(info.abortReason, RankInfo::kReasonBytes - 1);
  std::string text = fmt::format("communicator was aborted by rank {}", peer);
  if (n > 0) {
    text += EPCOMM_ABORT_REASON_MARK;
    text.append(info.abortReason, n);
  }
  return text;
}

void Waiter::checkAborted(const char* op) const {
  if (selfAborted_.load(std::memory_order_relaxed)) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               fmt::format("communicator was aborted by rank {} (this rank)", rank_));
  }
}

void Waiter::checkPeer(int peer, const OpClock& clock, std::chrono::steady_clock::time_point since,
                       std::chrono::steady_clock::time_point now) const {
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(now - since).count();
  if (timeoutMs_ > 0 && waited >= timeoutMs_) {
    const std::string whom =
        peer == kAnyPeer ? "a signal from any rank" : fmt::format("rank {}", peer);
    throwError(ErrorCode::kTimeout, rank_, clock.op,
               fmt::format("waited {} ms for {} (EPCOMM_TIMEOUT_MS={})", waited, whom, timeoutMs_));
  }
}

void Waiter::report(int peer, const OpClock& clock, std::chrono::steady_clock::time_point since,
                    std::chrono::steady_clock::time_point now,
                    std::chrono::steady_clock::time_point* next) const {
  if (reportMs_ <= 0 || !log_ || now < *next) return;
  *next = now + std::chrono::milliseconds(reportMs_);
  const std::string whom =
      peer == kAnyPeer ? "a signal from any rank" : fmt::format("rank {}", peer);
  const std::string message =
      waitReportText(rank_, clock.op, std::chrono::duration<double>(now - since).count(), whom,
                     timeoutMs_, reportMs_);
  log_(3, message.c_str());  // warning
}

void Waiter::checkPeerAborted(std::atomic<std::uint64_t>& seq, std::uint64_t target, int peer,
                              const OpClock& clock) const {
  // The peer may have posted and then aborted or died: its flag is read first, then the
  // counter again, so a post that came before the abort is never missed.
  const int size = segment_.layout().size;
  for (int r = peer == kAnyPeer ? 0 : peer; r < (peer == kAnyPeer ? size : peer + 1); ++r) {
    if (r == rank_ && peer == kAnyPeer) continue;
    if (segment_.rankInfo(r).aborted.load(std::memory_order_acquire) != 0) {
      if (seq.load(std::memory_order_acquire) >= target) return;
      throwError(ErrorCode::kPeerLost, rank_, clock.op, abortedBy(r));
    }
  }
}

void Waiter::checkPeerAlive(std::atomic<std::uint64_t>& seq, std::uint64_t target, int peer,
                            const OpClock& clock) const {
  const int size = segment_.layout().size;
  for (int r = peer == kAnyPeer ? 0 : peer; r < (peer == kAnyPeer ? size : peer + 1); ++r) {
    if (r == rank_ && peer == kAnyPeer) continue;
    if (processGone(segment_.pid(r))) {
      if (seq.load(std::memory_order_acquire) >= target) return;
      throwError(ErrorCode::kPeerLost, rank_, clock.op,
                 fmt::format("rank {} (pid {}) died", r, segment_.pid(r)));
    }
  }
}

void Waiter::waitSlow(std::atomic<std::uint64_t>& seq, std::atomic<std::uint32_t>& sleepers,
                      std::uint64_t target, int peer, const OpClock& clock) const {
  // Spin first without reading any clock: a peer a few hundred ns behind costs nothing more.
  for (int iter = 0; iter < kSpins; ++iter) {
    if (seq.load(std::memory_order_acquire) >= target) return;
    cpuRelax();
    if ((iter & 63) == 63) {
      checkAborted(clock.op);
      checkPeerAborted(seq, target, peer, clock);
    }
  }
  const auto since = std::chrono::steady_clock::now();
  const WaitRecord::Scope recording(record_, clock.op, peer);
  auto lastLiveness = since;
  auto nextReport = since + std::chrono::milliseconds(reportMs_);
  auto now = since;
  for (int iter = 0;; ++iter) {
    const std::uint64_t v = seq.load(std::memory_order_acquire);
    if (v >= target) return;
    if (!oversubscribed_ && now - since < kSpinBudget) {
      for (int i = 0; i < 64; ++i) cpuRelax();
    } else if (oversubscribed_ && iter < kYields) {
      sched_yield();
    } else {
      // Announce the sleep, re-check (the poster reads sleepers after storing seq, both
      // seq_cst), then sleep on the low 32 bits with a short timeout.
      sleepers.fetch_add(1, std::memory_order_seq_cst);
      if (seq.load(std::memory_order_seq_cst) == v) {
        timespec ts{0, kSleepNs};
        syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&seq), FUTEX_WAIT,
                static_cast<std::uint32_t>(v), &ts, nullptr, 0);
      }
      sleepers.fetch_sub(1, std::memory_order_seq_cst);
    }
    checkAborted(clock.op);
    checkPeerAborted(seq, target, peer, clock);
    now = std::chrono::steady_clock::now();
    checkPeer(peer, clock, since, now);
    report(peer, clock, since, now, &nextReport);
    if (now - lastLiveness >= kLivenessPeriod) {
      lastLiveness = now;
      checkPeerAlive(seq, target, peer, clock);
    }
  }
}

void Waiter::waitWord(const std::uint64_t* word, std::uint64_t target, int peer,
                      const OpClock& clock) const {
  const auto ready = [&] { return __atomic_load_n(word, __ATOMIC_ACQUIRE) >= target; };
  for (int iter = 0; iter < kSpins; ++iter) {
    if (ready()) return;
    cpuRelax();
  }
  const auto since = std::chrono::steady_clock::now();
  const WaitRecord::Scope recording(record_, clock.op, peer);
  auto lastLiveness = since;
  auto nextReport = since + std::chrono::milliseconds(reportMs_);
  auto now = since;
  for (int iter = 0;; ++iter) {
    if (ready()) return;
    if (!oversubscribed_ && now - since < kSpinBudget) {
      for (int i = 0; i < 64; ++i) cpuRelax();
    } else if (oversubscribed_ && iter < kYields) {
      sched_yield();
    } else {
      timespec ts{0, 50000};  // no futex on this word: a short sleep
      nanosleep(&ts, nullptr);
    }
    checkAborted(clock.op);
    if (segment_.rankInfo(peer).aborted.load(std::memory_order_acquire) != 0 && !ready()) {
      throwError(ErrorCode::kPeerLost, rank_, clock.op, abortedBy(peer));
    }
    now = std::chrono::steady_clock::now();
    checkPeer(peer, clock, since, now);
    report(peer, clock, since, now, &nextReport);
    if (now - lastLiveness >= kLivenessPeriod) {
      lastLiveness = now;
      if (processGone(segment_.pid(peer)) && !ready()) {
        throwError(ErrorCode::kPeerLost, rank_, clock.op,
                   fmt::format("rank {} (pid {}) died", peer, segment_.pid(peer)));
      }
    }
  }
}

void Waiter::wake(std::atomic<std::uint64_t>& seq) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&seq), FUTEX_WAKE, INT32_MAX, nullptr,
          nullptr, 0);
}

}  // namespace epcomm::shm
