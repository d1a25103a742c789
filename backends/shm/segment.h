// The shared-memory segment of one shm communicator: its layout, and how the ranks create,
// map and unlink it.
//
// Layout (every offset 64-byte aligned, data slots page aligned; computed identically on
// every rank from (size, bufferBytes of the leader)):
//   Header                      magic, size, total bytes
//   RankInfo[size]              each rank's pid (liveness), abort flag and abort reason
//   ShrinkLine[size]            each rank's part in a shrink (shrink.cpp)
//   StepLine[size][2]           per rank, per parity: the last step of the collective stream
//                               it posted (all kinds share one stream), with the call check
//                               and inline data it carries
//   Counter[size][size][2]      per ordered pair (from, to): chunks sent, chunks acked
//   SlotHeader[kDataKinds][size][2]  64 bytes beside each collective slot
//   slot[kDataKinds][size][2]   collective data, slotBytes each (parity = step % 2)
//   mail[size][size][2]         send/recv data, mailHeader + mailBytes each
//
// Invariants: a Counter's or StepLine's seq is written by exactly one rank and only ever grows
// (never reset, so no ABA); the segment is unlinked before establish() returns, so nothing is left
// in /dev/shm once a communicator exists, whatever happens to its processes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace epcomm::shm {

inline constexpr std::size_t kLine = 64;

// Collective kinds: each has its own counters and its own data slots, so two kinds never
// share a buffer (the SGLang hazard DESIGN.md warns about). Barrier moves no data.
enum Kind : int {
  kAllReduceKind = 0,
  kReduceScatterKind,
  kAllGatherKind,  // allGather and allGatherV
  kBroadcastKind,
  kAllToAllKind,  // allToAll and allToAllV
  kBarrierKind,
  kKinds
};
inline constexpr int kDataKinds = kBarrierKind;

// One cache line holding a monotonically increasing counter written by one rank.
struct alignas(kLine) Counter {
  std::atomic<std::uint64_t> seq;       // its low 32 bits are the futex word (little endian)
  std::atomic<std::uint32_t> sleepers;  // waiters inside FUTEX_WAIT on seq
};
static_assert(sizeof(Counter) == kLine);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// One rank's post of step s of the collective stream (in its line of parity s % 2): the
// step (low 32 bits: the futex word), the waiters asleep on it and the call check the first
// step of a collective carries (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY), so a peer learns all
// of it from one cache line. Written
// by its rank only (sleepers: by the waiters), the fields before seq is posted.
struct alignas(kLine) StepLine {
  std::atomic<std::uint64_t> seq;
  std::atomic<std::uint32_t> sleepers;
  std::uint32_t checkFlags;  // kCheckPresent | kCheckValid, 0: this step carries no check
  std::int64_t opId;
  std::int64_t shape[3];
};
static_assert(sizeof(StepLine) == kLine);
inline constexpr std::uint32_t kCheckPresent = 1;
inline constexpr std::uint32_t kCheckValid = 2;

struct alignas(kLine) Header {
  std::uint32_t magic;
  std::int32_t size;
  std::uint64_t totalBytes;
};

// Written by its own rank only. A rank that aborted posts nothing more, so a wait on it
// that is not yet satisfied fails; waits on ranks that still run go on (they fail in turn
// if they needed the aborted rank, and abort themselves).
struct RankInfo {
  static constexpr std::size_t kReasonBytes = 504;
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> aborted;
  // Why the rank aborted (NUL-terminated, possibly empty), written before `aborted`.
  char abortReason[kReasonBytes];
};

// One rank's part in shrinking the communicator (shrink.cpp), written by its rank only: the
// shrink round it joined, and the steps it posted of the survivors' small all-gather, whose
// data alternates between two buffers (a rank posts step s + 1 only after every member
// posted step s, so nobody still reads the buffer it overwrites).
struct alignas(kLine) ShrinkLine {
  static constexpr std::size_t kDataBytes = 192;
  std::atomic<std::uint64_t> round;   // shrink rounds joined (only grows)
  std::atomic<std::uint64_t> posted;  // (round << 32) | all-gather step, posted after data
  char data[2][kDataBytes];
};

// Per-slot side data an algorithm may use (all-to-all-v: the steps it needs).
struct alignas(kLine) SlotHeader {
  std::uint64_t words[8];
};

// Header of one send/recv chunk.
struct alignas(kLine) MailHeader {
  std::uint64_t totalBytes;  // of the whole message
  std::uint64_t count;       // elements of the whole message, as the sender passed
  std::int32_t tag;
};

