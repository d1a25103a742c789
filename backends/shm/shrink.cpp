// Backend::shrink: after ranks died, the survivors form a new communicator without them.
//
// Every survivor still maps the old segment, so the old segment carries the protocol (its
// ShrinkLines), whatever state the communicator's streams were left in:
//   1. a survivor posts the round it joins (the count of its shrink calls), then waits until
//      every other rank has joined it or is dead without having joined. A rank's answer is
//      final once known (a dead rank posts nothing more; its round is read again after its
//      death is seen, so a join made just before dying counts), so every survivor settles
//      on the same members: the ranks that joined, in their old order;
//   2. the members make a new segment (Segment::establish, led by the first member) through
//      a small all-gather on their ShrinkLines, each step tagged with the round, so a member
//      that died or moved on to a later round fails the step instead of feeding it.
// A rank that is alive but never joins fails step 1 at the timeout, named.
#include <fmt/format.h>
#include <sched.h>
#include <time.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "backends/shm/backend.h"
#include "comm/error.h"

namespace epcomm::shm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kSpins = 256;  // pause iterations, then yields, then short sleeps
constexpr int kYields = 256;
constexpr int kLivenessEvery = 64;  // iterations between checks of a peer's pid

void pause(int iter) {
  if (iter < kSpins) {
    cpuRelax();
  } else if (iter < kSpins + kYields) {
    sched_yield();
  } else {
    timespec ts{0, 100000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace

std::unique_ptr<epcomm::Backend> Backend::shrink(int* keptRanks) {
  const char* op = "shrink";
  Segment& seg = *segment_;
  const std::uint64_t round = ++shrinkRounds_;
  seg.shrinkLine(rank_).round.store(round, std::memory_order_release);
  const bool bounded = timeoutMs_ > 0;
  Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_);
  const auto joined = [&](int r) {
    return seg.shrinkLine(r).round.load(std::memory_order_acquire) >= round;
  };

  // Step 1: who joins. state: 1 joined, 0 died without joining, -1 not known yet.
  std::vector<int> state(static_cast<std::size_t>(size_), -1);
  state[static_cast<std::size_t>(rank_)] = 1;
  int unknown = size_ - 1;
  for (int iter = 0; unknown > 0; ++iter) {
    for (int r = 0; r < size_; ++r) {
      int& s = state[static_cast<std::size_t>(r)];
      if (s >= 0) continue;
      if (joined(r)) {
        s = 1;
      } else if (iter % kLivenessEvery == 0 && processGone(seg.pid(r))) {
        s = joined(r) ? 1 : 0;
      } else {
        continue;
      }
      --unknown;
    }
    if (unknown == 0) break;
    pause(iter);
    if (bounded && iter % kLivenessEvery == 0 && Clock::now() >= deadline) {
      std::string missing;
      for (int r = 0; r < size_; ++r) {
        if (state[static_cast<std::size_t>(r)] >= 0) continue;
        missing += fmt::format("{}rank {} (pid {})", missing.empty() ? "" : ", ", r, seg.pid(r));
      }
      throwError(ErrorCode::kTimeout, rank_, op,
                 fmt::format("{} alive but did not call shrink within EPCOMM_TIMEOUT_MS={}: every "
                             "surviving rank must call it (a hung rank must be killed to be left "
                             "out)",
                             missing + (unknown == 1 ? " is" : " are"), timeoutMs_));
    }
  }
  std::vector<int> members;
  for (int r = 0; r < size_; ++r) {
    if (state[static_cast<std::size_t>(r)] == 1) members.push_back(r);
  }
  int newRank = 0;
  while (members[static_cast<std::size_t>(newRank)] != rank_) ++newRank;
  const int newSize = static_cast<int>(members.size());

  // Step 2: the members' all-gather on their ShrinkLines, for Segment::establish.
  std::uint64_t step = 0;
  GatherFn gather = [&](const void* send, void* recv, std::size_t bytes) {
    if (bytes > ShrinkLine::kDataBytes) {
      throwError(
          ErrorCode::kInternal, rank_, op,
          fmt::format("shrink all-gather of {} bytes exceeds {}", bytes, ShrinkLine::kDataBytes));
    }
    ++step;
    deadline = Clock::now() + std::chrono::milliseconds(timeoutMs_);  // each step its own
    const std::uint64_t tag = (round << 32) | step;
    ShrinkLine& mine = seg.shrinkLine(rank_);
    std::memcpy(mine.data[step % 2], send, bytes);
    mine.posted.store(tag, std::memory_order_release);
    for (int i = 0; i < newSize; ++i) {
      const int r = members[static_cast<std::size_t>(i)];
      ShrinkLine& theirs = seg.shrinkLine(r);
      for (int iter = 0;; ++iter) {
        const std::uint64_t posted = theirs.posted.load(std::memory_order_acquire);
        if ((posted >> 32) > round) {
          throwError(ErrorCode::kPeerLost, rank_, op,
                     fmt::format("rank {} left this shrink for a later one; call shrink again", r));
        }
        if (posted >= tag) break;
        if (iter % kLivenessEvery == 0 && processGone(seg.pid(r)) &&
            theirs.posted.load(std::memory_order_acquire) < tag) {
          throwError(ErrorCode::kPeerLost, rank_, op,
                     fmt::format("rank {} (pid {}) died during shrink; the survivors may call "
                                 "shrink again",
                                 r, seg.pid(r)));
        }
        if (bounded && iter % kLivenessEvery == 0 && Clock::now() >= deadline) {
          throwError(ErrorCode::kTimeout, rank_, op,
                     fmt::format("rank {} (pid {}) stopped answering during shrink "
                                 "(EPCOMM_TIMEOUT_MS={})",
                                 r, seg.pid(r), timeoutMs_));
        }
        pause(iter);
      }
      std::memcpy(static_cast<char*>(recv) + static_cast<std::size_t>(i) * bytes,
                  theirs.data[step % 2], bytes);
    }
  };
  std::unique_ptr<Segment> segment =
      Segment::establish(gather, newRank, newSize, 0, newRank, newSize, bufferBytes_, op);
  for (int i = 0; i < newSize; ++i) keptRanks[i] = members[static_cast<std::size_t>(i)];
  if (log_ && newRank == 0) {
    std::string left;
    for (int r = 0; r < size_; ++r) {
      if (state[static_cast<std::size_t>(r)] == 0)
        left += (left.empty() ? "" : ", ") + std::to_string(r);
    }
    const std::string note =
        fmt::format("shrink: {} of {} ranks form the new communicator{}", newSize, size_,
                    left.empty() ? "" : " (left out: " + left + ")");
    log_(2, note.c_str());  // info
  }
  return child(std::move(segment), newRank, newSize);
}

}  // namespace epcomm::shm
