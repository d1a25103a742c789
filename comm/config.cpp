// comm's knobs (and topology's, which comm reads on its behalf: topology/ is a leaf), each
// one row bound to a Config field, and Config's resolution and accessors.
#include "comm/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>
#include <variant>

#include "comm/error.h"
#include "comm/src/knob_registry.h"

namespace epcomm {
namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
// Bounds that keep every derived value (ms, bytes) within range.
constexpr std::int64_t kMaxTimeoutMs = std::int64_t{1} << 40;  // ~35 years
constexpr std::int64_t kMaxBufferMiB = std::int64_t{1} << 20;  // 1 TiB

std::string checkInterfaceFilter(std::string_view v) {
  if (!v.empty() && v.find_first_not_of("^=,") == std::string_view::npos) {
    return "names no interface; expected prefixes \"eth,ib\", exclusions \"^docker,lo\" or "
           "exact names \"=eth0\"";
  }
  return {};
}

std::string checkAddress(std::string_view v) {
  unsigned char addr[16];
  const std::string text(v);
  if (!v.empty() && inet_pton(AF_INET, text.c_str(), addr) != 1 &&
      inet_pton(AF_INET6, text.c_str(), addr) != 1) {
    return "expected a numeric IPv4 or IPv6 address";
  }
  return {};
}

// Where a row's value lands in Config; `scale` turns the knob's unit into the field's.
using Field = std::variant<std::string Config::*, std::int64_t Config::*, std::size_t Config::*,
                           int Config::*, bool Config::*>;
struct CommKnob {
  KnobInfo info;
  Field field;
  std::int64_t scale = 1;
};

const std::vector<CommKnob>& commKnobs() {
  static const std::vector<CommKnob> kKnobs = {
      {{.name = "EPCOMM_BACKEND",
        .defaultValue = "auto",
        .meaning = "backend: auto, shm, mpi, ucx, the name of a plugin "
                   "libepcomm-backend-<name>.so, or two levels <in-host>+<network> (shm+ucx, "
                   "shm+mpi). auto = shm when every rank is on this host; across hosts two "
                   "levels: shm in each host, and among hosts ucx (any launcher, preferred to "
                   "mpi under mpirun) or mpi under mpirun where the ucx plugin is not "
                   "installed. A plain network name (ucx, mpi) runs it flat over every rank"},
       &Config::backend},
      {{.name = "EPCOMM_PLUGIN_PATH",
        .meaning = "':'-separated folders searched for backend plugins before the installed "
                   "plugin folder and the build tree"},
       &Config::pluginPath},
      {{.name = "EPCOMM_LOG_LEVEL",
        .defaultValue = "warn",
        .meaning = "error, warn, info, debug or trace",
        .type = KnobType::kChoice,
        .choices = {"error", "warn", "info", "debug", "trace"}},
       &Config::logLevel},
      {{.name = "EPCOMM_TIMEOUT_MS",
        .aliases = {{"HCCL_EXEC_TIMEOUT", 1000}},
        .defaultValue = "300000",
        .meaning = "deadline of any wait inside an operation, ms (HCCL_EXEC_TIMEOUT is in s); "
                   "0: no deadline (as HCCL_EXEC_TIMEOUT=0); the mpi backend reports a "
                   "blocking call past it and aborts the MPI job (a window wait fails with "
                   "Timeout instead)",
        .type = KnobType::kInteger,
        .unit = "ms",
        .min = 0,
        .max = kMaxTimeoutMs},
       &Config::timeoutMs},
      {{.name = "EPCOMM_WAIT_REPORT_S",
        .defaultValue = "60",
        .meaning =
            "a call that has waited this long for a peer logs a warning naming the call, "
            "the rank it waits for and how long, then again every this often, until it "
            "completes or EPCOMM_TIMEOUT_MS ends it (shm, ucx, two levels; mpi, which cannot "
            "name the rank); 0: never",
        .type = KnobType::kInteger,
        .unit = "s",
        .min = 0,
        .max = kMaxTimeoutMs / 1000},
       &Config::waitReportS},
      {{.name = "EPCOMM_CONNECT_TIMEOUT",
        .aliases = {{"HCCL_CONNECT_TIMEOUT", 1}},
        .defaultValue = "120",
        .meaning = "deadline of init and rendezvous, s",
        .type = KnobType::kInteger,
        .unit = "s",
        .min = 1,
        .max = kMaxTimeoutMs / 1000},
       &Config::connectTimeoutS},
      {{.name = "EPCOMM_BUFFSIZE",
        .aliases = {{"HCCL_BUFFSIZE", 1}},
        .defaultValue = "64",
        .meaning = "communication buffer per communicator, MiB, handed to the backend (the "
                   "mpi backend stages nothing and ignores it)",
        .type = KnobType::kInteger,
        .unit = "MiB",
        .min = 1,
        .max = kMaxBufferMiB},
       &Config::bufferBytes,
       std::int64_t{1} << 20},
      {{.name = "EPCOMM_CHECK_ARGS",
        .defaultValue = "1",
        .meaning = "1: before each collective the ranks agree on counts, dtype, op and root, "
                   "so a bad or mismatched argument on any rank is an error on every rank "
                   "instead of a hang (shm, mpi and ucx fold it into the collective's first "
                   "message; other backends add one small all-reduce); 0: skip it",
        .type = KnobType::kBoolean,
        .agreed = true},
       &Config::checkArgs},
      {{.name = "EPCOMM_TWO_LEVEL_SMALL_BYTES",
        .defaultValue = "65536",
        .meaning = "two levels (ranks on several hosts): all-reduces up to this many bytes run "
                   "in two steps (in-host all-reduce, then every rail all-reduces the host "
                   "sums); larger ones split the work (in-host reduce-scatter, one share per "
                   "local rank across hosts, in-host all-gather)",
        .type = KnobType::kInteger,
        .unit = "bytes",
        .min = 0,
        .max = std::int64_t{1} << 40,
        .agreed = true},
       &Config::twoLevelSmallBytes},
      {{.name = "EPCOMM_TWO_LEVEL_RAILS",
        .defaultValue = "0",
        .meaning = "two levels: how many local ranks of each host carry an all-reduce across "
                   "hosts (large ones: each its share; small ones: each the whole host sum) "
                   "(0: every local rank, up to the fewest ranks on a host; 1: one leader per "
                   "host, the others wait)",
        .type = KnobType::kInteger,
        .min = 0,
        .max = 4096,
        .agreed = true},
       &Config::twoLevelRails},
      {{.name = "EPCOMM_THREADS",
        .defaultValue = "0",
        .meaning = "worker threads of each process for large copies and reductions (shm) and "
                   "the EP row loops (comm/workers.h); results are bitwise the same for any "
                   "count, and loops under 128 KiB stay on the calling thread. 0: OMP_NUM_THREADS "
                   "(its first entry, at most the cpus owned) where set, else the cpus the process "
                   "owns (its affinity "
                   "mask, divided among the host's ranks when none was bound), at most 8; 1: one "
                   "thread, no pool; an engine's epcomm::setThreads (torch.get_num_threads()) "
                   "wins",
        .type = KnobType::kInteger,
        .min = 0,
        .max = 1024},
       &Config::threads},
      {{.name = "EPCOMM_INIT_ADDR",
        .meaning = "host:port of rank 0's rendezvous for Communicator::initFromEnvironment "
                   "(torch style)"},
       &Config::initAddr},
      {{.name = "EPCOMM_RANK",
        .aliases = {{"RANK", 1}},
        .meaning = "this process's rank for EPCOMM_INIT_ADDR init",
        .type = KnobType::kInteger,
        .min = 0,
        .max = kIntMax - 1},
       &Config::initRank},
      {{.name = "EPCOMM_SIZE",
        .aliases = {{"WORLD_SIZE", 1}},
        .meaning = "number of ranks for EPCOMM_INIT_ADDR init",
        .type = KnobType::kInteger,
        .min = 1,
        .max = kIntMax},
       &Config::initSize},
      {{.name = "EPCOMM_INIT_SECRET",
        .meaning = "shared secret (any string) every rank presents at an EPCOMM_INIT_ADDR "
                   "rendezvous (at most 32 bytes). Required when EPCOMM_INIT_ADDR is not a "
                   "loopback address, unless EPCOMM_INIT_INSECURE=1"},
       &Config::initSecret},
      {{.name = "EPCOMM_INIT_INSECURE",
        .defaultValue = "0",
        .meaning = "1: let an EPCOMM_INIT_ADDR rendezvous on a non-loopback address run without "
                   "EPCOMM_INIT_SECRET, so that anyone who reaches the port can join as a rank "
                   "(README, \"Who can join\"); 0: refuse that",
        .type = KnobType::kBoolean},
       &Config::initInsecure},
      // topology/'s knobs: the interface and the binding it plans (comm reads them for it).
      {{.name = "EPCOMM_SOCKET_IFNAME",
        .aliases = {{"HCCL_SOCKET_IFNAME", 1}, {"GLOO_SOCKET_IFNAME", 1}},
        .meaning = "network interface the library uses, NCCL's syntax: prefixes \"eth,ib\", "
                   "exclusions \"^docker,lo\", exact names \"=eth0\" or \"^=eth1\"; unset: the "
                   "first interface by name, other than docker*, lo* and virbr*, that is up "
                   "with an address, then docker*, then loopback",
        .layer = "topology",
        .check = &checkInterfaceFilter},
       &Config::socketIfname},
      {{.name = "EPCOMM_IF_IP",
        .aliases = {{"HCCL_IF_IP", 1}},
        .meaning = "numeric address whose interface the library uses; wins over "
                   "EPCOMM_SOCKET_IFNAME",
        .layer = "topology",
        .check = &checkAddress},
       &Config::ifIp},
      {{.name = "EPCOMM_CPU_AFFINITY",
        .aliases = {{"SGLANG_SET_CPU_AFFINITY", 1}},
        .defaultValue = "0",
        .meaning = "1: at init bind each local rank to a disjoint share of the cpus it was "
                   "given (near the selected interface where its locality is known) and its "
                   "memory to their NUMA node; 0: leave the launcher's binding alone",
        .type = KnobType::kBoolean,
        .layer = "topology"},
       &Config::cpuAffinity},
  };
  return kKnobs;
}

void assign(Config& config, const CommKnob& knob, const KnobValue& v) {
  std::visit(
      [&](auto member) {
        using T = std::remove_reference_t<decltype(config.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          config.*member = v.value;
        } else if constexpr (std::is_same_v<T, bool>) {
          config.*member = *parseBoolean(v.value);
        } else {
          const std::optional<std::int64_t> n = parseInteger(v.value);
          config.*member = n ? static_cast<T>(*n * knob.scale) : static_cast<T>(-1);
        }
      },
      knob.field);
}

}  // namespace

