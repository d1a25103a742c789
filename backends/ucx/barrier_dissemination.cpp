// Dissemination barrier (algorithms.h): in round j this rank sends an empty message to
// rank + 2^j and waits for the one from rank - 2^j. After round j it has heard, directly or
// not, from the 2^(j+1) - 1 ranks before it, so after ceil(log2 P) rounds from every rank.
#include "backends/ucx/algorithms.h"

namespace epcomm::ucx {

void barrierDissemination(Transport& t) {
  const int size = t.size();
  const int rank = t.rank();
  std::byte token{};
  std::byte sink{};
  std::uint32_t step = 0;
  for (int distance = 1; distance < size; distance *= 2, ++step) {
    t.sendRecv((rank + distance) % size, &token, 0, (rank - distance + size) % size, &sink, 0,
               step);
  }
}

}  // namespace epcomm::ucx
