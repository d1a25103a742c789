// Recursive-doubling all-reduce (algorithms.h).
//
// With p2 the largest power of two <= P, rank p2 + i (i < P - p2) first sends its data to
// rank i, which combines (its own data first) and takes part for both; ranks 0 .. p2-1 then
// exchange their partials with rank ^ mask for mask = 1, 2, .., p2/2, both sides combining
// the partial of the lower ranks first, so partners end every round with the same bits. The
// result is finished on ranks 0 .. p2-1 and rank i sends it back to rank p2 + i.
#include <cstring>

#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void allReduceRecursiveDoubling(Transport& t, const Reduction& red, const void* send, void* recv,
                                std::size_t count) {
  const int size = t.size();
  const int rank = t.rank();
  const std::size_t bytes = count * red.elementSize();
  if (count == 0) return;
  if (size == 1) {
    if (send != recv) std::memmove(recv, send, bytes);
    red.finish(recv, count, 1);
    return;
  }
  int pow2 = 1;
  std::uint32_t rounds = 0;
  while (pow2 * 2 <= size) {
    pow2 *= 2;
    ++rounds;
  }
  const int extra = size - pow2;
  // Steps: 0 the fold, 1 .. rounds the exchanges, rounds + 1 the result back.
  const std::uint32_t resultStep = rounds + 1;

  if (rank >= pow2) {
    const int partner = rank - pow2;
    if (send != recv) {
      t.postRecv(partner, resultStep, recv, bytes);
      t.postSend(partner, 0, send, bytes);
    } else {
      // In place the result may land only once the data left.
      t.postSend(partner, 0, send, bytes);
      t.waitAll();
      t.postRecv(partner, resultStep, recv, bytes);
    }
    t.waitAll();
    return;
  }

  void* incoming = t.scratch(bytes, 0);
  if (rank < extra) {
    t.postRecv(rank + pow2, 0, incoming, bytes);
    t.waitAll();
    red.combine(recv, send, incoming, count);
  } else if (send != recv) {
    std::memcpy(recv, send, bytes);
  }
  std::uint32_t step = 1;
  for (int mask = 1; mask < pow2; mask *= 2, ++step) {
    const int partner = rank ^ mask;
    t.sendRecv(partner, recv, bytes, partner, incoming, bytes, step);
    if (rank < partner) {
      red.combine(recv, recv, incoming, count);
    } else {
      red.combine(recv, incoming, recv, count);
    }
  }
  red.finish(recv, count, size);
  if (rank < extra) {
    t.postSend(rank + pow2, resultStep, recv, bytes);
    t.waitAll();
  }
}

}  // namespace epcomm::ucx
