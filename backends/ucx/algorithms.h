// The ucx backend's collective algorithms, one per file, over a Transport (transport.h): rank
// arithmetic only. Sizes are in bytes unless named count. Every rank ends with the same bits:
// each element is reduced along one path (recursive doubling combines the lower half's
// partial first; the ring reduces each block along the ring once, then copies it around).
// In place: where the Backend ABI allows it (comm/backend.h), send == recv. Scratch: each
// algorithm asks for slot 0 and slot 1 at most once per call.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backends/ucx/transport.h"

namespace epcomm::ucx {

// Latency: log2 p2 exchanges of the whole message, p2 the largest power of two <= P (ranks
// beyond p2 fold into rank - p2 first and get the result back at the end). Scratch slot 0:
// one message. count 0 sends nothing.
void allReduceRecursiveDoubling(Transport& t, const Reduction& red, const void* send, void* recv,
                                std::size_t count);

// Bandwidth: ring reduce-scatter then ring all-gather, each block split into chunks of at
// most chunkBytes (whole elements, at least one) so a chunk travels on while the next is
// reduced. count may be smaller than the ranks (empty blocks). Block b (count / P elements,
// one more for b < count % P) is finished (avg) by rank b before the all-gather. Scratch
// slot 0: kChunksAhead chunks.
void allReduceRing(Transport& t, const Reduction& red, const void* send, void* recv,
                   std::size_t count, std::size_t chunkBytes);

// recv (recvCount elements) = the reduction of block `rank` of every rank's send
// (size * recvCount elements). Ring, chunked as above. recv is apart from send, or send's
// block `rank` (in place, the ABI's form), or send itself (not in place: the result then
// overwrites send's block 0, and only once every other block was read and sent). Scratch:
// slot 0 kChunksAhead chunks, slot 1 two blocks (P > 2).
void reduceScatterRing(Transport& t, const Reduction& red, const void* send, void* recv,
                       std::size_t recvCount, std::size_t chunkBytes);

// recv = every rank's block, block r (recvBytes[r] bytes) at recvDispls[r]; this rank's
// block comes from send (sendBytes == recvBytes[rank]), or is already in place when send ==
// recv + recvDispls[rank]. Ring: P - 1 steps, each block chunked by chunkBytes.
void allGatherVRing(Transport& t, const void* send, std::size_t sendBytes, void* recv,
                    const std::size_t* recvBytes, const std::size_t* recvDispls,
                    std::size_t chunkBytes);

// Latency all-gather of equal blocks (bytesPerRank): Bruck's ceil(log2 P) steps through
// scratch (slot 0: P blocks), then one rotation into recv. In place: send == recv + rank *
// bytesPerRank.
void allGatherBruck(Transport& t, const void* send, void* recv, std::size_t bytesPerRank);

// buf (bytes) from root to every rank: binomial tree, the message cut into chunks of at most
// chunkBytes, each forwarded as soon as it arrived.
void broadcastBinomial(Transport& t, void* buf, std::size_t bytes, int root,
                       std::size_t chunkBytes);

// Every rank sends sendBytes[r] bytes at sendDispls[r] to rank r and receives recvBytes[r]
// bytes at recvDispls[r] from it; the own block is copied. Pairwise order (step s: to
// rank + s, from rank - s), at most `window` exchanges in flight (window < 1 counts as 1).
// Every exchange is posted, an empty block as a zero-byte message with a null buffer. In
// place (send == recv with equal layouts) the send blocks go through scratch slot 0 first.
void allToAllVPairwise(Transport& t, const void* send, const std::size_t* sendBytes,
                       const std::size_t* sendDispls, void* recv, const std::size_t* recvBytes,
                       const std::size_t* recvDispls, int window);

// Dissemination barrier: ceil(log2 P) rounds of empty messages.
void barrierDissemination(Transport& t);

// ---- Building blocks of the ring algorithms (reduceScatterRing and allGatherVRing are one
// each, allReduceRing the two in a row) and what the algorithm files share. ----

// Chunks each ring or tree keeps posted ahead: receives of later chunks (of later steps too)
// are posted while earlier ones are reduced and forwarded.
inline constexpr std::size_t kChunksAhead = 8;

// Elements per chunk: chunkBytes rounded down to whole elements, at least one.
inline std::size_t chunkElements(std::size_t chunkBytes, std::size_t elementSize) {
  const std::size_t n = chunkBytes / elementSize;
  return n == 0 ? 1 : n;
}
// Chunks of at most `per` elements covering n (none for n == 0).
inline std::size_t chunkCount(std::size_t n, std::size_t per) {
  return n == 0 ? 0 : (n - 1) / per + 1;
}

// Ring reduce-scatter of blocks of any sizes: block b is counts[b] elements at element
// displs[b] of send; this rank's block, reduced over every rank and finished, lands at out.
// Block b is reduced along the ring from rank b + 1 to rank b, incoming partial first.
// Partials travel from `stage` (block b at element displs[b], block `rank` untouched; may be
// send itself) or, when stage is null, from scratch slot 1 (two blocks); incoming chunks land
// in scratch slot 0 (kChunksAhead chunks). out is send's block `rank` (in place), apart from
// send, or, with equal blocks, send itself (reduceScatterRing's recv == send): a chunk of out
// is written only after every other block was read and the same chunk of the first step's
// block was sent.
// Messages use steps firstStep + k * maxChunks + c (step k of P - 1, chunk c; maxChunks: of
// the largest block).
void ringReduceScatterV(Transport& t, const Reduction& red, const void* send,
                        const std::size_t* counts, const std::size_t* displs, void* out,
                        void* stage, std::size_t chunkBytes, std::uint32_t firstStep);

// allGatherVRing with its messages at steps firstStep + s * maxChunks + c (step s of P - 1,
// chunk c; maxChunks: of the largest block). Incoming chunks land in recv directly.
void ringAllGatherV(Transport& t, const void* send, std::size_t sendBytes, void* recv,
                    const std::size_t* recvBytes, const std::size_t* recvDispls,
                    std::size_t chunkBytes, std::uint32_t firstStep);

}  // namespace epcomm::ucx
