#include "backends/shm/channel.h"

#include <cstring>
#include <string>

#include "comm/error.h"

namespace epcomm::shm {

Channel::Channel(Segment& segment, const Waiter& waiter, Stream& stream, int kind, int rank,
                 int size)
    : segment_(segment), waiter_(waiter), stream_(stream), kind_(kind), rank_(rank), size_(size) {}

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
  char* slot = segment_.at(slotOff(rank_)) + capacity();
  const auto* in = static_cast<const unsigned char*>(data);
  for (std::size_t off = 0; off < bytes; off += kLinePayload, slot += kLine) {
    const std::size_t n = bytes - off < kLinePayload ? bytes - off : kLinePayload;
    std::memcpy(slot, in + off, n);
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
  const std::size_t lines = linesFor(bytes);
  // Ask for every line at once so their transfers overlap.
  for (std::size_t i = 0; i < lines; ++i) __builtin_prefetch(slot + i * kLine, 0, 3);
  if (stream_.check.armed) {
    // The peer's step line (its call check) is posted after its data lines: poll it with
    // the first data line so both transfers overlap, then compare its record while it is
    // here. A peer that disagrees may never write its lines: stop, finishLines() throws.
    const auto* flag0 = reinterpret_cast<const std::uint64_t*>(slot + kLinePayload);
    StepLine& l = line(peer);
    for (int spin = 0; spin < 256; ++spin) {
      const std::uint64_t f = __atomic_load_n(flag0, __ATOMIC_ACQUIRE);
      if (l.seq.load(std::memory_order_acquire) >= step && f >= step) break;
      cpuRelax();
    }
    waiter_.waitAtLeast(l.seq, l.sleepers, step, peer, clock);
    notePeerRecord(l);
    if (peerDisagrees(peer)) return false;
  }
  auto* out = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < lines; ++i) {
    const char* line = slot + i * kLine;
    const auto* flag = reinterpret_cast<const std::uint64_t*>(line + kLinePayload);
    if (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < step && !waitFlag(peer, flag, clock)) {
      return false;
    }
    const std::size_t off = i * kLinePayload;
    std::memcpy(out + off, line, bytes - off < kLinePayload ? bytes - off : kLinePayload);
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

void Channel::finishLines() {
  finishCheck();
}

void Channel::verify(const ArmedCheck& c) {
  const char* moved = "; no data was moved";
  if (!c.valid) {
    // The communicator replaces this with the rank's own problem.
    throwError(ErrorCode::kInvalidArgument, rank_, c.op,
               std::string("this rank passed invalid arguments") + moved);
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
    throwError(
        ErrorCode::kInvalidArgument, rank_, c.op,
        "rank " + std::to_string(bad) + " passed invalid arguments (its error names them)" + moved);
  }
  if (differentOp) {
    throwError(ErrorCode::kInvalidArgument, rank_, c.op,
               "ranks called different collectives at the same point (this rank called " +
                   std::string(c.op) + ")" + moved);
  }
  for (int i = 0; i < c.numShapes; ++i) {
    if (lo[i] != hi[i]) {
      throwError(ErrorCode::kInvalidArgument, rank_, c.op,
                 std::string("ranks disagree on ") + c.shapeName[i] + ": this rank passed " +
                     std::to_string(c.shape[i]) + ", the ranks' values range " +
                     std::to_string(lo[i]) + ".." + std::to_string(hi[i]) +
                     "; every rank must pass the same" + moved);
    }
  }
}

}  // namespace epcomm::shm
