// Binomial-tree broadcast (algorithms.h), pipelined by chunks.
//
// Ranks relative to the root (v = rank - root mod P): v's parent is v without its lowest set
// bit, its children v + m for every power of two m below that bit (below P for the root),
// largest subtree first. The root posts every chunk to every child; the others keep
// kChunksAhead chunk receives posted straight into buf and forward each chunk as soon as it
// arrived. Nothing waits on a send before the end, so a rank waits on its parent only.
#include <algorithm>
#include <vector>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void broadcastBinomial(Transport& t, void* buf, std::size_t bytes, int root,
                       std::size_t chunkBytes) {
  const int size = t.size();
  if (size == 1 || bytes == 0) return;
  const int relative = (t.rank() - root + size) % size;
  const auto absolute = [&](int v) { return (v + root) % size; };
  int lowBit = 1;
  if (relative == 0) {
    while (lowBit < size) lowBit *= 2;
  } else {
    while ((relative & lowBit) == 0) lowBit *= 2;
  }
  std::vector<int> children;
  for (int m = lowBit / 2; m >= 1; m /= 2) {
    if (relative + m < size) children.push_back(absolute(relative + m));
  }
  auto* data = static_cast<std::byte*>(buf);
  const std::size_t per = chunkElements(chunkBytes, 1);
  const std::size_t chunks = chunkCount(bytes, per);
  const auto length = [&](std::size_t c) { return std::min(per, bytes - c * per); };
  const auto forward = [&](std::size_t c) {
    for (const int child : children) {
      t.postSend(child, static_cast<std::uint32_t>(c), data + c * per, length(c));
    }
  };

  if (relative == 0) {
    for (std::size_t c = 0; c < chunks; ++c) forward(c);
  } else {
    const int parent = absolute(relative - lowBit);
    std::vector<std::size_t> ahead(kChunksAhead);
    const auto post = [&](std::size_t c) {
      if (c < chunks) {
        ahead[c % kChunksAhead] =
            t.postRecv(parent, static_cast<std::uint32_t>(c), data + c * per, length(c));
      }
    };
    for (std::size_t c = 0; c < kChunksAhead; ++c) post(c);
    for (std::size_t c = 0; c < chunks; ++c) {
      t.wait(ahead[c % kChunksAhead]);
      post(c + kChunksAhead);
      forward(c);
    }
  }
  t.waitAll();
}

}  // namespace epcomm::ucx
