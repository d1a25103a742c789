#include "bench/network_bytes.h"

#include <filesystem>
#include <fstream>

namespace epcomm::bench {

std::uint64_t hostSentBytes() {
  std::uint64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/class/net", ec)) {
    if (entry.path().filename() == "lo") continue;
    std::ifstream in(entry.path() / "statistics" / "tx_bytes");
    std::uint64_t bytes = 0;
    if (in >> bytes) total += bytes;
  }
  return total;
}

double networkBytesPerCall(Communicator& comm, std::uint64_t before, std::uint64_t after,
                           int calls) {
  std::int64_t mine = comm.localRank() == 0 ? static_cast<std::int64_t>(after - before) : 0;
  comm.allReduce(&mine, &mine, 1, DataType::kI64, ReduceOp::kSum);
  return calls > 0 ? static_cast<double>(mine) / calls : 0.0;
}

}  // namespace epcomm::bench
