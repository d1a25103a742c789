#include "comm/src/plugin_loader.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstddef>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>
#include <string_view>

#include "comm/error.h"
#include "comm/log.h"

#ifndef EPCOMM_INSTALL_PLUGIN_DIR
#define EPCOMM_INSTALL_PLUGIN_DIR ""
#endif
#ifndef EPCOMM_BUILD_PLUGIN_DIR
#define EPCOMM_BUILD_PLUGIN_DIR ""
#endif
#ifndef EPCOMM_PLUGIN_SUBDIR
#define EPCOMM_PLUGIN_SUBDIR "epcomm"
#endif

namespace epcomm {
namespace {

namespace fs = std::filesystem;

// The folder holding libepcomm.so itself, so a relocated install finds its plugins.
std::string libraryPluginDir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&pluginSearchPath), &info) == 0 || !info.dli_fname) {
    return {};
  }
  std::error_code ec;
  const fs::path lib = fs::canonical(info.dli_fname, ec);
  if (ec) return {};
  return (lib.parent_path() / EPCOMM_PLUGIN_SUBDIR).string();
}

bool validName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::vector<std::string> pluginSearchPath(const Config& config) {
  std::vector<std::string> dirs;
  std::stringstream env(config.pluginPath);
  for (std::string dir; std::getline(env, dir, ':');) {
    if (!dir.empty()) dirs.push_back(dir);
  }
  for (const std::string& dir : {libraryPluginDir(), std::string(EPCOMM_INSTALL_PLUGIN_DIR),
                                 std::string(EPCOMM_BUILD_PLUGIN_DIR)}) {
    if (dir.empty()) continue;
    bool seen = false;
    for (const std::string& d : dirs) seen = seen || d == dir;
    if (!seen) dirs.push_back(dir);
  }
  return dirs;
}

namespace {

// Why the library at `path` is not a usable backend, or "" when it is (table filled).
std::string inspect(const std::string& path, const epcommBackendV1** table) {
  // RTLD_LOCAL: every plugin exports the same symbol name. A plugin whose own
  // dependencies need global symbols (MPI's components) promotes them itself.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) return std::string("dlopen failed: ") + dlerror();
  const auto* t = static_cast<const epcommBackendV1*>(dlsym(handle, EPCOMM_BACKEND_SYMBOL));
  std::string why;
  if (!t) {
    why = "does not export " EPCOMM_BACKEND_SYMBOL " (not an epcomm backend plugin)";
  } else if (t->abiVersion != EPCOMM_BACKEND_ABI_VERSION) {
    why =
        fmt::format("has backend ABI version {}, this library needs version {}; rebuild the plugin",
                    t->abiVersion, EPCOMM_BACKEND_ABI_VERSION);
  } else if (t->structSize < EPCOMM_BACKEND_V1_CORE_SIZE) {
    why = fmt::format(
        "has a backend table of {} bytes, this library needs at least {}; rebuild the plugin",
        t->structSize, EPCOMM_BACKEND_V1_CORE_SIZE);
  } else if (!t->create || !t->destroy || !t->lastError || !t->abort || !t->split ||
             !t->allReduce || !t->allGather || !t->allGatherV || !t->reduceScatter ||
             !t->broadcast || !t->barrier || !t->allToAll || !t->allToAllV || !t->send ||
             !t->recv) {
    why = "leaves a required entry point of " EPCOMM_BACKEND_SYMBOL " null";
  }
  if (!why.empty()) {
    dlclose(handle);
    return why;
  }
  *table = t;  // the handle stays open for the life of the process
  return {};
}

// Splits "a,b" (or "a|b") into views into `text`.
std::vector<std::string_view> splitList(const char* text, char sep) {
  std::vector<std::string_view> out;
  if (!text) return out;
  std::string_view rest(text);
  while (!rest.empty()) {
    const std::size_t at = rest.find(sep);
    if (at != 0) out.push_back(rest.substr(0, at));
    if (at == std::string_view::npos) break;
    rest.remove_prefix(at + 1);
  }
  return out;
}

// Registers the plugin's knob rows (layer: the backend's name).
void registerPluginKnobs(const epcommBackendV1& t) {
  const std::size_t needed = offsetof(epcommBackendV1, numKnobs) + sizeof(t.numKnobs);
  if (t.structSize < needed || !t.knobs) return;
  std::vector<KnobInfo> rows;
  for (std::size_t i = 0; i < t.numKnobs; ++i) {
    const epcommBackendKnob& k = t.knobs[i];
    if (!k.name) continue;
    KnobInfo row;
    row.name = k.name;
    for (std::string_view a : splitList(k.aliases, ',')) row.aliases.push_back({a, 1});
    const int type = k.type & 0xff;
    row.type = type == EPCOMM_KNOB_INTEGER   ? KnobType::kInteger
               : type == EPCOMM_KNOB_BOOLEAN ? KnobType::kBoolean
               : type == EPCOMM_KNOB_CHOICE  ? KnobType::kChoice
                                             : KnobType::kString;
    row.agreed = (k.type & EPCOMM_KNOB_AGREED) != 0;
    row.unit = k.unit ? k.unit : "";
    row.defaultValue = k.defaultValue ? k.defaultValue : "";
    row.min = k.min;
    row.max = k.max;
    row.choices = splitList(k.choices, '|');
    row.meaning = k.meaning ? k.meaning : "";
    row.layer = t.name ? t.name : "backend";
    rows.push_back(std::move(row));
  }
  registerKnobs(rows);  // copies every string
}

}  // namespace

