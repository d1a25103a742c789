// Ring all-reduce (algorithms.h): the ring reduce-scatter of P blocks (the first count % P
// one element longer), each finished by its owner, then the ring all-gather of the blocks in
// place. Partials travel from recv's own copy of each block (recv is overwritten by the
// all-gather anyway), so only the incoming chunks need scratch.
#include <cstring>
#include <vector>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void allReduceRing(Transport& t, const Reduction& red, const void* send, void* recv,
                   std::size_t count, std::size_t chunkBytes) {
  const auto size = static_cast<std::size_t>(t.size());
  const auto rank = static_cast<std::size_t>(t.rank());
  const std::size_t es = red.elementSize();
  std::vector<std::size_t> counts(size), displs(size), bytes(size), byteDispls(size);
  for (std::size_t b = 0, at = 0; b < size; ++b) {
    counts[b] = count / size + (b < count % size ? 1 : 0);
    displs[b] = at;
    bytes[b] = counts[b] * es;
    byteDispls[b] = at * es;
    at += counts[b];
  }
  auto* out = static_cast<std::byte*>(recv);
  ringReduceScatterV(t, red, send, counts.data(), displs.data(), out + byteDispls[rank], recv,
                     chunkBytes, 0);
  if (size == 1) return;
  // Both phases cut blocks into the same chunks; the all-gather's steps follow.
  const std::size_t maxChunks = chunkCount(counts[0], chunkElements(chunkBytes, es));
  ringAllGatherV(t, out + byteDispls[rank], bytes[rank], recv, bytes.data(), byteDispls.data(),
                 chunkElements(chunkBytes, es) * es,
                 static_cast<std::uint32_t>((size - 1) * maxChunks));
}

}  // namespace epcomm::ucx
