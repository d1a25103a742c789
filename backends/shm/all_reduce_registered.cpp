// All-reduce on registered buffers. One-shot: every rank reduces the whole message from
// every rank's send into its recv (in place: into scratch, copied to recv after the exit
// step, since peers read this rank's send until then). Two-shot: rank i reduces its share
// (cache-line aligned) from every rank's send, chunk by chunk through scratch, and writes
// each chunk into every rank's recv; in place is safe because only rank i reads or writes
// share i anywhere, and it reads a chunk on every rank before writing it. Large messages
// write the recvs with non-temporal stores, fenced before the exit step.
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "backends/shm/plan.h"
#include "backends/shm/reduce.h"
#include "backends/shm/registered_algorithms.h"

namespace epcomm::shm {

namespace {

// Messages from this size on write the peers' recv with non-temporal stores: the result
// would not stay in cache anyway, and the stores skip reading the lines first.
constexpr std::size_t kStreamMinBytes = std::size_t{4} << 20;

// dst = src with non-temporal stores where the target allows (SSE2, part of x86-64: no
// run-time dispatch needed); a plain copy elsewhere. The caller fences before publishing.
void streamCopy(char* dst, const char* src, std::size_t n) {
#if defined(__x86_64__)
  const std::size_t head = (16 - reinterpret_cast<std::uintptr_t>(dst) % 16) % 16;
  if (n < head + 64) {
    std::memcpy(dst, src, n);
    return;
  }
  std::memcpy(dst, src, head);
  dst += head;
  src += head;
  n -= head;
  auto* d = reinterpret_cast<__m128i*>(dst);
  const auto* s = reinterpret_cast<const __m128i*>(src);
  const std::size_t vectors = n / 16;
  for (std::size_t i = 0; i + 4 <= vectors; i += 4) {
    const __m128i a = _mm_loadu_si128(s + i), b = _mm_loadu_si128(s + i + 1);
    const __m128i c = _mm_loadu_si128(s + i + 2), e = _mm_loadu_si128(s + i + 3);
    _mm_stream_si128(d + i, a);
    _mm_stream_si128(d + i + 1, b);
    _mm_stream_si128(d + i + 2, c);
    _mm_stream_si128(d + i + 3, e);
  }
  const std::size_t done = vectors / 4 * 4 * 16;
  std::memcpy(dst + done, src + done, n - done);
#else
  std::memcpy(dst, src, n);
#endif
}

void storeFence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

}  // namespace

void allReduceRegisteredOneShot(const Step& s, RegisteredScratch& scratch, void* recv,
                                std::size_t count, DataType dtype, ReduceOp op) {
  const std::size_t bytes = count * dtypeSize(dtype);
  const RegisteredPeers& peers = scratch.peers;
  const bool inPlace = peers.send[s.rank] == recv;
  char* dst = inPlace ? scratch.reserve(bytes) : static_cast<char*>(recv);
  Sources srcs(s.size);
  for (int r = 0; r < s.size; ++r) srcs[r] = peers.send[r];
  reduce(dst, srcs.data(), s.size, count, dtype, op, s.size);
  registeredExit(s);
  if (inPlace) copyBytes(recv, dst, bytes);
}

void allReduceRegisteredTwoShot(const Step& s, RegisteredScratch& scratch, std::size_t count,
                                DataType dtype, ReduceOp op) {
  const std::size_t es = dtypeSize(dtype);
  const RegisteredPeers& peers = scratch.peers;
  // Shares in whole cache lines, so two ranks never write one line of a recv.
  const std::size_t lineElems = std::max<std::size_t>(kLine / es, 1);
  const Piece lines = shareOf(chunkCount(count, lineElems), s.rank, s.size);
  const std::size_t lo = std::min(count, lines.lo * lineElems);
  const std::size_t hi = std::min(count, (lines.lo + lines.len) * lineElems);
  const std::size_t chunk = kRegisteredChunkBytes / es;
  char* tmp = scratch.reserve(kRegisteredChunkBytes);
  const bool stream = count * es >= kStreamMinBytes;
  Sources srcs(s.size);
  for (std::size_t k = 0, n = chunkCount(hi - lo, chunk); k < n; ++k) {
    const Piece p = pieceOf(hi - lo, chunk, k);
    const std::size_t off = (lo + p.lo) * es;
    for (int r = 0; r < s.size; ++r) srcs[r] = peers.send[r] + off;
    reduce(tmp, srcs.data(), s.size, p.len, dtype, op, s.size);
    for (int i = 0; i < s.size; ++i) {
      char* dst = peers.recv[(s.rank + i) % s.size] + off;
      if (stream) {
        streamCopy(dst, tmp, p.len * es);
      } else {
        copyBytes(dst, tmp, p.len * es);
      }
    }
  }
  // Non-temporal stores are weakly ordered: drain them before the exit step publishes.
  if (stream) storeFence();
  registeredExit(s);
}

}  // namespace epcomm::shm
