#include "backends/shm/segment.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "comm/error.h"

namespace epcomm::shm {
namespace {

constexpr std::uint32_t kMagic = 0x65707368;  // "epsh"
constexpr std::size_t kPage = 4096;
constexpr std::size_t kMinSlotBytes = 32 << 10;
constexpr std::size_t kMinMailBytes = 16 << 10;
constexpr std::size_t kMaxMailBytes = 4 << 20;

std::size_t alignUp(std::size_t v, std::size_t a) {
  return (v + a - 1) / a * a;
}
std::size_t alignDown(std::size_t v, std::size_t a) {
  return v / a * a;
}

// What the leader publishes: the segment name (empty on failure) and its sizing input.
struct NameRecord {
  ShmCreation created;
  std::uint64_t bufferBytes;
};

// What every rank reports after mapping.
struct MapRecord {
  std::int32_t leader;  // -1: not a member of any segment
  std::int32_t error;   // errno, 0 when mapped
};

std::string describe(const char* step, int err) {
  return fmt::format("{}: {}", step, std::strerror(err));
}

}  // namespace

std::string randomShmName() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof(bytes)) {
    const ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {};
    got += static_cast<std::size_t>(n);
  }
  std::string name = "/epcomm-shm-";
  char hex[3];
  for (unsigned char b : bytes) {
    std::snprintf(hex, sizeof(hex), "%02x", b);
    name += hex;
  }
  return name;
}

char* createMappedShm(std::size_t bytes, std::string& name, const char*& failedStep) {
  errno = 0;
  failedStep = "getrandom";
  name = randomShmName();
  if (name.empty()) return nullptr;
  failedStep = "shm_open";
  const int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return nullptr;
  char* base = nullptr;
  failedStep = "ftruncate";
  if (ftruncate(fd, static_cast<off_t>(bytes)) == 0) {
    // Reserve the pages now: a full /dev/shm then fails here, not with SIGBUS later.
    failedStep = "posix_fallocate";
    const int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
    if (rc == 0 || rc == EOPNOTSUPP || rc == EINVAL) {
      failedStep = "mmap";
      void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m != MAP_FAILED) base = static_cast<char*>(m);
    } else {
      errno = rc;
    }
  }
  const int error = errno;
  if (!base) shm_unlink(name.c_str());
  close(fd);
  errno = error;
  return base;
}

char* createRecorded(std::size_t bytes, std::string& name, ShmCreation& record) {
  const char* step = "";
  char* base = createMappedShm(bytes, name, step);
  if (!base) {
    record.error = errno ? errno : EIO;
    record.freeBytes = shmFreeBytes();
    std::snprintf(record.step, sizeof(record.step), "%s", step);
  } else {
    std::snprintf(record.name, sizeof(record.name), "%s", name.c_str());
  }
  return base;
}

