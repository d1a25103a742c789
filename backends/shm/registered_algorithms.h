// Zero-copy collectives on registered buffers (registry.h), one per file. Each runs after
// the handshake step, which is its entry barrier (every rank's send is ready, no rank uses
// its recv any more), reads peers' registered send buffers and writes registered recv
// buffers directly in this process's mappings, and ends with one exit step, so no rank
// returns while a peer still reads its send or writes its recv. Reductions combine ranks
// 0..P-1 in order (reduce.h), each element by exactly one rank or identically by all, so
// every rank ends with the bits the copy path produces.
#pragma once

#include <cstddef>
#include <vector>

#include "backends/shm/algorithms.h"
#include "backends/shm/registry.h"
#include "comm/types.h"

namespace epcomm::shm {

// Collectives below this many bytes (all-reduce: count * size of the type; all-gather: the
// per-rank block; reduce-scatter: the whole send; broadcast: the message) never take the
// handshake: two steps cost more than the copy they save.
inline constexpr std::size_t kRegisteredMinBytes = 32 << 10;
// All-reduce with every send and recv registered: two-shot (each rank reduces its share and
// writes it into every rank's recv). With only every send registered, up to this size:
// one-shot (every rank reduces the whole message reading every rank's send). Two-shot
// measured faster in place, where every call's input is new; out of place coll-bench
// repeats unchanged sends, which the one-shot then reads from this core's own cache
// (docs/performance.md, "Fourth pass").
inline constexpr std::size_t kRegisteredOneShotMaxBytes = 256 << 10;
// Bytes of the per-rank scratch a reduction goes through (stays in L1/L2).
inline constexpr std::size_t kRegisteredChunkBytes = 32 << 10;

// Per-call scratch of the zero-copy algorithms, kept by the backend (no allocation per call).
struct RegisteredScratch {
  RegisteredPeers peers;
  std::vector<char> bytes;
  char* reserve(std::size_t n) {
    if (bytes.size() < n) bytes.resize(n);
    return bytes.data();
  }
};

// The exit step every zero-copy collective ends with.
inline void registeredExit(const Step& s) {
  s.channel.begin();
  s.channel.exchange(s.clock);
}

void allReduceRegisteredOneShot(const Step& s, RegisteredScratch& scratch, void* recv,
                                std::size_t count, DataType dtype, ReduceOp op);
void allReduceRegisteredTwoShot(const Step& s, RegisteredScratch& scratch, std::size_t count,
                                DataType dtype, ReduceOp op);
void allGatherRegistered(const Step& s, RegisteredScratch& scratch, void* recv,
                         std::size_t sendBytes);
void reduceScatterRegistered(const Step& s, RegisteredScratch& scratch, void* recv,
                             std::size_t recvCount, DataType dtype, ReduceOp op);
void broadcastRegistered(const Step& s, RegisteredScratch& scratch, void* recv, std::size_t bytes,
                         int root);

}  // namespace epcomm::shm
