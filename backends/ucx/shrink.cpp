// Backend::shrink: after ranks died, the survivors form a new communicator without them.
//
// One decider, so every survivor ends with the same members: the coordinator is the lowest
// rank this rank does not know lost (UCX's peer error handling marks a dead peer lost once
// its link fails). A survivor that is not the coordinator sends it JOIN (with the next free
// communicator id of its worker) and waits for MEMBERS; when the coordinator turns out lost
// it tries the next one. The coordinator waits for a JOIN from every rank above it not known
// lost, one at a time: each joins, is found lost (left out), or stays silent until the
// timeout (an error naming it). It then sends MEMBERS: the new communicator id (the largest
// of the members' next free ids) and the members in their old order. Messages are control
// tags under this communicator's id, their payload the shrink round and the kind, so a round
// that failed never feeds a later one. Abort notices are not heeded here: the old
// communicator is aborted by definition. A member that gave up (its wait for MEMBERS timed
// out) or a coordinator that died while telling the members can leave some ranks with a
// membership the others do not share: the new communicator's first collective (the
// Communicator's all-gather of hosts when it is made) then fails on them within the timeout,
// and every survivor calls shrink again on the old communicator.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/ucx/backend.h"
#include "comm/error.h"

namespace epcomm::ucx {
namespace {

constexpr std::uint64_t kJoin = 2;  // low bits of the payload (1 is the abort notice)
constexpr std::uint64_t kMembers = 3;
// A context no communicator gets (split refuses 0xffff): a wait under it heeds no abort notice.
constexpr std::uint16_t kNoContext = 0xffff;

std::uint64_t payload(std::uint64_t round, std::uint64_t kind) {
  return ((round << 2) | kind) & kTagPayloadMask;
}

}  // namespace

std::unique_ptr<epcomm::Backend> Backend::shrink(int* keptRanks) {
  const char* op = "shrink";
  const std::uint64_t round = ++shrinkRounds_;
  const int me = world_[static_cast<std::size_t>(rank_)];
  std::vector<bool> lost(static_cast<std::size_t>(size_), false);
  const auto knownLost = [&](int r) {
    if (!lost[static_cast<std::size_t>(r)]) {
      lost[static_cast<std::size_t>(r)] = worker_->isLost(world_[static_cast<std::size_t>(r)]);
    }
    return lost[static_cast<std::size_t>(r)];
  };
  // A wait on one peer only: it fails with kPeerLost when that peer is lost (others may be).
  std::vector<int> only(worldToLocal_.size(), -1);
  const auto waitOn = [&](int r, Op* ops, std::size_t n) {
    const int w = world_[static_cast<std::size_t>(r)];
    only[static_cast<std::size_t>(w)] = r;
    WaitScope s{rank_, op, &only, nullptr};
    s.context = kNoContext;
    s.record = &waitRecord_;
    try {
      worker_->waitAll(ops, n, s);
    } catch (...) {
      only[static_cast<std::size_t>(w)] = -1;
      throw;
    }
    only[static_cast<std::size_t>(w)] = -1;
  };
  const std::size_t membersBytes = (2 + static_cast<std::size_t>(size_)) * sizeof(std::int64_t);
  std::vector<std::int64_t> members(2 + static_cast<std::size_t>(size_), -1);

  for (int coordinator = 0; coordinator < size_; ++coordinator) {
    if (knownLost(coordinator)) continue;
    if (coordinator != rank_) {
      // Join it and wait for the members; if it is lost, the next one.
      const int w = world_[static_cast<std::size_t>(coordinator)];
      std::int64_t next = worker_->nextContext();
      Op ops[2] = {
          worker_->recv(w, makeTag(context_, TagClass::kControl, w, payload(round, kMembers)),
                        members.data(), membersBytes),
          worker_->send(w, makeTag(context_, TagClass::kControl, me, payload(round, kJoin)), &next,
                        sizeof next)};
      try {
        waitOn(coordinator, ops, 2);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::kPeerLost) throw;
        lost[static_cast<std::size_t>(coordinator)] = true;
        continue;
      }
      break;
    }
    // The coordinator: every rank above it joins, is lost, or is named at the timeout.
    std::vector<int> joined = {rank_};
    std::int64_t context = worker_->nextContext();
    for (int r = rank_ + 1; r < size_; ++r) {
      if (knownLost(r)) continue;
      const int w = world_[static_cast<std::size_t>(r)];
      std::int64_t theirs = 0;
      Op join = worker_->recv(w, makeTag(context_, TagClass::kControl, w, payload(round, kJoin)),
                              &theirs, sizeof theirs);
      try {
        waitOn(r, &join, 1);
      } catch (const Error& e) {
        if (e.code() == ErrorCode::kPeerLost) continue;  // lost: left out
        if (e.code() == ErrorCode::kTimeout) {
          throwError(ErrorCode::kTimeout, rank_, op,
                     fmt::format("rank {} did not join the shrink within EPCOMM_TIMEOUT_MS={} "
                                 "(alive and not calling it, or its loss not yet detected): every "
                                 "surviving rank must call it (a hung rank must be killed to be "
                                 "left out)",
                                 r, worker_->timeoutMs()));
        }
        throw;
      }
      joined.push_back(r);
      context = std::max(context, theirs);
    }
    if (context >= kNoContext) {
      throwError(ErrorCode::kInvalidUsage, rank_, op,
                 "the ucx backend ran out of communicator ids (65535 of one world)");
    }
    members[0] = context;
    members[1] = static_cast<std::int64_t>(joined.size());
    for (std::size_t i = 0; i < joined.size(); ++i) members[2 + i] = joined[i];
    for (std::size_t i = 1; i < joined.size(); ++i) {
      const int r = joined[i];
      Op tell = worker_->send(world_[static_cast<std::size_t>(r)],
                              makeTag(context_, TagClass::kControl, me, payload(round, kMembers)),
                              members.data(), membersBytes);
      try {
        waitOn(r, &tell, 1);
      } catch (const Error& e) {
        // A member lost now fails the new communicator's first call; the survivors shrink again.
        if (e.code() != ErrorCode::kPeerLost) throw;
      }
    }
    break;
  }
  const std::int64_t n = members[1];
  if (n < 1 || n > size_ || members[0] <= 0 || members[0] >= kNoContext) {
    throwError(ErrorCode::kInternal, rank_, op, "no coordinator answered the shrink");
  }
  std::vector<int> world;
  int newRank = -1;
  for (std::int64_t i = 0; i < n; ++i) {
    const int r = static_cast<int>(members[2 + static_cast<std::size_t>(i)]);
    if (r == rank_) newRank = static_cast<int>(i);
    keptRanks[i] = r;
    world.push_back(world_[static_cast<std::size_t>(r)]);
  }
  if (newRank < 0) {
    throwError(ErrorCode::kPeerLost, rank_, op,
               "the coordinator left this rank out of the shrunk communicator (it saw this rank "
               "lost)");
  }
  const auto context = static_cast<std::uint16_t>(members[0]);
  worker_->reserveContext(context);
  return std::unique_ptr<epcomm::Backend>(
      new Backend(worker_, std::move(world), newRank, context, tuning_));
}

}  // namespace epcomm::ucx
