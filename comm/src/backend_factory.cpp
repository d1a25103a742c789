#include "comm/src/backend_factory.h"

#include <fmt/format.h>

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/src/host_identity.h"
#include "comm/src/launch_environment.h"
#include "comm/src/plugin_loader.h"
#include "comm/src/workers.h"
#include "comm/two_level/two_level_backend.h"
#include "comm/types.h"

namespace epcomm {
namespace {

// The C shim handed to backends; exceptions stop here, and the first one is kept, so that a
// backend that could not start because the bootstrap failed (a rank that never came) reports
// the bootstrap's own error (its code, the missing ranks), not only its own words for it.
struct BootstrapShim {
  Bootstrap* bootstrap;
  std::optional<Error> failure;
};

int bootstrapAllGather(void* ctx, const void* send, void* recv, size_t bytes) {
  auto* shim = static_cast<BootstrapShim*>(ctx);
  try {
    shim->bootstrap->allGather(send, recv, bytes);
    return 0;
  } catch (const Error& e) {
    log().debug("bootstrap all-gather failed: {}", e.what());
    if (!shim->failure) shim->failure = e;
    return 1;
  } catch (const std::exception& e) {
    log().debug("bootstrap all-gather failed: {}", e.what());
    if (!shim->failure) shim->failure = Error(ErrorCode::kSystemError, e.what());
    return 1;
  }
}

// The values of a plugin's knobs, resolved and validated before create (a bad value is an
// error naming its variable, raised here, not inside the plugin), handed over args->knob.
struct PluginKnobs {
  std::map<std::string, std::string, std::less<>> values;

  PluginKnobs(const epcommBackendV1& table, const Config& config) {
    const std::size_t needed = offsetof(epcommBackendV1, numKnobs) + sizeof(table.numKnobs);
    if (table.structSize < needed || !table.knobs) return;
    for (std::size_t i = 0; i < table.numKnobs; ++i) {
      if (table.knobs[i].name) values[table.knobs[i].name] = config.text(table.knobs[i].name);
    }
  }
  static const char* lookup(void* ctx, const char* name) {
    const auto& values = static_cast<const PluginKnobs*>(ctx)->values;
    const auto it = values.find(std::string_view(name ? name : ""));
    return it == values.end() ? nullptr : it->second.c_str();
  }
};

std::vector<int> hostsOfRanks(Bootstrap& bootstrap, int size) {
  const HostIdentity mine = thisHost();
  std::vector<HostIdentity> all(static_cast<std::size_t>(size));
  bootstrap.allGather(&mine, all.data(), sizeof mine);
  return numberHosts(all);
}

}  // namespace

void BackendBootstrap::allGather(const void* send, void* recv, std::size_t bytes) {
  backend_.allGather(send, recv, bytes, static_cast<int>(DataType::kU8));
}

BackendChoice chooseBackend(const Config& config, Bootstrap& bootstrap, int rank, int size) {
  BackendChoice choice;
  if (const std::size_t plus = config.backend.find('+'); plus != std::string::npos) {
    choice.local = config.backend.substr(0, plus);
    choice.network = config.backend.substr(plus + 1);
    if (choice.local.empty() || choice.network.empty() ||
        choice.network.find('+') != std::string::npos) {
      throwError(ErrorCode::kInvalidArgument, rank, "init",
                 "EPCOMM_BACKEND=\"" + config.backend +
                     "\" is not <backend> or <in-host backend>+<network backend> (e.g. shm+ucx)");
    }
    choice.hostOfRank = hostsOfRanks(bootstrap, size);
    return choice;
  }
  if (config.backend != "auto") {
    choice.local = config.backend;
    return choice;
  }
  // Every rank sees the same table, so every rank decides alike (the plugin is installed
  // alike on every host, or the ranks fail to agree on the backend's settings at init).
  choice.hostOfRank = hostsOfRanks(bootstrap, size);
  bool oneHost = true;
  for (const int h : choice.hostOfRank) oneHost = oneHost && h == 0;
  choice.local = "shm";
  if (oneHost) {
    choice.hostOfRank.clear();
    return choice;
  }
  const bool mpirun = launcherRanks().size > 0;
  if (backendPluginFound("ucx", config)) {
    choice.network = "ucx";
    log().info(
        "EPCOMM_BACKEND=auto: the ranks span several hosts: shm inside each host, ucx among "
        "them{}",
        mpirun ? " (ucx preferred to mpi under mpirun; EPCOMM_BACKEND=shm+mpi chooses mpi)" : "");
    return choice;
  }
  if (mpirun) {
    choice.network = "mpi";
    log().info(
        "EPCOMM_BACKEND=auto: the ranks span several hosts: shm inside each host, mpi among "
        "them (the ucx plugin is not installed)");
    return choice;
  }
  throwError(ErrorCode::kInvalidUsage, rank, "init",
             "EPCOMM_BACKEND=auto: the ranks span several hosts and were not launched by "
             "mpirun, and the ucx backend (libepcomm-backend-ucx.so) is not installed: install "
             "it (set EPCOMM_PLUGIN_PATH to its folder) or launch with mpirun "
             "(EPCOMM_BACKEND=shm+mpi)");
}

std::unique_ptr<BackendHandle> createBackend(const std::string& name, Bootstrap* bootstrap,
                                             int rank, int size, const Config& config) {
  const LoadedPlugin plugin = loadBackendPlugin(name, config, rank);
  PluginKnobs knobs(*plugin.table, config);
  // A network backend gets the interface the user selected (ucx: unless UCX's own settings).
  const std::string netDevice = name == "ucx" ? ucxNetDevice(config, rank) : std::string();
  BootstrapShim shimCtx{bootstrap, std::nullopt};
  epcommBackendBootstrap shim{&shimCtx, &bootstrapAllGather};
  epcommBackendCreateArgs args{};
  args.structSize = sizeof(args);
  args.rank = rank;
  args.size = size;
  args.bootstrap = bootstrap ? &shim : nullptr;
  args.timeoutMs = config.timeoutMs;
  args.waitReportMs = config.waitReportS * 1000;
  args.bufferBytes = config.bufferBytes;
  args.log = &logFromBackend;
  args.knob = &PluginKnobs::lookup;
  args.knobCtx = &knobs;
  args.netDevice = netDevice.empty() ? nullptr : netDevice.c_str();
  args.parallelFor = &epcommBackendParallelFor;
  try {
    return BackendHandle::create(plugin.table, args);
  } catch (const Error&) {
    if (!shimCtx.failure) throw;  // else the backend's own words for the same failure
    throw Error(shimCtx.failure->code(),
                fmt::format("{} (backend {} could not start)", shimCtx.failure->what(), name));
  }
}

std::unique_ptr<BackendHandle> createChosenBackend(const BackendChoice& choice,
                                                   Bootstrap& bootstrap, int rank, int size,
                                                   const Config& config,
                                                   std::unique_ptr<BackendHandle> network) {
  if (!choice.twoLevel()) {
    if (network && network->name() == choice.local) return network;
    return createBackend(choice.local, &bootstrap, rank, size, config);
  }
  if (!network || network->name() != choice.network) {
    network = createBackend(choice.network, &bootstrap, rank, size, config);
  }
  // The in-host level bootstraps over the network level's split by host.
  return two_level::createTwoLevelBackend(
      std::move(network), choice.hostOfRank,
      [&](Bootstrap& hostBootstrap, int localRank, int localSize) {
        return createBackend(choice.local, &hostBootstrap, localRank, localSize, config);
      },
      config);
}

}  // namespace epcomm