struct Layout {
  int size = 0;
  std::size_t bufferBytes = 0;
  std::size_t slotBytes = 0;  // data bytes of one collective slot
  std::size_t mailBytes = 0;  // data bytes of one send/recv chunk
  std::size_t pidsOff = 0, shrinkOff = 0, stepLinesOff = 0, mailCountersOff = 0, slotHeadersOff = 0,
              slotsOff = 0, mailOff = 0, mailStride = 0, total = 0;

  static Layout compute(int size, std::size_t bufferBytes);
  std::size_t stepLineOff(int rank, int parity) const;
  // Counter of pair (from, to): which 0 = chunks posted by `from`, 1 = chunks acked by `to`.
  std::size_t mailCounterOff(int from, int to, int which) const;
  std::size_t slotHeaderOff(int kind, int rank, int parity) const;
  std::size_t slotOff(int kind, int rank, int parity) const;
  std::size_t mailSlotOff(int from, int to, int parity) const;  // MailHeader, then data
};

// "/epcomm-shm-" + 32 random hex digits (getrandom); empty when no randomness is available.
// Every shared-memory name of the backend (segments, windows) comes from here.
std::string randomShmName();
// The creating rank's half of a new segment or window: a shm file of `bytes` bytes
// (O_EXCL, mode 0600, random name returned in `name`, pages reserved), mapped read-write
// and its descriptor closed. Returns the mapping, or nullptr with failedStep naming the call
// that failed, errno its error, and the name already unlinked.
char* createMappedShm(std::size_t bytes, std::string& name, const char*& failedStep);
// What the creating rank tells the others about a new segment or window (all-gathered):
// its name, or why creating it failed and /dev/shm's free bytes at that moment.
struct ShmCreation {
  char name[64];            // empty on failure
  std::uint64_t freeBytes;  // /dev/shm's free bytes when the creation failed
  std::int32_t error;       // errno of the failed step, 0 when created
  char step[20];            // which step failed
};
// createMappedShm, recording the outcome in `record`.
char* createRecorded(std::size_t bytes, std::string& name, ShmCreation& record);

// Bytes free for an unprivileged process in /dev/shm (statvfs), 0 when unknown.
std::uint64_t shmFreeBytes();
// "needs N bytes ... and /dev/shm has F bytes free" for a creation that failed at `step`
// with `error`, `freeBytes` measured where it failed.
std::string shmSpaceText(std::size_t needed, std::uint64_t freeBytes, const char* step, int error);

// An all-gather over some group of processes; throws epcomm::Error on failure.
using GatherFn = std::function<void(const void* send, void* recv, std::size_t bytes)>;

class Segment {
 public:
  // Collective over every rank of the gather group (all of them call it). Ranks with
  // leader >= 0 are members of the segment led by gather rank `leader` (its member rank 0),
  // with member rank memberRank of memberSize; leader < 0: takes part, maps nothing and
  // returns nullptr. The leader creates (shm_open O_EXCL 0600, random name), publishes the
  // name through gather, every member maps it, a second gather confirms, the leader unlinks.
  // Throws (on every member of a failed segment) after the leader unlinked.
  static std::unique_ptr<Segment> establish(const GatherFn& gather, int gatherRank, int gatherSize,
                                            int leader, int memberRank, int memberSize,
                                            std::size_t bufferBytes, const char* op);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const Layout& layout() const { return layout_; }
  Header& header() { return *reinterpret_cast<Header*>(base_); }
  char* at(std::size_t off) { return base_ + off; }
  Counter& counter(std::size_t off) { return *reinterpret_cast<Counter*>(base_ + off); }
  StepLine& stepLine(int rank, int parity) {
    return *reinterpret_cast<StepLine*>(base_ + layout_.stepLineOff(rank, parity));
  }
  pid_t pid(int rank) const { return rankInfo(rank).pid.load(); }
  RankInfo& rankInfo(int rank) const {
    return reinterpret_cast<RankInfo*>(base_ + layout_.pidsOff)[rank];
  }
  ShrinkLine& shrinkLine(int rank) const {
    return reinterpret_cast<ShrinkLine*>(base_ + layout_.shrinkOff)[rank];
  }

 private:
  Segment(char* base, Layout layout) : base_(base), layout_(layout) {}
  char* base_ = nullptr;
  Layout layout_;
};

}  // namespace epcomm::shm
