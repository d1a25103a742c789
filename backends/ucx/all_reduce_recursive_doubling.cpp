// Recursive-doubling all-reduce (algorithms.h): recursive_doubling.h on recv, then avg's
// division, the same on every rank.
#include <cstring>

#include "backends/ucx/algorithms.h"
#include "backends/ucx/recursive_doubling.h"

namespace epcomm::ucx {

void allReduceRecursiveDoubling(Transport& t, const Reduction& red, const void* send, void* recv,
                                std::size_t count) {
  if (count == 0) return;
  const std::size_t bytes = count * red.elementSize();
  if (send != recv) std::memcpy(recv, send, bytes);
  recursiveDoubling(t, recv, bytes, [&](const void* lower, const void* upper, void* out) {
    red.combine(out, lower, upper, count);
  });
  red.finish(recv, count, t.size());
}

}  // namespace epcomm::ucx
