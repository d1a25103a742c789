// All-reduce of small messages in line mode (Channel::postLines / readLines): every rank
// publishes its message in slot lines that carry their own step, then reduces every rank's
// message, ranks 0..P-1 in order, once the peers' lines arrived. A peer's data costs one
// cache-line transfer of latency (lines in parallel), with no step line on the critical path.

#include "backends/shm/algorithms.h"
#include "backends/shm/reduce.h"

namespace epcomm::shm {

void allReduceLines(const Step& s, const void* send, void* recv, std::size_t count, DataType dtype,
                    ReduceOp op) {
  const std::size_t bytes = count * dtypeSize(dtype);
  // Every rank's message lands here, contiguous for the reduction (the own one only in
  // place, where recv may not be a source).
  alignas(64) unsigned char stage[kLinesStageBytes];
  s.channel.begin();
  s.channel.postLines(send, bytes);
  Sources srcs(s.size);
  srcs[s.rank] = send;
  if (send == recv) {
    copyBytes(stage + s.rank * bytes, send, bytes);
    srcs[s.rank] = stage + s.rank * bytes;
  }
  for (int i = 1; i < s.size; ++i) {
    const int r = (s.rank + i) % s.size;
    // A peer that disagrees leaves its lines unread; finishLines() then throws (on every
    // rank), before anything reaches recv.
    s.channel.readLines(r, stage + r * bytes, bytes, s.clock);
    srcs[r] = stage + r * bytes;
  }
  s.channel.finishLines(s.clock);
  reduce(recv, srcs.data(), s.size, count, dtype, op, s.size);
  s.channel.prepareNextLines(bytes);
}

}  // namespace epcomm::shm