void registerCommKnobs() {
  static const bool registered = [] {
    std::vector<KnobInfo> rows;
    for (const CommKnob& k : commKnobs()) rows.push_back(k.info);
    registerKnobs(rows);
    return true;
  }();
  (void)registered;
}

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

Config Config::fromEnvironment() {
  return resolve(true);
}
Config Config::defaults() {
  return resolve(false);
}

Config Config::resolve(bool readEnvironment) {
  Config config;
  config.readEnvironment_ = readEnvironment;
  for (const KnobInfo& knob : knobRegistry()) {
    config.values.push_back(resolveKnob(knob, readEnvironment));
  }
  for (const CommKnob& knob : commKnobs()) assign(config, knob, config.value(knob.info.name));
  return config;
}

KnobValue Config::value(std::string_view name) const {
  for (const KnobValue& v : values) {
    if (v.name == name) return v;
  }
  const std::optional<KnobInfo> knob = findKnob(name);
  if (!knob) {
    throw Error(ErrorCode::kInvalidArgument,
                "epcomm config: no layer registered a knob named " + std::string(name));
  }
  return resolveKnob(*knob, readEnvironment_);
}

std::int64_t Config::integer(std::string_view name, std::int64_t unset) const {
  const std::optional<std::int64_t> n = parseInteger(value(name).value);
  return n ? *n : unset;
}

bool Config::boolean(std::string_view name) const {
  return parseBoolean(value(name).value).value_or(false);
}

}  // namespace epcomm