std::uint64_t shmFreeBytes() {
  struct statvfs st {};
  if (statvfs("/dev/shm", &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

std::string shmSpaceText(std::size_t needed, std::uint64_t freeBytes, const char* step, int error) {
  return fmt::format("it needs {} bytes and /dev/shm has {} bytes free ({})", needed, freeBytes,
                     describe(step, error));
}

Layout Layout::compute(int size, std::size_t bufferBytes) {
  Layout l;
  const auto p = static_cast<std::size_t>(size);
  l.size = size;
  l.bufferBytes = bufferBytes;
  // The collective slots share EPCOMM_BUFFSIZE; the mailboxes get at most half of it more.
  l.slotBytes = std::max({alignDown(bufferBytes / (2 * p * kDataKinds), kPage), kMinSlotBytes,
                          alignUp(p * 256, kPage)});
  l.mailBytes =
      std::clamp(alignDown(bufferBytes / (4 * p * p), kPage), kMinMailBytes, kMaxMailBytes);
  std::size_t off = alignUp(sizeof(Header), kLine);
  l.pidsOff = off;
  off = alignUp(off + p * sizeof(RankInfo), kLine);
  l.shrinkOff = off;
  off += p * sizeof(ShrinkLine);
  l.stepLinesOff = off;
  off += p * 2 * kLine;
  l.mailCountersOff = off;
  off += p * p * 2 * kLine;
  l.slotHeadersOff = off;
  off += kDataKinds * p * 2 * kLine;
  l.slotsOff = alignUp(off, kPage);
  off = l.slotsOff + kDataKinds * p * 2 * l.slotBytes;
  l.mailOff = off;
  l.mailStride = alignUp(sizeof(MailHeader) + l.mailBytes, kPage);
  l.total = l.mailOff + p * p * 2 * l.mailStride;
  return l;
}

std::size_t Layout::stepLineOff(int rank, int parity) const {
  return stepLinesOff + (static_cast<std::size_t>(rank) * 2 + parity) * kLine;
}
std::size_t Layout::mailCounterOff(int from, int to, int which) const {
  return mailCountersOff + ((static_cast<std::size_t>(from) * size + to) * 2 + which) * kLine;
}
std::size_t Layout::slotHeaderOff(int kind, int rank, int parity) const {
  return slotHeadersOff + ((static_cast<std::size_t>(kind) * size + rank) * 2 + parity) * kLine;
}
std::size_t Layout::slotOff(int kind, int rank, int parity) const {
  return slotsOff + ((static_cast<std::size_t>(kind) * size + rank) * 2 + parity) * slotBytes;
}
std::size_t Layout::mailSlotOff(int from, int to, int parity) const {
  return mailOff + ((static_cast<std::size_t>(from) * size + to) * 2 + parity) * mailStride;
}

Segment::~Segment() {
  if (base_) munmap(base_, layout_.total);
}

std::unique_ptr<Segment> Segment::establish(const GatherFn& gather, int gatherRank, int gatherSize,
                                            int leader, int memberRank, int memberSize,
                                            std::size_t bufferBytes, const char* op) {
  const bool isLeader = leader >= 0 && leader == gatherRank;
  NameRecord mine{};
  std::string name;
  char* base = nullptr;
  Layout layout;
  if (isLeader) {
    layout = Layout::compute(memberSize, bufferBytes);
    mine.bufferBytes = bufferBytes;
    base = createRecorded(layout.total, name, mine.created);
    if (base) {
      auto* h = reinterpret_cast<Header*>(base);
      h->magic = kMagic;
      h->size = memberSize;
      h->totalBytes = layout.total;
    }
  }
  // From here on the leader unlinks the name before leaving, whatever happens.
  auto unlinkName = [&] {
    if (isLeader && base) shm_unlink(name.c_str());
  };
  auto unmap = [&] {
    if (base) munmap(base, layout.total);
    base = nullptr;
  };
  const auto n = static_cast<std::size_t>(gatherSize);
  try {
    std::vector<NameRecord> names(n);
    gather(&mine, names.data(), sizeof(NameRecord));
    MapRecord mapped{leader, 0};
    const NameRecord* theirs = leader >= 0 ? &names[static_cast<std::size_t>(leader)] : nullptr;
    if (theirs && theirs->created.error == 0 && !isLeader) {
      layout = Layout::compute(memberSize, theirs->bufferBytes);
      char nameBuf[sizeof(theirs->created.name) + 1] = {};
      std::memcpy(nameBuf, theirs->created.name, sizeof(theirs->created.name));
      const int fd = shm_open(nameBuf, O_RDWR, 0);
      struct stat st {};
      if (fd < 0 || fstat(fd, &st) != 0) {
        mapped.error = errno ? errno : EIO;
      } else if (static_cast<std::size_t>(st.st_size) != layout.total) {
        mapped.error = EBADF;
      } else {
        void* m = mmap(nullptr, layout.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
          mapped.error = errno;
        } else {
          base = static_cast<char*>(m);
          const auto* h = reinterpret_cast<const Header*>(base);
          if (h->magic != kMagic || h->size != memberSize) mapped.error = EBADF;
        }
      }
      if (fd >= 0) close(fd);
    }
    if (base && mapped.error == 0) {
      reinterpret_cast<RankInfo*>(base + layout.pidsOff)[memberRank].pid.store(
          static_cast<std::int32_t>(getpid()));
    }
    std::vector<MapRecord> all(n);
    gather(&mapped, all.data(), sizeof(MapRecord));
    // Every member has mapped (or failed): the name is no longer needed.
    unlinkName();
    if (leader < 0) return nullptr;
    if (theirs->created.error == EMFILE || theirs->created.error == ENFILE) {
      throwError(ErrorCode::kSystemError, memberRank, op,
                 fmt::format("shm backend: the leader could not open the shared-memory segment: "
                             "{} (the process's descriptors, `ulimit -n`, or the system's are "
                             "used up; space in /dev/shm is not the problem)",
                             std::strerror(theirs->created.error)));
    }
    if (theirs->created.error != 0) {
      char step[sizeof(theirs->created.step) + 1] = {};
      std::memcpy(step, theirs->created.step, sizeof(theirs->created.step));
      // The largest EPCOMM_BUFFSIZE (MiB) whose segment fits the space left, if any.
      const std::size_t mib = bufferBytes >> 20;
      std::size_t fits = 0;
      for (std::size_t lo = 1, hi = mib; lo <= hi;) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (Layout::compute(memberSize, mid << 20).total <= theirs->created.freeBytes) {
          fits = mid;
          lo = mid + 1;
        } else {
          hi = mid - 1;
        }
      }
      throwError(ErrorCode::kSystemError, memberRank, op,
                 fmt::format("shm backend: /dev/shm cannot hold the communicator's shared-memory "
                             "segment: {}; the segment is sized by EPCOMM_BUFFSIZE (alias "
                             "HCCL_BUFFSIZE, now {} MiB) on {} ranks: {}give /dev/shm more space "
                             "(a container's --shm-size)",
                             shmSpaceText(Layout::compute(memberSize, bufferBytes).total,
                                          theirs->created.freeBytes, step, theirs->created.error),
                             mib, memberSize,
                             fits > 0 ? fmt::format("set EPCOMM_BUFFSIZE={} or less, or ", fits)
                                      : std::string("no EPCOMM_BUFFSIZE fits; ")));
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (all[r].leader == leader && all[r].error != 0) {
        throwError(ErrorCode::kSystemError, memberRank, op,
                   fmt::format("shm backend: rank {} (of the bootstrap group) could not map the "
                               "segment: {}",
                               r, describe("map", all[r].error)));
      }
    }
  } catch (...) {
    unlinkName();
    unmap();
    throw;
  }
  return std::unique_ptr<Segment>(new Segment(base, layout));
}

}  // namespace epcomm::shm