void registerBackendKnobs(const Config& config) {
  std::vector<std::string> names = {"shm", "mpi", "ucx"};
  if (config.backend != "auto" && config.backend != "shm" && config.backend != "mpi" &&
      config.backend != "ucx") {
    names.push_back(config.backend);
  }
  for (const std::string& name : names) {
    try {
      loadBackendPlugin(name, config, 0);
    } catch (const Error&) {
      // Not built or not installed here: it has no rows to list.
    }
  }
}

bool backendPluginFound(const std::string& name, const Config& config) {
  const std::string file = "libepcomm-backend-" + name + ".so";
  for (const std::string& dir : pluginSearchPath(config)) {
    std::error_code ec;
    if (fs::exists(fs::path(dir) / file, ec)) return true;
  }
  return false;
}

LoadedPlugin loadBackendPlugin(const std::string& name, const Config& config, int rank) {
  static std::mutex mutex;
  static std::map<std::string, const epcommBackendV1*> loaded;  // by path
  const std::lock_guard<std::mutex> lock(mutex);

  const char* op = "load backend plugin";
  if (!validName(name)) {
    throwError(ErrorCode::kInvalidArgument, rank, op,
               "backend name \"" + name +
                   "\" is not valid (EPCOMM_BACKEND takes auto, mpi, or a plugin name of "
                   "letters, digits, '_' and '-')");
  }
  const std::string file = "libepcomm-backend-" + name + ".so";
  std::string looked;
  bool refused = false;
  for (const std::string& dir : pluginSearchPath(config)) {
    const std::string path = (fs::path(dir) / file).string();
    if (auto it = loaded.find(path); it != loaded.end()) return {it->second, path};
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      looked += "\n  " + path + ": not found";
      continue;
    }
    const epcommBackendV1* table = nullptr;
    const std::string why = inspect(path, &table);
    if (!why.empty()) {
      refused = true;
      looked += "\n  " + path + ": " + why;
      continue;
    }
    log().debug("loaded backend plugin {} from {}", name, path);
    registerPluginKnobs(*table);
    loaded.emplace(path, table);
    return {table, path};
  }
  throwError(refused ? ErrorCode::kInvalidUsage : ErrorCode::kInvalidArgument, rank, op,
             "no usable plugin for backend \"" + name + "\" (" + file + "); looked in:" + looked +
                 "\nset EPCOMM_PLUGIN_PATH to the folder that holds it, or EPCOMM_BACKEND to an "
                 "installed backend");
}

}  // namespace epcomm
