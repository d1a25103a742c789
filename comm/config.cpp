#include "comm/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>

#include "comm/error.h"

namespace epcomm {
namespace {

const std::vector<KnobInfo>& registry() {
  static const std::vector<KnobInfo> kKnobs = {
      {"EPCOMM_BACKEND",
       {},
       "auto",
       "backend: auto, shm, mpi, or the name of a plugin libepcomm-backend-<name>.so. auto = "
       "shm when every rank is on this host, else mpi when launched by mpirun (across hosts "
       "without mpirun: an error, this build has no tcp backend)"},
      {"EPCOMM_PLUGIN_PATH",
       {},
       "",
       "':'-separated folders searched for backend plugins before the installed plugin "
       "folder and the build tree"},
      {"EPCOMM_LOG_LEVEL", {}, "warn", "error, warn, info, debug or trace"},
      {"EPCOMM_TIMEOUT_MS",
       {{"HCCL_EXEC_TIMEOUT", 1000}},
       "300000",
       "deadline of any wait inside an operation, ms (HCCL_EXEC_TIMEOUT is in s); 0: no "
       "deadline (as HCCL_EXEC_TIMEOUT=0); the mpi "
       "backend reports a blocking call past it and aborts the MPI job (a window wait fails "
       "with Timeout instead)"},
      {"EPCOMM_CONNECT_TIMEOUT",
       {{"HCCL_CONNECT_TIMEOUT", 1}},
       "120",
       "deadline of init and rendezvous, s"},
      {"EPCOMM_BUFFSIZE",
       {{"HCCL_BUFFSIZE", 1}},
       "64",
       "communication buffer per communicator, MiB, handed to the backend (the mpi backend "
       "stages nothing and ignores it)"},
      {"EPCOMM_CHECK_ARGS",
       {},
       "1",
       "1: before each collective the ranks agree on counts, dtype, op and root with one "
       "small all-reduce, so a bad or mismatched argument on any rank is an error on every "
       "rank instead of a hang; 0: skip it (saves one small all-reduce per call)"},
      {"EPCOMM_MPI_WINDOW",
       {},
       "auto",
       "how the mpi backend carries windows and registered buffers: shared (MPI-3 "
       "shared-memory windows; every rank on one node), messages (two-sided messages, any "
       "placement) or auto (shared when every rank is on one node, else messages)"},
      {"EPCOMM_INIT_ADDR",
       {},
       "",
       "host:port of rank 0's rendezvous for Communicator::initFromEnvironment (torch style)"},
      {"EPCOMM_RANK", {{"RANK", 1}}, "", "this process's rank for EPCOMM_INIT_ADDR init"},
      {"EPCOMM_SIZE", {{"WORLD_SIZE", 1}}, "", "number of ranks for EPCOMM_INIT_ADDR init"},
      {"EPCOMM_INIT_SECRET",
       {},
       "",
       "shared secret (any string) every rank presents at an EPCOMM_INIT_ADDR rendezvous; "
       "empty: none"},
      // ep/ (ep::BufferConfig::fromConfig reads and validates these).
      {"EPCOMM_EP_BUFFSIZE",
       {},
       "1024",
       "ep::Buffer normal-mode staging, MiB: bounds one dispatch or combine round (reserved "
       "address space, touched as used)"},
      {"EPCOMM_EP_ROUNDS",
       {{"DEEPEP_NORMAL_LONG_SEQ_ROUND", 1}},
       "0",
       "at most this many normal-mode rounds (DeepEP-Ascend's long-sequence rounds): a batch "
       "beyond rounds x EPCOMM_EP_ROUND_TOKENS gets larger rounds; 0: no limit"},
      {"EPCOMM_EP_ROUND_TOKENS",
       {{"DEEPEP_NORMAL_LONG_SEQ_PER_ROUND_TOKENS", 1}},
       "0",
       "source tokens per normal-mode round (long sequences); a batch that fits one round "
       "runs in one; 0: one round"},
      {"EPCOMM_EP_COMBINE_ROUNDS",
       {{"DEEPEP_NORMAL_COMBINE_ENABLE_LONG_SEQ", 1}},
       "0",
       "1 (or true): normal-mode combine in the dispatch's rounds too"},
      {"EPCOMM_EP_INT8",
       {{"DEEP_NORMAL_MODE_USE_INT8_QUANT", 1}},
       "0",
       "1 (or true): normal-mode dispatch sends int8 + f32 scales by default"},
      {"EPCOMM_EP_QUANT_GROUP",
       {},
       "128",
       "int8 channels per scale: 128, or 0 for one scale per token"},
      {"EPCOMM_EP_LL_MAX_TOKENS",
       {{"SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK", 1}},
       "128",
       "low-latency capacity T: tokens per rank per dispatch"},
      {"EPCOMM_EP_TRANSPORT",
       {},
       "auto",
       "how ep::Buffer moves data: window (puts + signals through symmetric windows), "
       "collective (all-to-all-v, any backend), or auto (window when the backend has windows "
       "and every rank is on this host)"},
      {"EPCOMM_SHM_ISA",
       {},
       "auto",
       "vector kernels of the shm backend: auto (the best this CPU has), or at most portable, "
       "avx2 or avx512 (for comparisons; never above what the CPU has)"},
      {"EPCOMM_SOCKET_IFNAME",
       {{"HCCL_SOCKET_IFNAME", 1}, {"GLOO_SOCKET_IFNAME", 1}},
       "",
       "network interface the library uses, NCCL's syntax: prefixes \"eth,ib\", exclusions "
       "\"^docker,lo\", exact names \"=eth0\" or \"^=eth1\"; unset: the first interface by "
       "name, other than docker*, lo* and virbr*, that is up with an address, then docker*, "
       "then loopback"},
      {"EPCOMM_IF_IP",
       {{"HCCL_IF_IP", 1}},
       "",
       "numeric address whose interface the library uses; wins over EPCOMM_SOCKET_IFNAME"},
      {"EPCOMM_CPU_AFFINITY",
       {{"SGLANG_SET_CPU_AFFINITY", 1}},
       "0",
       "1: at init bind each local rank to a disjoint set of cores (near the selected "
       "interface where its locality is known) and its memory to their NUMA node; 0: leave "
       "the launcher's binding alone"},
  };
  return kKnobs;
}

[[noreturn]] void badValue(std::string_view name, std::string_view value, std::string_view what) {
  throw Error(ErrorCode::kInvalidArgument, "epcomm config: " + std::string(name) + "=\"" +
                                               std::string(value) +
                                               "\" is invalid: " + std::string(what));
}

std::int64_t parseInt(std::string_view name, std::string_view value, std::int64_t min,
                      std::int64_t max) {
  const std::optional<std::int64_t> out = parseInteger(value);
  if (!out || *out < min || *out > max) {
    badValue(name, value,
             "expected an integer in " + std::to_string(min) + ".." + std::to_string(max));
  }
  return *out;
}

bool parseBool(std::string_view name, std::string_view value) {
  const std::optional<bool> b = parseBoolean(value);
  if (!b) badValue(name, value, "expected 1, 0, true or false (any case)");
  return *b;
}

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
// Bounds that keep every derived value (ms, bytes) within range.
constexpr std::int64_t kMaxTimeoutMs = std::int64_t{1} << 40;  // ~35 years
constexpr std::int64_t kMaxBufferMiB = std::int64_t{1} << 20;  // 1 TiB

}  // namespace

std::optional<bool> parseBoolean(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "1" || lower == "true") return true;
  if (lower == "0" || lower == "false") return false;
  return std::nullopt;
}

