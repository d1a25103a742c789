// Ring reduce-scatter (algorithms.h), pipelined by chunks.
//
// Rank r, step k (0 .. P-2): sends block r-k-1 to r+1 and receives block r-k-2 from r-1 (mod
// P); step 0 sends its own data of block r-1, later steps forward the chunks they just
// reduced, and the last step receives block r, whose reduction is the result. Every rank
// walks its receives in (step, chunk) order with kChunksAhead of them posted into a ring of
// scratch slots; a chunk is reduced (incoming partial first, own data second) and forwarded
// as soon as it arrived, while the next ones are still arriving.
//
// No deadlock: a receive is posted once the one kChunksAhead earlier was reduced, so
// posting depends on this rank's progress only; a wait on a send (before its staging chunk
// is reused two steps later) needs the right neighbour to reach an earlier step, and the
// wait on the first step's chunk c (before result chunk c is written) needs it to reach an
// earlier chunk. So every wait depends on something earlier of another rank.
#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>
#include <vector>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void ringReduceScatterV(Transport& t, const Reduction& red, const void* send,
                        const std::size_t* counts, const std::size_t* displs, void* out,
                        void* stage, std::size_t chunkBytes, std::uint32_t firstStep) {
  const int size = t.size();
  const int rank = t.rank();
  const std::size_t es = red.elementSize();
  const auto* in = static_cast<const std::byte*>(send);
  auto* result = static_cast<std::byte*>(out);
  if (size == 1) {
    if (counts[0] > 0 && result != in + displs[0] * es) {
      std::memmove(result, in + displs[0] * es, counts[0] * es);
    }
    red.finish(out, counts[0], 1);
    return;
  }
  const std::size_t per = chunkElements(chunkBytes, es);
  const std::size_t maxCount = *std::max_element(counts, counts + size);
  if (maxCount == 0) return;
  const std::size_t maxChunks = chunkCount(maxCount, per);
  const int left = (rank + size - 1) % size;
  const int right = (rank + 1) % size;
  const int last = size - 2;
  const auto recvBlock = [&](int k) { return (rank - k - 2 + 2 * size) % size; };
  const auto stepOf = [&](int k, std::size_t c) {
    return static_cast<std::uint32_t>(firstStep + static_cast<std::size_t>(k) * maxChunks + c);
  };
  const auto length = [&](int block, std::size_t c) {
    return std::min(per, counts[block] - c * per);
  };

  // Step 0: this rank's own data of block rank - 1, as it is.
  const int firstBlock = (rank + size - 1) % size;
  std::vector<std::size_t> firstSends;
  for (std::size_t c = 0; c < chunkCount(counts[firstBlock], per); ++c) {
    firstSends.push_back(t.postSend(right, stepOf(0, c), in + (displs[firstBlock] + c * per) * es,
                                    length(firstBlock, c) * es));
  }

  // The receives, in (step, chunk) order over the non-empty blocks.
  struct Position {
    int step = 0;
    std::size_t chunk = 0;
  };
  const auto settle = [&](Position& p) {
    while (p.step <= last && p.chunk >= chunkCount(counts[recvBlock(p.step)], per)) {
      ++p.step;
      p.chunk = 0;
    }
  };
  const std::size_t slotElements = std::min(per, maxCount);
  auto* slots = static_cast<std::byte*>(t.scratch(kChunksAhead * slotElements * es, 0));
  std::vector<std::size_t> slotOps(kChunksAhead);
  Position next;
  settle(next);
  std::size_t posted = 0;
  const auto postNext = [&] {
    if (next.step > last) return;
    const std::size_t slot = posted % kChunksAhead;
    slotOps[slot] =
        t.postRecv(left, stepOf(next.step, next.chunk), slots + slot * slotElements * es,
                   length(recvBlock(next.step), next.chunk) * es);
    ++posted;
    ++next.chunk;
    settle(next);
  };
  for (std::size_t i = 0; i < kChunksAhead; ++i) postNext();

  // Partials travel from `stage` or from two block-sized halves of scratch by step parity;
  // a half's chunk is rewritten two steps later, once its send completed.
  auto* staging = static_cast<std::byte*>(stage);
  const bool ownStaging = staging == nullptr;
  if (ownStaging && last > 0) staging = static_cast<std::byte*>(t.scratch(2 * maxCount * es, 1));
  std::deque<std::pair<std::size_t, std::size_t>> stagedSends;  // (k * maxChunks + c, op)

  std::size_t firstSendsDone = 0;
  Position at;
  settle(at);
  for (std::size_t i = 0; at.step <= last; ++i, ++at.chunk, settle(at)) {
    t.wait(slotOps[i % kChunksAhead]);
    const int block = recvBlock(at.step);
    const std::size_t n = length(block, at.chunk);
    const std::byte* incoming = slots + (i % kChunksAhead) * slotElements * es;
    const std::byte* own = in + (displs[block] + at.chunk * per) * es;
    if (at.step == last) {
      // out may be send itself: for rank 1 its block 0 is what the first sends read. Each
      // chunk waits only for its own first send (all of them at once could deadlock P = 2:
      // the right neighbour posts those receives as it writes its own result).
      for (; firstSendsDone < firstSends.size() && firstSendsDone <= at.chunk; ++firstSendsDone) {
        t.wait(firstSends[firstSendsDone]);
      }
      red.combine(result + at.chunk * per * es, incoming, own, n);
      postNext();
      continue;
    }
    std::byte* partial;
    if (ownStaging) {
      partial = staging + ((at.step % 2) * maxCount + at.chunk * per) * es;
      if (at.step >= 2) {
        const std::size_t previous = static_cast<std::size_t>(at.step - 2) * maxChunks + at.chunk;
        while (!stagedSends.empty() && stagedSends.front().first <= previous) {
          t.wait(stagedSends.front().second);
          stagedSends.pop_front();
        }
      }
    } else {
      partial = staging + (displs[block] + at.chunk * per) * es;
    }
    red.combine(partial, incoming, own, n);
    postNext();
    const std::size_t op = t.postSend(right, stepOf(at.step + 1, at.chunk), partial, n * es);
    if (ownStaging) {
      stagedSends.emplace_back(static_cast<std::size_t>(at.step) * maxChunks + at.chunk, op);
    }
  }
  t.waitAll();
  red.finish(out, counts[rank], size);
}

void reduceScatterRing(Transport& t, const Reduction& red, const void* send, void* recv,
                       std::size_t recvCount, std::size_t chunkBytes) {
  const auto size = static_cast<std::size_t>(t.size());
  const std::vector<std::size_t> counts(size, recvCount);
  std::vector<std::size_t> displs(size);
  for (std::size_t b = 0; b < size; ++b) displs[b] = b * recvCount;
  ringReduceScatterV(t, red, send, counts.data(), displs.data(), recv, nullptr, chunkBytes, 0);
}

}  // namespace epcomm::ucx
