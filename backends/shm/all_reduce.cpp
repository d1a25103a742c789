// All-reduce: line mode (all_reduce_lines.cpp; 8 B up, measured faster than carrying tiny
// messages in the step line) and one-shot for small messages, pipelined reduce-scatter + all-gather
// (two-shot) for large. Every element is reduced over ranks 0..P-1 in that order (one-shot: by
// every rank; two-shot: by exactly one rank, then copied), so every rank ends with the same bits.

#include <algorithm>

#include "backends/shm/algorithms.h"
#include "backends/shm/kernels.h"
#include "backends/shm/plan.h"
#include "backends/shm/reduce.h"

namespace epcomm::shm {

namespace {

// Asks for every line of the peers' slots at once (small messages), so their transfers
// from the peers' caches overlap instead of following the reduction loop one by one.
void prefetchPeers(const Step& s, std::size_t bytes) {
  constexpr std::size_t kMaxPrefetchBytes = 16 << 10;
  if (bytes > kMaxPrefetchBytes) return;
  for (int i = 1; i < s.size; ++i) {
    const char* p = s.channel.slot((s.rank + i) % s.size);
    for (std::size_t off = 0; off < bytes; off += kLine) __builtin_prefetch(p + off, 0, 3);
  }
}

}  // namespace

void allReduceOneShot(const Step& s, const void* send, void* recv, std::size_t count,
                      DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const std::size_t chunk = s.channel.capacity() / es;
  Sources srcs(s.size);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  for (std::size_t k = 0, n = chunkCount(count, chunk); k < n; ++k) {
    const Piece p = pieceOf(count, chunk, k);
    // In place, recv's chunk k is written only after it was copied into the slot.
    copyBytes(s.channel.begin(), in + p.lo * es, p.len * es);
    s.channel.exchange(s.clock);
    for (int r = 0; r < s.size; ++r) srcs[r] = s.channel.slot(r);
    prefetchPeers(s, p.len * es);
    reduce(out + p.lo * es, srcs.data(), s.size, p.len, dtype, op, s.size);
    if (k + 1 == n) s.channel.prepareNext(p.len * es);
  }
}

// Pipelined two-shot. The message goes in chunks; a slot holds [inputs | results], each
// half one chunk. Step j (j = 0..n) carries, in every rank's slot, its inputs of chunk j for
// the peers' shares (its own share is read straight from send) and its reduced share of
// chunk j - 1. Between exchange j and exchange j + 1 a rank reduces its share of chunk j
// (peers' inputs from their step-j slots, ranks in order) into recv and copies it into its
// step-(j+1) slot, copies the peers' results of chunk j - 1 out of their step-j slots and
// publishes its inputs of chunk j + 1. One synchronisation per chunk.
void allReduceTwoShot(const Step& s, const void* send, void* recv, std::size_t count,
                      DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const std::size_t half = s.channel.capacity() / 2 / kLine * kLine;
  const std::size_t chunk =
      pipelineChunk(half, kPipelineBytes * static_cast<std::size_t>(s.size), es, kLine);
  const std::size_t n = chunkCount(count, chunk);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  // Publishes this rank's inputs of chunk k for every peer's share into `slot`.
  const auto publish = [&](char* slot, std::size_t k) {
    const Piece p = pieceOf(count, chunk, k);
    for (int i = 1; i < s.size; ++i) {
      const Piece share = shareOf(p.len, (s.rank + i) % s.size, s.size);
      copyBytes(slot + share.lo * es, in + (p.lo + share.lo) * es, share.len * es);
    }
  };
  // Copies every peer's reduced share of chunk k out of its slot (`previous`: of the step
  // before the current one).
  const auto gather = [&](std::size_t k, bool previous) {
    const Piece p = pieceOf(count, chunk, k);
    for (int i = 1; i < s.size; ++i) {
      const int r = (s.rank + i) % s.size;
      const Piece share = shareOf(p.len, r, s.size);
      const char* peer = previous ? s.channel.previousSlot(r) : s.channel.slot(r);
      copyBytes(out + (p.lo + share.lo) * es, peer + half + share.lo * es, share.len * es);
    }
  };
  if (n == 0) return;
  Sources srcs(s.size);
  publish(s.channel.begin(), 0);
  s.channel.exchange(s.clock);
  for (std::size_t j = 0; j < n; ++j) {
    // Peers' step-j slots stay readable until this rank posts step j + 1.
    char* next = s.channel.begin();
    const Piece p = pieceOf(count, chunk, j);
    const Piece mine = shareOf(p.len, s.rank, s.size);
    char* result = next + half + mine.lo * es;
    char* own = out + (p.lo + mine.lo) * es;
    for (int r = 0; r < s.size; ++r) {
      srcs[r] = r == s.rank ? in + (p.lo + mine.lo) * es : s.channel.previousSlot(r) + mine.lo * es;
    }
    // Reduced into recv (private, this core's lines; in place exactly send's share, which
    // reduce() allows), then copied into the slot: a vector store into slot lines the peers
    // last read must fetch each line across cores first, a memcpy of whole lines need not.
    // The copy-out stays cached: non-temporal stores measured slower (docs/performance.md).
    reduce(own, srcs.data(), s.size, mine.len, dtype, op, s.size);
    copyBytes(result, own, mine.len * es);
    if (j > 0) gather(j - 1, true);
    if (j + 1 < n) publish(next, j + 1);
    s.channel.exchange(s.clock);
  }
  gather(n - 1, false);
}

}  // namespace epcomm::shm