std::optional<std::int64_t> parseInteger(std::string_view text) {
  std::int64_t out = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return out;
}

const std::vector<KnobInfo>& knobRegistry() {
  return registry();
}

Config Config::fromEnvironment() {
  return resolve(true);
}
Config Config::defaults() {
  return resolve(false);
}

Config Config::resolve(bool readEnvironment) {
  Config config;
  // Raw value per knob (alias values scaled to the knob's unit for numeric knobs).
  auto lookup = [&](const KnobInfo& knob) {
    KnobValue v{std::string(knob.name), std::string(knob.defaultValue), "default"};
    if (!readEnvironment) return v;
    if (const char* own = std::getenv(std::string(knob.name).c_str()); own && *own) {
      v.value = own;
      v.source = knob.name;
      return v;
    }
    for (const KnobAlias& alias : knob.aliases) {
      const char* raw = std::getenv(std::string(alias.name).c_str());
      if (!raw || !*raw) continue;
      v.value = raw;
      v.source = alias.name;
      if (alias.scale != 1) {
        v.value =
            std::to_string(parseInt(alias.name, raw, 0, kMaxTimeoutMs / alias.scale) * alias.scale);
      }
      return v;
    }
    return v;
  };
  for (const KnobInfo& knob : registry()) config.values.push_back(lookup(knob));

  for (const KnobValue& v : config.values) {
    const std::string_view n = v.name;
    if (n == "EPCOMM_BACKEND") {
      config.backend = v.value;
    } else if (n == "EPCOMM_PLUGIN_PATH") {
      config.pluginPath = v.value;
    } else if (n == "EPCOMM_LOG_LEVEL") {
      if (v.value != "error" && v.value != "warn" && v.value != "info" && v.value != "debug" &&
          v.value != "trace") {
        badValue(v.source, v.value, "expected error, warn, info, debug or trace");
      }
      config.logLevel = v.value;
    } else if (n == "EPCOMM_TIMEOUT_MS") {
      config.timeoutMs = parseInt(v.source, v.value, 0, kMaxTimeoutMs);
    } else if (n == "EPCOMM_CONNECT_TIMEOUT") {
      config.connectTimeoutS = parseInt(v.source, v.value, 1, kMaxTimeoutMs / 1000);
    } else if (n == "EPCOMM_BUFFSIZE") {
      config.bufferBytes = static_cast<std::size_t>(parseInt(v.source, v.value, 1, kMaxBufferMiB))
                           << 20;
    } else if (n == "EPCOMM_CHECK_ARGS") {
      config.checkArgs = parseBool(v.source, v.value);
    } else if (n == "EPCOMM_MPI_WINDOW") {
      if (v.value != "auto" && v.value != "shared" && v.value != "messages") {
        badValue(v.source, v.value, "expected auto, shared or messages");
      }
      config.mpiWindow = v.value;
    } else if (n == "EPCOMM_INIT_ADDR") {
      config.initAddr = v.value;
    } else if (n == "EPCOMM_RANK") {
      config.initRank =
          v.value.empty() ? -1 : static_cast<int>(parseInt(v.source, v.value, 0, kIntMax - 1));
    } else if (n == "EPCOMM_SIZE") {
      config.initSize =
          v.value.empty() ? -1 : static_cast<int>(parseInt(v.source, v.value, 1, kIntMax));
    } else if (n == "EPCOMM_INIT_SECRET") {
      config.initSecret = v.value;
    } else if (n == "EPCOMM_SHM_ISA") {
      if (v.value != "auto" && v.value != "portable" && v.value != "avx2" && v.value != "avx512") {
        badValue(v.source, v.value, "expected auto, portable, avx2 or avx512");
      }
    } else if (n == "EPCOMM_SOCKET_IFNAME") {
      if (!v.value.empty() && v.value.find_first_not_of("^=,") == std::string::npos) {
        badValue(v.source, v.value,
                 "names no interface; expected prefixes \"eth,ib\", exclusions \"^docker,lo\" "
                 "or exact names \"=eth0\"");
      }
      config.socketIfname = v.value;
    } else if (n == "EPCOMM_IF_IP") {
      unsigned char addr[16];
      if (!v.value.empty() && inet_pton(AF_INET, v.value.c_str(), addr) != 1 &&
          inet_pton(AF_INET6, v.value.c_str(), addr) != 1) {
        badValue(v.source, v.value, "expected a numeric IPv4 or IPv6 address");
      }
      config.ifIp = v.value;
    } else if (n == "EPCOMM_CPU_AFFINITY") {
      config.cpuAffinity = parseBool(v.source, v.value);
    }
  }
  return config;
}

}  // namespace epcomm
