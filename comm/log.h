// Logging through spdlog. Lines are prefixed with host, pid and rank; the level comes from
// EPCOMM_LOG_LEVEL (default warn).
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

#include "comm/export.h"

namespace epcomm {

// The library's logger; created on first use at the level of EPCOMM_LOG_LEVEL.
EPCOMM_API spdlog::logger& log();
// Sets the level from a name (error, warn, info, debug, trace).
void setLogLevel(std::string_view level);
// Records the rank shown in every later line of this process (-1: not known yet).
void setLogRank(int rank);
// The sink lent to backends through epcommBackendCreateArgs::log (level 0 trace ... 4 error).
void logFromBackend(int level, const char* message);

// While alive, backend log lines on this thread are rewritten by fn(message, ctx) (two levels:
// a level's rank numbers into the communicator's, and the level named). Nests.
class BackendLogRewrite {
 public:
  using Fn = std::string (*)(const std::string& message, const void* ctx);
  BackendLogRewrite(Fn fn, const void* ctx);
  ~BackendLogRewrite();
  BackendLogRewrite(const BackendLogRewrite&) = delete;
  BackendLogRewrite& operator=(const BackendLogRewrite&) = delete;

 private:
  Fn previousFn_;
  const void* previousCtx_;
};

}  // namespace epcomm
