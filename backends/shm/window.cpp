#include "backends/shm/window.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "comm/error.h"

namespace epcomm::shm {
namespace {

constexpr std::uint32_t kWindowMagic = 0x65707377;  // "epsw"
constexpr std::size_t kPage = 4096;

struct WindowHeader {
  std::uint32_t magic;
  std::int32_t size;
  std::uint64_t bytes;
  std::int64_t numSignals;
};

// What rank 0 publishes: the file's name, or the step that failed and its errno.
using NameRecord = ShmCreation;

// Overflow-checked a + b and a * b on sizes; false on overflow.
bool add(std::size_t a, std::size_t b, std::size_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}
bool mul(std::size_t a, std::size_t b, std::size_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}
bool alignUp(std::size_t v, std::size_t a, std::size_t& out) {
  if (!add(v, a - 1, out)) return false;
  out = out / a * a;
  return true;
}

struct Geometry {
  std::size_t dataStride = 0, signalsOff = 0, signalStride = 0, total = 0;
};

bool geometry(int size, std::size_t bytes, int numSignals, Geometry& g) {
  const auto p = static_cast<std::size_t>(size);
  std::size_t dataAll = 0, signalAll = 0, sig = 0;
  if (!alignUp(bytes, kPage, g.dataStride) || !mul(g.dataStride, p, dataAll)) return false;
  if (!mul(static_cast<std::size_t>(numSignals), sizeof(SignalSlot), sig) ||
      !alignUp(sig, kLine, g.signalStride) || !mul(g.signalStride, p, signalAll)) {
    return false;
  }
  std::size_t off = 0;
  if (!add(kPage, dataAll, off)) return false;
  g.signalsOff = off;
  if (!add(off, signalAll, off) || !alignUp(off, kPage, g.total)) return false;
  return g.total <= static_cast<std::size_t>(INT64_MAX);
}

std::string describe(const char* step, int err) {
  return fmt::format("{}: {}", step, std::strerror(err));
}

}  // namespace

std::size_t Window::totalBytes(int size, std::size_t bytes, int numSignals) {
  Geometry g;
  return geometry(size, bytes, numSignals, g) ? g.total : 0;
}

Window::Window(char* base, std::size_t total, int rank, int size, std::size_t bytes, int numSignals,
               std::uint64_t id)
    : base_(base), total_(total), rank_(rank), bytes_(bytes), numSignals_(numSignals), id_(id) {
  Geometry g;
  geometry(size, bytes, numSignals, g);
  dataStride_ = g.dataStride;
  signalsOff_ = g.signalsOff;
  signalStride_ = g.signalStride;
}

Window::~Window() {
  if (base_) munmap(base_, total_);
}

bool Window::containsLocal(const void* p, std::size_t n) const {
  const auto lo = reinterpret_cast<std::uintptr_t>(data(rank_));
  const auto q = reinterpret_cast<std::uintptr_t>(p);
  return q >= lo && q - lo <= bytes_ && n <= bytes_ - (q - lo);
}

std::unique_ptr<Window> Window::establish(const GatherFn& gather, int rank, int size,
                                          std::size_t bytes, int numSignals, std::uint64_t id,
                                          const char* op) {
  Geometry g;
  if (!geometry(size, bytes, numSignals, g)) {
    // Every rank has the same (agreed) arguments: all fail here alike, before any gather.
    throwError(ErrorCode::kInvalidArgument, rank, op,
               fmt::format("shm backend: a window of {} bytes and {} signals on {} ranks does not "
                           "fit the address space",
                           bytes, numSignals, size));
  }
  const std::size_t total = g.total;
  const bool leader = rank == 0;
  NameRecord mine{};
  std::string name;
  char* base = nullptr;
  if (leader) {
    base = createRecorded(total, name, mine);
    if (base) {
      auto* h = reinterpret_cast<WindowHeader*>(base);
      h->magic = kWindowMagic;
      h->size = size;
      h->bytes = bytes;
      h->numSignals = numSignals;
    }
  }
  // From here on rank 0 unlinks the name before leaving, whatever happens.
  auto unlinkName = [&] {
    if (leader && base) shm_unlink(name.c_str());
  };
  const auto n = static_cast<std::size_t>(size);
  try {
    std::vector<NameRecord> names(n);
    gather(&mine, names.data(), sizeof(NameRecord));
    const NameRecord& theirs = names[0];
    std::int32_t mapped = 0;  // errno of this rank's mapping, 0 when mapped
    if (theirs.error == 0 && !leader) {
      char nameBuf[sizeof(theirs.name) + 1] = {};
      std::memcpy(nameBuf, theirs.name, sizeof(theirs.name));
      const int fd = shm_open(nameBuf, O_RDWR, 0);
      struct stat st {};
      if (fd < 0 || fstat(fd, &st) != 0) {
        mapped = errno ? errno : EIO;
      } else if (static_cast<std::size_t>(st.st_size) != total) {
        mapped = EBADF;
      } else {
        void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
          mapped = errno;
        } else {
          base = static_cast<char*>(m);
          const auto* h = reinterpret_cast<const WindowHeader*>(base);
          if (h->magic != kWindowMagic || h->size != size || h->bytes != bytes ||
              h->numSignals != numSignals) {
            mapped = EBADF;
          }
        }
      }
      if (fd >= 0) close(fd);
    }
    std::vector<std::int32_t> all(n);
    gather(&mapped, all.data(), sizeof(mapped));
    // Every rank has mapped (or failed): the name is no longer needed. A last round makes
    // every rank return only once it is gone from /dev/shm.
    unlinkName();
    std::vector<char> done(n);
    const char unlinked = 1;
    gather(&unlinked, done.data(), 1);
    if (theirs.error != 0) {
      char step[sizeof(theirs.step) + 1] = {};
      std::memcpy(step, theirs.step, sizeof(theirs.step));
      throwError(
          ErrorCode::kSystemError, rank, op,
          fmt::format("shm backend: /dev/shm cannot hold a window of {} bytes per rank on "
                      "{} ranks: {}; make the window smaller or give /dev/shm more space (a "
                      "container's --shm-size)",
                      bytes, size, shmSpaceText(total, theirs.freeBytes, step, theirs.error)));
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (all[r] != 0) {
        throwError(ErrorCode::kSystemError, rank, op,
                   fmt::format("shm backend: rank {} could not map a window: {}", r,
                               describe("map", all[r])));
      }
    }
  } catch (...) {
    unlinkName();
    if (base) munmap(base, total);
    throw;
  }
  return std::unique_ptr<Window>(new Window(base, total, rank, size, bytes, numSignals, id));
}

}  // namespace epcomm::shm
