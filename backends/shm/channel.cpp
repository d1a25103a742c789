#include "backends/shm/channel.h"

#include <fmt/format.h>

#include <cstring>
#include <string>

#include "comm/agreement_record.h"
#include "comm/error.h"

namespace epcomm::shm {
namespace {

// LineRecord::packed: every shape is in it.
constexpr std::uint64_t kLineRecordExact = 4;

}  // namespace

Channel::Channel(Segment& segment, const Waiter& waiter, Stream& stream, int kind, int rank,
                 int size)
    : segment_(segment), waiter_(waiter), stream_(stream), kind_(kind), rank_(rank), size_(size) {}

Channel::LineRecord Channel::armedRecord() const {
  constexpr int kShapeBits = 20;
  const ArmedCheck& check = stream_.check;
  LineRecord r{};
  if (!check.armed) return r;
  r.opId = check.opId;
  r.packed = kCheckPresent | (check.valid ? kCheckValid : 0);
  std::uint64_t shapes = 0;
  for (int i = 0; i < check.numShapes; ++i) {
    const std::int64_t v = check.shape[i];
    if (v < 0 || v >= (std::int64_t{1} << kShapeBits)) return r;  // not exact
    shapes |= static_cast<std::uint64_t>(v) << (3 + kShapeBits * i);
  }
  r.packed |= kLineRecordExact | shapes;
  return r;
}

void Channel::post() {
  const std::uint64_t step = stream_.step;
  StepLine& mine = line(rank_);
  const ArmedCheck& check = stream_.check;
  if (check.armed) {
    mine.checkFlags = kCheckPresent | (check.valid ? kCheckValid : 0);
    mine.opId = check.opId;
    for (int i = 0; i < 3; ++i) mine.shape[i] = i < check.numShapes ? check.shape[i] : 0;
  } else if (mine.checkFlags != 0) {
    mine.checkFlags = 0;
  }
  Waiter::post(mine.seq, mine.sleepers, step);
}

void Channel::wait(const OpClock& clock) {
  const std::uint64_t step = stream_.step;
  for (int i = 1; i < size_; ++i) {
    const int peer = (rank_ + i) % size_;
    StepLine& l = line(peer);
    waiter_.waitAtLeast(l.seq, l.sleepers, step, peer, clock);
    notePeerRecord(l);
  }
  finishCheck();
}

void Channel::notePeerRecord(const StepLine& l) {
  ArmedCheck& c = stream_.check;
  if (!c.armed || !c.valid) return;
  if (l.checkFlags != (kCheckPresent | kCheckValid) || l.opId != c.opId) return;
  for (int k = 0; k < c.numShapes; ++k) {
    if (l.shape[k] != c.shape[k]) return;
  }
  ++c.matchedPeers;
}

void Channel::finishCheck() {
  ArmedCheck& check = stream_.check;
  if (check.armed) {
    check.armed = false;
    // Every peer's record equal to this rank's valid one: verify() would find nothing.
    if (check.matchedPeers != size_ - 1) verify(check);
  }
  check.matchedPeers = 0;
}

void Channel::postLines(const void* data, std::size_t bytes) {
  const std::uint64_t step = stream_.step;
  // Record and data, contiguous, cut into line payloads below.
  alignas(8) unsigned char stage[kLineRegionBytes / kLine * kLinePayload];
  const std::size_t total = sizeof(LineRecord) + bytes;
  const LineRecord record = armedRecord();
  std::memcpy(stage, &record, sizeof record);
  if (bytes) std::memcpy(stage + sizeof record, data, bytes);
  char* slot = segment_.at(slotOff(rank_)) + capacity();
  for (std::size_t off = 0; off < total; off += kLinePayload, slot += kLine) {
    std::memcpy(slot, stage + off, total - off < kLinePayload ? total - off : kLinePayload);
    // Released after the line's data.
    __atomic_store_n(reinterpret_cast<std::uint64_t*>(slot + kLinePayload), step, __ATOMIC_RELEASE);
  }
  // The step line last: its seq_cst post waits for its own line only after the data lines'
  // stores are on their way, so their transfers overlap with it instead of following it.
  post();
}

bool Channel::readLines(int peer, void* dst, std::size_t bytes, const OpClock& clock) {
  const std::uint64_t step = stream_.step;
  const char* slot = segment_.at(slotOff(peer)) + capacity();
  const std::size_t total = sizeof(LineRecord) + bytes;
  const std::size_t lines = linesFor(bytes);
  // Ask for every line at once so their transfers overlap.
  for (std::size_t i = 0; i < lines; ++i) __builtin_prefetch(slot + i * kLine, 0, 3);
  if (stream_.check.armed) {
    // Usually the peer's first line comes soon with a record equal to this rank's (valid,
    // exact) one: the check passed for this peer. Otherwise (late, absent, invalid, not
    // exact or different) wait for its step line and compare the record there, as wait()
    // does; a peer that disagrees may never write its lines: stop, finishLines() throws.
    const LineRecord mine = armedRecord();
    const auto* flag0 = reinterpret_cast<const std::uint64_t*>(slot + kLinePayload);
    bool matched = false;
    for (int spin = 0; spin < 256; ++spin) {
      if (__atomic_load_n(flag0, __ATOMIC_ACQUIRE) >= step) {
        LineRecord theirs;
        std::memcpy(&theirs, slot, sizeof theirs);
        constexpr std::uint64_t kMatchable = kCheckPresent | kCheckValid | kLineRecordExact;
        matched = (mine.packed & kMatchable) == kMatchable &&
                  std::memcmp(&theirs, &mine, sizeof mine) == 0;
        break;
      }
      cpuRelax();
    }
    if (matched) {
      ++stream_.check.matchedPeers;
    } else {
      StepLine& l = line(peer);
      waiter_.waitAtLeast(l.seq, l.sleepers, step, peer, clock);
      notePeerRecord(l);
      if (peerDisagrees(peer)) return false;
    }
  }
  auto* out = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < lines; ++i) {
    const char* line = slot + i * kLine;
    const auto* flag = reinterpret_cast<const std::uint64_t*>(line + kLinePayload);
    if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < step && !waitFlag(peer, flag, clock)) {
      return false;
    }
    // This line's payload is [lo, hi) of record + data; the data part goes to dst.
    const std::size_t lo = i * kLinePayload;
    const std::size_t hi = total - lo < kLinePayload ? total : lo + kLinePayload;
    const std::size_t from = lo > sizeof(LineRecord) ? lo : sizeof(LineRecord);
    if (hi > from) std::memcpy(out + (from - sizeof(LineRecord)), line + (from - lo), hi - from);
  }
  return true;
}

