// All-reduce: one-shot for small messages, reduce-scatter + all-gather (two-shot) for large,
// both chunked through the all-reduce slots. Every element is reduced over ranks 0..P-1 in
// that order (one-shot: by every rank; two-shot: by exactly one rank, then copied), so every
// rank ends with the same bits.

#include "backends/shm/algorithms.h"
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

void allReduceInline(const Step& s, const void* send, void* recv, std::size_t count, DataType dtype,
                     ReduceOp op) {
  const std::size_t bytes = count * dtypeSize(dtype);
  s.channel.begin();
  copyBytes(s.channel.inlineData(), send, bytes);
  s.channel.exchange(s.clock);
  Sources srcs(s.size);
  for (int r = 0; r < s.size; ++r) srcs[r] = s.channel.inlineData(r);
  reduce(recv, srcs.data(), s.size, count, dtype, op, s.size);
}

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

void allReduceTwoShot(const Step& s, const void* send, void* recv, std::size_t count,
                      DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const std::size_t chunk = s.channel.capacity() / es;
  Sources srcs(s.size);
  const auto* in = static_cast<const char*>(send);
  auto* out = static_cast<char*>(recv);
  for (std::size_t k = 0, n = chunkCount(count, chunk); k < n; ++k) {
    const Piece p = pieceOf(count, chunk, k);
    // Step 1: every rank publishes its chunk.
    copyBytes(s.channel.begin(), in + p.lo * es, p.len * es);
    s.channel.exchange(s.clock);
    // Step 2: each rank reduces its share of the chunk into its next slot (same offset).
    const Piece mine = shareOf(p.len, s.rank, s.size);
    for (int r = 0; r < s.size; ++r) srcs[r] = s.channel.slot(r) + mine.lo * es;
    char* reduced = s.channel.begin();
    reduce(reduced + mine.lo * es, srcs.data(), s.size, mine.len, dtype, op, s.size);
    s.channel.exchange(s.clock);
    // Every rank gathers every share.
    for (int i = 0; i < s.size; ++i) {
      const int r = (s.rank + i) % s.size;
      const Piece share = shareOf(p.len, r, s.size);
      copyBytes(out + (p.lo + share.lo) * es, s.channel.slot(r) + share.lo * es, share.len * es);
    }
  }
}

}  // namespace epcomm::shm
