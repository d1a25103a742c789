// Recursive doubling of one message (rank arithmetic only, over transport.h): the exchange
// behind the latency all-reduce and the call check's settlement (call_check.h).
//
// With p2 the largest power of two <= P, rank p2 + i (i < P - p2) first sends its message to
// rank i, which combines the two and takes part for both; ranks 0 .. p2-1 then exchange
// their partials with rank ^ mask for mask = 1, 2, .., p2/2; rank i finally sends the result
// back to rank p2 + i. combine(lower, upper, out) always gets the partial of the lower ranks
// first (out is one of them), so both partners of a round end with the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backends/ucx/transport.h"

namespace epcomm::ucx {

// buf holds this rank's message of `bytes` on entry and every rank's combination on return.
// Scratch slot 0: one message. Steps 0 .. log2(p2) + 1.
template <typename Combine>
void recursiveDoubling(Transport& t, void* buf, std::size_t bytes, Combine&& combine) {
  const int size = t.size();
  const int rank = t.rank();
  if (size == 1) return;
  int pow2 = 1;
  std::uint32_t rounds = 0;
  while (pow2 * 2 <= size) {
    pow2 *= 2;
    ++rounds;
  }
  const int extra = size - pow2;
  const std::uint32_t resultStep = rounds + 1;
  if (rank >= pow2) {
    // The result may land only once this rank's message left.
    t.postSend(rank - pow2, 0, buf, bytes);
    t.waitAll();
    t.postRecv(rank - pow2, resultStep, buf, bytes);
    t.waitAll();
    return;
  }
  void* incoming = t.scratch(bytes, 0);
  if (rank < extra) {
    t.postRecv(rank + pow2, 0, incoming, bytes);
    t.waitAll();
    combine(buf, incoming, buf);
  }
  std::uint32_t step = 1;
  for (int mask = 1; mask < pow2; mask *= 2, ++step) {
    const int partner = rank ^ mask;
    t.sendRecv(partner, buf, bytes, partner, incoming, bytes, step);
    if (rank < partner) {
      combine(buf, incoming, buf);
    } else {
      combine(incoming, buf, buf);
    }
  }
  if (rank < extra) {
    t.postSend(rank + pow2, resultStep, buf, bytes);
    t.waitAll();
  }
}

}  // namespace epcomm::ucx
