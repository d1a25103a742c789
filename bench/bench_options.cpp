#include "bench/bench_options.h"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <iostream>
#include <limits>

namespace epcomm::bench {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A CLI11 check that accepts what `parse` accepts, naming the choices when it does not.
template <typename Parse>
CLI::Validator accepting(Parse parse, std::string what, std::string choices) {
  return CLI::Validator(
      [parse, what, choices](std::string& value) -> std::string {
        if (parse(value)) return {};
        return fmt::format("unknown {} '{}' (one of: {})", what, value, choices);
      },
      what);
}

class NullBuffer : public std::streambuf {
 protected:
  int overflow(int c) override { return c; }
};

}  // namespace

std::string_view toString(Collective coll) {
  switch (coll) {
    case Collective::kAllReduce: return "allreduce";
    case Collective::kAllGather: return "allgather";
    case Collective::kReduceScatter: return "reducescatter";
    case Collective::kBroadcast: return "broadcast";
    case Collective::kAllToAll: return "alltoall";
    case Collective::kSendRecv: return "sendrecv";
  }
  return "invalid-collective";
}

std::optional<Collective> parseCollective(std::string_view name) {
  std::string n = lower(name);
  if (n.size() > 5 && n.ends_with("_perf")) n.resize(n.size() - 5);
  std::erase(n, '_');
  std::erase(n, '-');
  for (Collective c : {Collective::kAllReduce, Collective::kAllGather, Collective::kReduceScatter,
                       Collective::kBroadcast, Collective::kAllToAll, Collective::kSendRecv}) {
    if (n == toString(c)) return c;
  }
  if (n == "bcast") return Collective::kBroadcast;
  return std::nullopt;
}

std::optional<std::size_t> parseSize(std::string_view text) {
  std::string_view t = text;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  if (!t.empty() && (t.back() == 'B' || t.back() == 'b')) t.remove_suffix(1);
  double unit = 1;
  if (!t.empty()) {
    switch (std::tolower(static_cast<unsigned char>(t.back()))) {
      case 'k': unit = 1024.0; break;
      case 'm': unit = 1024.0 * 1024; break;
      case 'g': unit = 1024.0 * 1024 * 1024; break;
      case 't': unit = 1024.0 * 1024 * 1024 * 1024; break;
      default: break;
    }
    if (unit != 1) t.remove_suffix(1);
  }
  if (t.empty()) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), value);
  if (ec != std::errc() || end != t.data() + t.size() || !(value >= 0)) return std::nullopt;
  const double bytes = std::floor(value * unit);
  if (bytes > static_cast<double>(std::numeric_limits<std::size_t>::max() / 2)) return std::nullopt;
  return static_cast<std::size_t>(bytes);
}

bool usesReduceOp(Collective coll) {
  return coll == Collective::kAllReduce || coll == Collective::kReduceScatter;
}

bool usesRoot(Collective coll) {
  return coll == Collective::kBroadcast;
}

std::string Options::stepDescription() const {
  return stepBytes > 0 ? fmt::format("{}(bytes)", stepBytes)
                       : fmt::format("{}(factor)", stepFactor);
}

