#include "ep/src/mapped_arena.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "comm/error.h"

namespace epcomm::ep {

MappedArena::MappedArena(std::size_t bytes, int rank, const char* what) : bytes_(bytes) {
  if (bytes == 0) return;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    bytes_ = 0;
    throwError(ErrorCode::kSystemError, rank, "ep::Buffer",
               fmt::format("cannot reserve {} bytes for {}: {}", bytes, what, std::strerror(err)));
  }
  data_ = static_cast<std::byte*>(p);
}

MappedArena::~MappedArena() {
  if (data_) munmap(data_, bytes_);
}

MappedArena::MappedArena(MappedArena&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

MappedArena& MappedArena::operator=(MappedArena&& o) noexcept {
  if (this != &o) {
    if (data_) munmap(data_, bytes_);
    data_ = std::exchange(o.data_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

}  // namespace epcomm::ep
