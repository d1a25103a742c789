// Bruck all-gather of equal blocks (algorithms.h). Scratch holds the blocks rotated so this
// rank's is first: after round j (distance d = 2^j), entry i is the block of rank + i for
// i < min(2d, P). In round j this rank sends its first min(d, P - d) entries to rank - d and
// receives as many from rank + d into entries d ..; one rotation into recv ends it.
#include <algorithm>
#include <cstring>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void allGatherBruck(Transport& t, const void* send, void* recv, std::size_t bytesPerRank) {
  const int size = t.size();
  const int rank = t.rank();
  auto* out = static_cast<std::byte*>(recv);
  const auto at = [&](int r) { return static_cast<std::size_t>(r) * bytesPerRank; };
  if (bytesPerRank == 0) return;
  if (size == 1) {
    if (send != recv) std::memmove(recv, send, bytesPerRank);
    return;
  }
  auto* rotated = static_cast<std::byte*>(t.scratch(at(size), 0));
  std::memcpy(rotated, send, bytesPerRank);
  std::uint32_t step = 0;
  for (int distance = 1; distance < size; distance *= 2, ++step) {
    const int blocks = std::min(distance, size - distance);
    t.sendRecv((rank - distance + size) % size, rotated, at(blocks), (rank + distance) % size,
               rotated + at(distance), at(blocks), step);
  }
  for (int i = 0; i < size; ++i) {
    std::memcpy(out + at((rank + i) % size), rotated + at(i), bytesPerRank);
  }
}

}  // namespace epcomm::ucx