std::optional<Options> parseOptions(int argc, char** argv, bool printMessages, int& exitCode) {
  Options o;
  std::string minText = "32M", maxText = "32M", stepText, opText = "allreduce";
  std::string dtypeText = "f32", redopText = "sum", compareText = "none";
  int check = 1;

  CLI::App app{
      "coll-bench: nccl-tests style benchmark of epcomm's collectives, with MPI's own "
      "collective side by side (--compare mpi).\nRun as: mpirun -np N coll-bench ..., or each "
      "rank by hand: EPCOMM_INIT_ADDR=host:port EPCOMM_RANK=r EPCOMM_SIZE=N coll-bench ...",
      "coll-bench"};
  const CLI::Validator sizeCheck(
      [](std::string& value) -> std::string {
        if (parseSize(value)) return {};
        return fmt::format("'{}' is not a size (bytes, with an optional K, M or G suffix)", value);
      },
      "SIZE");
  app.add_option("-b,--minbytes", minText, "smallest size in bytes (K/M/G suffixes, 1024-based)")
      ->check(sizeCheck)
      ->capture_default_str();
  app.add_option("-e,--maxbytes", maxText, "largest size in bytes")
      ->check(sizeCheck)
      ->capture_default_str();
  auto* factorOpt = app.add_option("-f,--stepfactor", o.stepFactor, "multiply the size by this")
                        ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
                        ->capture_default_str();
  auto* stepOpt = app.add_option("-i,--stepbytes", stepText, "add this to the size instead of -f")
                      ->check(sizeCheck);
  app.add_option("-o,--op", opText,
                 "allreduce|allgather|reducescatter|broadcast|alltoall|sendrecv (all_reduce style "
                 "accepted)")
      ->check(accepting([](const std::string& s) { return parseCollective(s).has_value(); },
                        "collective",
                        "allreduce allgather reducescatter broadcast alltoall sendrecv"))
      ->capture_default_str();
  app.add_option("-d,--datatype", dtypeText, "f32|bf16|f16|i32|i64|i8|u8 (nccl names accepted)")
      ->check(accepting([](const std::string& s) { return parseDataType(lower(s)).has_value(); },
                        "datatype",
                        "f32 bf16 f16 i32 i64 i8 u8, or float bfloat16 half int32 int64 int8 "
                        "uint8"))
      ->capture_default_str();
  app.add_option("--redop", redopText, "sum|prod|max|min|avg")
      ->check(accepting([](const std::string& s) { return parseReduceOp(lower(s)).has_value(); },
                        "reduce op", "sum prod max min avg"))
      ->capture_default_str();
  app.add_option("-r,--root", o.root, "root rank of broadcast (nccl-tests -r)")
      ->check(CLI::Range(0, INT_MAX))
      ->capture_default_str();
  app.add_option("-n,--iters", o.iters, "timed iterations per size")
      ->check(CLI::Range(1, INT_MAX))
      ->capture_default_str();
  app.add_option("-w,--warmup_iters", o.warmupIters, "untimed iterations before the timed ones")
      ->check(CLI::Range(0, INT_MAX))
      ->capture_default_str();
  app.add_option("-c,--check", check, "check the results (0|1)")
      ->check(CLI::Range(0, INT_MAX))
      ->capture_default_str();
  app.add_option("--compare", compareText,
                 "also run the MPI library's own collective on the same buffers (mpi), and/or "
                 "the same collective on a second, flat communicator over the network backend "
                 "alone (flat: ranks on several hosts), or none; mpi needs the ranks launched "
                 "by mpirun")
      ->check(CLI::IsMember({"mpi", "flat", "mpi,flat", "flat,mpi", "none"}))
      ->capture_default_str();
  app.add_option("--json", o.jsonPath, "write the results as a JSON list (rank 0)");
  app.add_flag("--registered", o.registered,
               "use the backend's registered (zero-copy) buffers from Communicator::allocate");

  NullBuffer nullBuffer;
  std::ostream nullStream(&nullBuffer);
  std::ostream& out = printMessages ? std::cout : nullStream;
  std::ostream& err = printMessages ? std::cerr : nullStream;
  try {
    app.parse(argc, argv);
    o.minBytes = *parseSize(minText);
    o.maxBytes = *parseSize(maxText);
    if (stepOpt->count() > 0) {
      o.stepBytes = *parseSize(stepText);
      if (o.stepBytes == 0) throw CLI::ValidationError("-i,--stepbytes", "must be at least 1");
      if (factorOpt->count() > 0 && o.stepFactor > 1) {
        throw CLI::ValidationError("-f,--stepfactor", "give -f or -i, not both");
      }
    }
    if (o.stepBytes == 0 && o.stepFactor < 2 && o.minBytes < o.maxBytes) {
      throw CLI::ValidationError("-f,--stepfactor", "must be at least 2 (or give -i)");
    }
    if (o.minBytes == 0) throw CLI::ValidationError("-b,--minbytes", "must be at least 1");
    if (o.minBytes > o.maxBytes) {
      throw CLI::ValidationError(
          "-b,--minbytes",
          fmt::format("invalid sizes: minbytes {} > maxbytes {}", o.minBytes, o.maxBytes));
    }
  } catch (const CLI::ParseError& e) {
    exitCode = app.exit(e, out, err);
    return std::nullopt;
  }
  o.collective = *parseCollective(opText);
  o.dtype = *parseDataType(lower(dtypeText));
  o.redop = *parseReduceOp(lower(redopText));
  o.check = check > 0;
  o.compareMpi = compareText.find("mpi") != std::string::npos;
  o.compareFlat = compareText.find("flat") != std::string::npos;
  exitCode = 0;
  return o;
}

}  // namespace epcomm::bench
