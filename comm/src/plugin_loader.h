// Finds and loads backend plugins (libepcomm-backend-<name>.so). Search order:
// EPCOMM_PLUGIN_PATH (':'-separated), the installed plugin folder (next to libepcomm.so,
// then the configured install prefix), then the build tree. A plugin stays loaded for the
// life of the process.
#pragma once

#include <string>
#include <vector>

#include "comm/backend.h"
#include "comm/config.h"
#include "comm/export.h"

namespace epcomm {

struct LoadedPlugin {
  const epcommBackendV1* table = nullptr;
  std::string path;
};

// The folders searched for plugins, in order.
EPCOMM_API std::vector<std::string> pluginSearchPath(const Config& config);
// Loads the named backend; throws epcomm::Error (kInvalidArgument for a missing plugin,
// kInvalidUsage for an ABI mismatch) saying where it looked and what it found.
EPCOMM_API LoadedPlugin loadBackendPlugin(const std::string& name, const Config& config, int rank);
// Whether libepcomm-backend-<name>.so lies in a searched folder (not whether it loads).
bool backendPluginFound(const std::string& name, const Config& config);
// Loads the built-in backends (shm, mpi, ucx) and the one EPCOMM_BACKEND names, where they are
// found, so that their knob rows are registered (epcomm-topo --env, the documentation test).
EPCOMM_API void registerBackendKnobs(const Config& config);

}  // namespace epcomm
