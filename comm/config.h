// Configuration from the environment. Every knob is one typed row (KnobInfo: name, aliases,
// type, unit, default, bounds or choices, layer, meaning), registered by the layer that owns
// it: comm's and topology's in comm/config.cpp, ep's in ep/src/knobs.cpp (when libepcomm_ep
// loads), each backend's in its plugin table (comm/backend.h: knobs, when the plugin loads).
// A value is validated by its row's type wherever it is read, and the error names the
// variable; each layer binds rows to the fields of its own config struct (Config here,
// ep::BufferConfig, a backend's). docs/configuration.md mirrors the rows (a test keeps them
// equal); `epcomm-topo --env` lists them. Own names (EPCOMM_*) win over the aliases the
// seed deployments export (HCCL_*, GLOO_*, DEEPEP_*, SGLANG_*, torch's RANK/WORLD_SIZE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "export.h"

namespace epcomm {

enum class KnobType {
  kString,   // any text (check may restrict it)
  kInteger,  // a whole decimal number in [min, max]; empty = unset where the default is ""
  kBoolean,  // 1, 0, true or false in any case
  kChoice,   // one of choices
};

struct KnobAlias {
  std::string_view name;
  // The alias's value times this gives the knob's unit (HCCL_EXEC_TIMEOUT s -> ms: 1000).
  std::int64_t scale = 1;
};

struct KnobInfo {
  std::string_view name;
  std::vector<KnobAlias> aliases;
  std::string_view defaultValue;  // "" = unset
  std::string_view meaning;
  KnobType type = KnobType::kString;
  std::string_view unit;                  // of the knob's own value: "ms", "s", "MiB", or ""
  std::int64_t min = 0, max = 0;          // kInteger
  std::vector<std::string_view> choices;  // kChoice
  std::string_view layer = "comm";        // comm, topology, ep, or a backend's name
  // Every rank must set the same value: agreed once when a communicator is created.
  bool agreed = false;
  // kString: an extra check; returns "" when the value is fine, else what is expected.
  std::string (*check)(std::string_view value) = nullptr;
};

// A whole decimal integer, or nothing (empty, trailing characters, out of range).
EPCOMM_API std::optional<std::int64_t> parseInteger(std::string_view text);
// A boolean as engines write it: 1/true or 0/false, any case; else nothing.
EPCOMM_API std::optional<bool> parseBoolean(std::string_view text);

// The one place the library reads the process environment: a variable's value when it is
// set and not empty. Knobs go through their rows (Config); launcher facts (mpirun's
// OMPI_COMM_WORLD_RANK, torchrun's MASTER_ADDR, Open MPI's own parameters) through this.
EPCOMM_API std::optional<std::string> environmentValue(std::string_view name);

// Every registered row, layer by layer (comm, topology, ep, backends) in registration order.
EPCOMM_API std::vector<KnobInfo> knobRegistry();
// Registers a layer's rows (copied; a name registered already is kept as it was).
EPCOMM_API void registerKnobs(const std::vector<KnobInfo>& rows);

// A knob's effective value and where it came from: "default", the knob's own name, or the
// alias that supplied it (alias values are scaled to the knob's unit).
struct KnobValue {
  std::string name;
  std::string value;
  std::string source;
};

class EPCOMM_API Config {
 public:
  // Reads the environment; a malformed value throws epcomm::Error (kInvalidArgument) naming
  // the variable, its value and what is accepted.
  static Config fromEnvironment();
  static Config defaults();

  // comm's knobs, bound to fields (the rows in config.cpp say which).
  std::string backend = "auto";        // EPCOMM_BACKEND
  std::string pluginPath;              // EPCOMM_PLUGIN_PATH, ':'-separated
  std::string logLevel = "warn";       // EPCOMM_LOG_LEVEL
  std::int64_t timeoutMs = 0;          // EPCOMM_TIMEOUT_MS; 0: no deadline
  std::int64_t waitReportS = 60;       // EPCOMM_WAIT_REPORT_S; 0: no report
  std::int64_t connectTimeoutS = 0;    // EPCOMM_CONNECT_TIMEOUT
  std::size_t bufferBytes = 0;         // EPCOMM_BUFFSIZE (MiB in the environment)
  bool checkArgs = true;               // EPCOMM_CHECK_ARGS
  std::size_t twoLevelSmallBytes = 0;  // EPCOMM_TWO_LEVEL_SMALL_BYTES
  int twoLevelRails = 0;               // EPCOMM_TWO_LEVEL_RAILS
  int threads = 0;                     // EPCOMM_THREADS; 0: the default (comm/workers.h)
  std::string initAddr;                // EPCOMM_INIT_ADDR host:port
  int initRank = -1;                   // EPCOMM_RANK
  int initSize = -1;                   // EPCOMM_SIZE
  std::string initSecret;              // EPCOMM_INIT_SECRET
  bool initInsecure = false;           // EPCOMM_INIT_INSECURE
  std::string socketIfname;            // EPCOMM_SOCKET_IFNAME, NCCL syntax
  std::string ifIp;                    // EPCOMM_IF_IP
  bool cpuAffinity = false;            // EPCOMM_CPU_AFFINITY

  // Every knob registered when this Config was made, with its effective value and source.
  std::vector<KnobValue> values;

  // Any registered knob's value, validated by its row (other layers read theirs this way).
  // A knob registered after this Config was made (a plugin loaded later) is resolved now,
  // from the environment if this Config read it. Throws kInvalidArgument for a name no
  // layer registered, or a malformed value.
  KnobValue value(std::string_view name) const;
  std::string text(std::string_view name) const { return value(name).value; }
  // kInteger: the number; `unset` where the value is empty.
  std::int64_t integer(std::string_view name, std::int64_t unset = -1) const;
  bool boolean(std::string_view name) const;

 private:
  static Config resolve(bool readEnvironment);
  bool readEnvironment_ = false;
};

}  // namespace epcomm
