// Anonymous private memory reserved up front and committed page by page as it is touched,
// so a Buffer's footprint is bounded by its configuration while untouched capacity costs
// no RAM.
#pragma once

#include <cstddef>

namespace epcomm::ep {

class MappedArena {
 public:
  MappedArena() = default;
  // Throws epcomm::Error (kSystemError) naming `what` when the reservation fails.
  MappedArena(std::size_t bytes, int rank, const char* what);
  ~MappedArena();
  MappedArena(MappedArena&& o) noexcept;
  MappedArena& operator=(MappedArena&& o) noexcept;
  MappedArena(const MappedArena&) = delete;
  MappedArena& operator=(const MappedArena&) = delete;

  std::byte* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::byte* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace epcomm::ep
