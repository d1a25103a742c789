// Command line of coll-bench (nccl-tests flags, plus --compare, --json, --registered) and the
// collectives it measures.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "comm/types.h"

namespace epcomm::bench {

enum class Collective { kAllReduce, kAllGather, kReduceScatter, kBroadcast, kAllToAll, kSendRecv };

// Canonical names: allreduce allgather reducescatter broadcast alltoall sendrecv.
std::string_view toString(Collective coll);
// Accepts the canonical names, nccl-tests' ones (all_reduce, all_gather, reduce_scatter,
// alltoall, sendrecv, with or without the _perf suffix) and bcast.
std::optional<Collective> parseCollective(std::string_view name);

// "32M", "1.5K", "8" (1024-based K, M, G, T; an optional trailing B). nullopt if malformed.
std::optional<std::size_t> parseSize(std::string_view text);

bool usesReduceOp(Collective coll);
bool usesRoot(Collective coll);

struct Options {
  std::size_t minBytes = std::size_t{32} << 20;  // -b (nccl-tests default 32M)
  std::size_t maxBytes = std::size_t{32} << 20;  // -e
  std::size_t stepFactor = 2;                    // -f: size *= f
  std::size_t stepBytes = 0;                     // -i: size += i (used when > 0)
  Collective collective = Collective::kAllReduce;
  DataType dtype = DataType::kF32;
  ReduceOp redop = ReduceOp::kSum;
  int root = 0;
  int iters = 20;
  int warmupIters = 5;
  bool check = true;
  bool compareMpi = false;
  bool compareFlat = false;  // --compare flat: the network backend alone, across hosts
  std::string jsonPath;
  bool registered = false;

  // "step: 2(factor)" / "step: 1048576(bytes)" as nccl-tests prints it.
  std::string stepDescription() const;
  // The sizes -b .. -e in order.
  std::size_t nextSize(std::size_t size) const {
    return stepBytes > 0 ? size + stepBytes : size * stepFactor;
  }
};

// Parses argv. Returns nullopt and sets exitCode when the program must stop (help, or an
// error, printed when printMessages is true: only rank 0 prints, every rank gets the code).
std::optional<Options> parseOptions(int argc, char** argv, bool printMessages, int& exitCode);

}  // namespace epcomm::bench
