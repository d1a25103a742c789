// ep-bench's command line (CLI11): shapes, mode, the library knobs it overrides (EpFlags,
// bench/ep_bench_config.h), --check, --compare mpi, --json, iterations.
#pragma once

#include <optional>
#include <string>

#include "bench/ep_bench_config.h"

namespace epcomm::bench {

struct EpOptions {
  std::string mode = "normal";
  int tokens = 0;  // 0: 4096 normal, T low-latency
  int hidden = 7168;
  int topk = 8;
  int experts = 256;
  EpFlags flags;
  bool check = false;
  bool compareMpi = false;
  bool zeroCopy = false;  // low-latency combine from ep::Buffer::lowLatencyCombineBuffer
  // Low-latency dispatch that moves no rows (LowLatencyDispatchInputs::zeroCopy): the
  // experts gather their rows from where they live (untimed, as their packing would).
  bool zeroCopyDispatch = false;
  std::string json;
  int iters = 10;
  int warmup = 2;
};

// Parses argv. Returns nullopt and sets code when the program must stop (help, or an error,
// printed when print is true: only rank 0 prints, every rank gets the code).
std::optional<EpOptions> parseEpOptions(int argc, char** argv, bool print, int& code);

}  // namespace epcomm::bench
