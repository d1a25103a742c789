// What a two-level algorithm runs on: this rank's place (HostLayout), the three backends
// (in-host, rail, network world), scratch memory, and Steps, which runs each step on a level
// with the call's cross-rank check.
//
// The check (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY): the communicator arms the two-level
// backend with this rank's record; every step arms its level with the same record, valid
// only while this rank's arguments are valid and no earlier step reported a problem. A level
// that finds a problem fails all its members with kInvalidArgument, having moved no data.
// Steps keeps going (the later steps carry "invalid", so the news spreads through the
// levels without anyone waiting on a rank that left), and finish() then settles what went
// wrong with one all-reduce of every rank's record over the network level, so every rank
// reports what a one-level backend would (the culprit's rank, the disagreeing shape).
//
// Every armed two-level call has one shape, so ranks that called different collectives
// still meet in the same steps: in host, then the rails (Levels::onRail: the same local
// ranks in every algorithm), then, unless every rank is on a rail, in host again. Where
// every rank is on a rail, every rank knows of any problem after the first two steps, so a
// failed call stops there.
#pragma once

#include "comm/log.h"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "comm/backend.h"
#include "comm/error.h"
#include "comm/src/backend_handle.h"
#include "comm/two_level/host_layout.h"

namespace epcomm::two_level {

struct Levels {
  int rank = 0;  // in the communicator
  int size = 1;
  HostLayout layout;
  int host = 0;                     // this rank's host
  int local = 0;                    // this rank's index in its host
  BackendHandle* inHost = nullptr;  // the ranks of this host, by local index
  BackendHandle* rail = nullptr;    // the ranks with this local index, by host
  BackendHandle* world = nullptr;   // the network backend over every rank
  // How many local ranks of each host take the rail steps (EPCOMM_TWO_LEVEL_RAILS; at most
  // the fewest ranks on a host): local ranks 0 .. rails-1, the same in every algorithm.
  int rails = 1;

  int localSize() const { return layout.localSize(host); }
  int numHosts() const { return layout.numHosts(); }
  // This rank takes the rail steps (its rail spans every host).
  bool onRail() const { return local < rails; }
  // Every rank of every host takes the rail steps (uniform hosts, every local rank a rail).
  bool allOnRails() const { return layout.uniform() && rails == layout.minLocalSize(); }
};

// Scratch memory kept between calls (grows, never shrinks): no allocation per call once
// the sizes settle.
class Scratch {
 public:
  unsigned char* get(int which, std::size_t bytes);

 private:
  std::vector<unsigned char> buffers_[3];
};

enum class Level { kInHost, kRail, kWorld };

// `message` from one level as the communicator's: ranks translated, the level named.
std::string levelText(const Levels& levels, Level level, const std::string& message);

// While alive, the backends' log lines on this thread read as the communicator's (levelText),
// as their errors do (levelError).
class LevelLog {
 public:
  LevelLog(const Levels& levels, Level level)
      : levels_(levels), level_(level), rewrite_(&LevelLog::rewrite, this) {}

 private:
  static std::string rewrite(const std::string& message, const void* self);
  const Levels& levels_;
  Level level_;
  BackendLogRewrite rewrite_;
};

class Steps {
 public:
  // `check`: the record the communicator armed for this call, or nullopt.
  Steps(const Levels& levels, const char* op, const std::optional<epcommCallCheck>& check);

  // This rank's arguments are valid and no step so far reported a problem: the algorithm
  // may touch data (between steps too). Once false, each later step still runs (so no peer
  // is left waiting) and its level touches nothing of this rank's.
  bool ok() const { return valid_ && !failure_; }
  // The communicator armed a check for this call.
  bool armed() const { return check_.has_value(); }

  // Runs fn (one call on `level`'s backend) with the check armed there. An error that is
  // not kInvalidArgument is rethrown, its level's rank numbers turned into the
  // communicator's.
  template <typename Fn>
  void run(Level level, Fn&& fn) {
    if (!arm(level)) return;
    try {
      const LevelLog logAs(levels_, level);
      fn();
    } catch (const Error& e) {
      failed(level, e);
    }
    // In host, then rails: on uniform hosts every rank has heard of any problem.
    if (level == Level::kRail && failure_ && levels_.allOnRails()) {
      finish();
    }
  }
  // When a step reported a problem: settles it over the network level and throws
  // kInvalidArgument naming it, as a one-level backend would. Collective over every rank
  // that saw a problem, which is every rank once the steps are done.
  void finish() const;

 private:
  // Arms `level` with the check; false (a problem recorded, nothing to run) for a level of
  // one rank once this rank has a problem: no peer waits there, and such a level checks
  // nothing itself.
  bool arm(Level level);
  void failed(Level level, const Error& e);

  const Levels& levels_;
  const char* op_;
  const std::optional<epcommCallCheck>& check_;
  bool valid_ = true;
  std::optional<Error> failure_;
};

// `message`, raised by a level whose rank i is communicator rank members[i], with every
// "rank N" / "ranks N, M" (also "ranks: N") naming communicator ranks instead; a peer's
// abort reason (after EPCOMM_ABORT_REASON_MARK) is kept as it is.
std::string translateRanks(const std::string& message, const std::vector<int>& members);

// An error from one level, as the communicator's: ranks translated, the level named.
Error levelError(const Levels& levels, Level level, const Error& e);

}  // namespace epcomm::two_level
