// Pairwise all-to-all (algorithms.h): exchange s (1 .. P-1) sends to rank + s and receives
// from rank - s, at most `window` exchanges in flight (the oldest is waited before another
// starts). Every exchange sends and receives, empty blocks as zero-byte messages (null
// buffer), so both sides always post the same messages.
#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void allToAllVPairwise(Transport& t, const void* send, const std::size_t* sendBytes,
                       const std::size_t* sendDispls, void* recv, const std::size_t* recvBytes,
                       const std::size_t* recvDispls, int window) {
  const int size = t.size();
  const int rank = t.rank();
  auto* out = static_cast<std::byte*>(recv);
  const auto* in = static_cast<const std::byte*>(send);
  if (send == recv) {
    // In place: the blocks still to be sent would be overwritten by those received.
    std::size_t extent = 0;
    for (int p = 0; p < size; ++p) {
      if (sendBytes[p] > 0) extent = std::max(extent, sendDispls[p] + sendBytes[p]);
    }
    if (extent > 0) {
      auto* copy = static_cast<std::byte*>(t.scratch(extent, 0));
      std::memcpy(copy, send, extent);
      in = copy;
    }
  }
  const std::size_t own = std::min(sendBytes[rank], recvBytes[rank]);
  if (own > 0 && out + recvDispls[rank] != in + sendDispls[rank]) {
    std::memmove(out + recvDispls[rank], in + sendDispls[rank], own);
  }
  const std::size_t inFlight = static_cast<std::size_t>(std::max(window, 1));
  std::deque<std::pair<std::size_t, std::size_t>> exchanges;  // (receive op, send op)
  for (int s = 1; s < size; ++s) {
    if (exchanges.size() == inFlight) {
      t.wait(exchanges.front().first);
      t.wait(exchanges.front().second);
      exchanges.pop_front();
    }
    const int to = (rank + s) % size;
    const int from = (rank - s + size) % size;
    const auto step = static_cast<std::uint32_t>(s);
    const std::size_t r = t.postRecv(
        from, step, recvBytes[from] > 0 ? out + recvDispls[from] : nullptr, recvBytes[from]);
    const std::size_t w =
        t.postSend(to, step, sendBytes[to] > 0 ? in + sendDispls[to] : nullptr, sendBytes[to]);
    exchanges.emplace_back(r, w);
  }
  t.waitAll();
}

}  // namespace epcomm::ucx
