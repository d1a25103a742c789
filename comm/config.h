// Configuration from the environment. Every knob is declared once, in the registry of
// config.cpp (name, aliases, default, meaning); docs/configuration.md mirrors it and a test
// keeps the two equal. Own names (EPCOMM_*) win over the aliases the seed deployments
// export (HCCL_*, GLOO_*, torch's RANK/WORLD_SIZE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "export.h"

namespace epcomm {

struct KnobAlias {
  std::string_view name;
  // The alias's value times this gives the knob's unit (HCCL_EXEC_TIMEOUT s -> ms: 1000).
  std::int64_t scale = 1;
};

struct KnobInfo {
  std::string_view name;
  std::vector<KnobAlias> aliases;
  std::string_view defaultValue;
  std::string_view meaning;
};

// A whole decimal integer, or nothing (empty, trailing characters, out of range).
EPCOMM_API std::optional<std::int64_t> parseInteger(std::string_view text);
// A boolean as engines write it: 1/true or 0/false, any case; else nothing.
EPCOMM_API std::optional<bool> parseBoolean(std::string_view text);

// The registry: every knob the library reads.
EPCOMM_API const std::vector<KnobInfo>& knobRegistry();

// A knob's effective value and where it came from: "default", the knob's own name, or the
// alias that supplied it.
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

  std::string backend = "auto";      // EPCOMM_BACKEND
  std::string pluginPath;            // EPCOMM_PLUGIN_PATH, ':'-separated
  std::string logLevel = "warn";     // EPCOMM_LOG_LEVEL
  std::int64_t timeoutMs = 0;        // EPCOMM_TIMEOUT_MS; 0: no deadline
  std::int64_t connectTimeoutS = 0;  // EPCOMM_CONNECT_TIMEOUT
  std::size_t bufferBytes = 0;       // EPCOMM_BUFFSIZE (MiB in the environment)
  bool checkArgs = true;             // EPCOMM_CHECK_ARGS
  std::string mpiWindow = "auto";    // EPCOMM_MPI_WINDOW (read by the mpi backend)
  std::string initAddr;              // EPCOMM_INIT_ADDR host:port
  int initRank = -1;                 // EPCOMM_RANK
  int initSize = -1;                 // EPCOMM_SIZE
  std::string initSecret;            // EPCOMM_INIT_SECRET
  std::string socketIfname;          // EPCOMM_SOCKET_IFNAME, NCCL syntax
  std::string ifIp;                  // EPCOMM_IF_IP
  bool cpuAffinity = false;          // EPCOMM_CPU_AFFINITY

  // Every registered knob with its effective value and source, in registry order.
  std::vector<KnobValue> values;

 private:
  static Config resolve(bool readEnvironment);
};

}  // namespace epcomm
