#include "bench/ep_bench_options.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <sstream>

namespace epcomm::bench {

std::optional<EpOptions> parseEpOptions(int argc, char** argv, bool print, int& code) {
  EpOptions o;
  std::string compare = "none";
  CLI::App app{
      "ep-bench: DeepEP-style dispatch/combine benchmark of ep::Buffer, with a plain "
      "MPI_Alltoall + MPI_Alltoallv implementation side by side (--compare mpi).\nRun as: "
      "mpirun -np N ep-bench ..., or each rank by hand: EPCOMM_INIT_ADDR=host:port "
      "EPCOMM_RANK=r EPCOMM_SIZE=N ep-bench ...",
      "ep-bench"};
  app.add_option("--mode", o.mode, "normal|low_latency|auto")
      ->check(CLI::IsMember({"normal", "low_latency", "auto"}))
      ->capture_default_str();
  app.add_option("--tokens", o.tokens,
                 "tokens per rank (default 4096 normal, 128 low-latency; auto: the prefill batch)")
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--hidden", o.hidden, "hidden size")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  app.add_option("--topk", o.topk, "experts per token")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--experts", o.experts, "experts in total")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  bool int8 = false;
  app.add_option("--quant", o.flags.quant,
                 "bf16, int8 (one f32 scale per 128 channels) or int8-token (one per token); "
                 "default: the library's (EPCOMM_EP_INT8 / DEEP_NORMAL_MODE_USE_INT8_QUANT)")
      ->check(CLI::IsMember({"bf16", "int8", "int8-token"}));
  app.add_flag("--int8", int8, "the same as --quant int8");
  app.add_option("--ll-max-tokens", o.flags.llMaxTokens,
                 "low-latency capacity T; default: EPCOMM_EP_LL_MAX_TOKENS / "
                 "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--rounds", o.flags.rounds,
                 "most normal-mode rounds (0: no limit); default: EPCOMM_EP_ROUNDS / "
                 "DEEPEP_NORMAL_LONG_SEQ_ROUND")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--round-tokens", o.flags.roundTokens,
                 "tokens per normal-mode round (0: one round); default: EPCOMM_EP_ROUND_TOKENS "
                 "/ DEEPEP_NORMAL_LONG_SEQ_PER_ROUND_TOKENS")
      ->check(CLI::Range(0, 1 << 30));
  app.add_option("--transport", o.flags.transport,
                 "auto, window or collective; default: EPCOMM_EP_TRANSPORT")
      ->check(CLI::IsMember({"auto", "window", "collective"}));
  app.add_flag("--check", o.check, "verify every output with DeepEP's oracles");
  app.add_flag("--zero-copy", o.zeroCopy,
               "low-latency combine: the experts write their outputs into the Buffer's "
               "zero-copy combine buffer (DeepEP's zero_copy=True) instead of an array of "
               "their own");
  app.add_flag("--zero-copy-dispatch", o.zeroCopyDispatch,
               "low-latency dispatch moves no rows (bf16, shared memory): each rank stages its "
               "tokens once and the experts gather their rows where they live; dispatch_us "
               "then leaves out the row copies the plain dispatch makes");
  app.add_option("--compare", compare,
                 "mpi|none: also run the plain-MPI implementation; mpi needs the ranks "
                 "launched by mpirun")
      ->check(CLI::IsMember({"mpi", "none"}))
      ->capture_default_str();
  app.add_option("--json", o.json, "write the records as a JSON list (rank 0)");
  app.add_option("-n,--iters", o.iters, "timed iterations")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  app.add_option("-w,--warmup_iters", o.warmup, "warmup iterations")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  std::ostringstream out, err;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    code = app.exit(e, out, err);
    if (print) std::fputs((out.str() + err.str()).c_str(), code ? stderr : stdout);
    return std::nullopt;
  }
  o.compareMpi = compare == "mpi";
  if (int8) {
    if (!o.flags.quant.empty() && o.flags.quant != "int8") {
      if (print)
        std::fprintf(stderr, "ep-bench: --int8 contradicts --quant %s\n", o.flags.quant.c_str());
      code = 1;
      return std::nullopt;
    }
    o.flags.quant = "int8";
  }
  if (o.zeroCopyDispatch && o.flags.quant == "int8") {
    if (print) std::fprintf(stderr, "ep-bench: --zero-copy-dispatch carries bf16 rows\n");
    code = 1;
    return std::nullopt;
  }
  return o;
}

}  // namespace epcomm::bench