bool Channel::peerDisagrees(int peer) const {
  const ArmedCheck& c = stream_.check;
  if (!c.armed) return false;
  const StepLine& l = segment_.stepLine(peer, static_cast<int>(stream_.step & 1));
  if ((l.checkFlags & kCheckPresent) == 0) return false;  // a rank that checks nothing
  if ((l.checkFlags & kCheckValid) == 0 || l.opId != c.opId) return true;
  for (int i = 0; i < c.numShapes; ++i) {
    if (l.shape[i] != c.shape[i]) return true;
  }
  return false;
}

bool Channel::waitFlag(int peer, const std::uint64_t* flag, const OpClock& clock) {
  const std::uint64_t step = stream_.step;
  // The peer writes its lines and then posts its step line, without waiting in between:
  // spin a little, then wait for its post as any wait does (yield, futex), then for the line
  // itself (already there once the post is).
  for (int i = 0; i < 256; ++i) {
    if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) >= step) return true;
    cpuRelax();
  }
  StepLine& l = line(peer);
  waiter_.waitAtLeast(l.seq, l.sleepers, step, peer, clock);
  // A peer whose arguments were invalid, or that called another collective or shape, posts
  // its step line but no (or fewer) data lines: stop here, finishLines() fails every rank.
  if (peerDisagrees(peer)) return false;
  waiter_.waitWord(flag, step, peer, clock);
  return true;
}

void Channel::finishLines(const OpClock& clock) {
  const ArmedCheck& c = stream_.check;
  if (c.armed && c.matchedPeers != size_ - 1) {
    // verify() reads every rank's step line; those matched from their lines may not be
    // posted yet (every rank posts it, whatever it called).
    const std::uint64_t step = stream_.step;
    for (int i = 1; i < size_; ++i) {
      const int peer = (rank_ + i) % size_;
      StepLine& l = line(peer);
      waiter_.waitAtLeast(l.seq, l.sleepers, step, peer, clock);
    }
  }
  finishCheck();
}

void Channel::verify(const ArmedCheck& c) {
  if (!c.valid) {
    // The communicator replaces this with the rank's own problem.
    throwError(ErrorCode::kInvalidArgument, rank_, c.op,
               "this rank passed invalid arguments; no data was moved");
  }
  int bad = -1;
  bool differentOp = false;
  std::int64_t lo[3], hi[3];
  for (int i = 0; i < 3; ++i) lo[i] = hi[i] = c.shape[i];
  for (int r = 0; r < size_; ++r) {
    const StepLine& l = line(r);
    if ((l.checkFlags & kCheckPresent) == 0) continue;  // a rank that checks nothing
    if ((l.checkFlags & kCheckValid) == 0) {
      bad = r;  // the highest, as Communicator::agree reports
      continue;
    }
    if (l.opId != c.opId) {
      differentOp = true;
      continue;
    }
    for (int i = 0; i < c.numShapes; ++i) {
      lo[i] = l.shape[i] < lo[i] ? l.shape[i] : lo[i];
      hi[i] = l.shape[i] > hi[i] ? l.shape[i] : hi[i];
    }
  }
  if (bad >= 0) {
    throwError(ErrorCode::kInvalidArgument, rank_, c.op, AgreementRecord::failedMessage(bad));
  }
  if (differentOp) {
    throwError(ErrorCode::kInvalidArgument, rank_, c.op,
               AgreementRecord::differentCallMessage(c.op));
  }
  for (int i = 0; i < c.numShapes; ++i) {
    if (lo[i] != hi[i]) {
      throwError(ErrorCode::kInvalidArgument, rank_, c.op,
                 AgreementRecord::disagreeMessage(c.shapeName[i], fmt::format("{}", c.shape[i]),
                                                  lo[i], hi[i]));
    }
  }
}

}  // namespace epcomm::shm
