// Communicator::init* : the init paths (UniqueId, the caller's all-gather, the environment:
// EPCOMM_INIT_ADDR, mpirun, one rank). Each brings up a bootstrap, then shares one tail:
// the backend over that bootstrap (createWorldBackend), the communicator, its binding
// (assemble).
#include <fmt/format.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/log.h"
#include "comm/src/affinity.h"
#include "comm/src/backend_handle.h"
#include "comm/src/bootstrap.h"
#include "comm/src/host_identity.h"
#include "comm/src/launch_environment.h"
#include "comm/src/plugin_loader.h"

namespace epcomm {
namespace {

// Bootstrap through the caller's all-gather.
class OobBootstrap final : public Bootstrap {
 public:
  explicit OobBootstrap(const OobAllGather& fn) : fn_(fn) {}
  void allGather(const void* send, void* recv, std::size_t bytes) override {
    fn_(send, recv, bytes);
  }

 private:
  const OobAllGather& fn_;
};

// Bootstrap through a running backend (under mpirun: the mpi backend).
class BackendBootstrap final : public Bootstrap {
 public:
  explicit BackendBootstrap(BackendHandle& backend) : backend_(backend) {}
  void allGather(const void* send, void* recv, std::size_t bytes) override {
    backend_.allGather(send, recv, bytes, static_cast<int>(DataType::kU8));
  }

 private:
  BackendHandle& backend_;
};

// A single rank needs no exchange.
class SelfBootstrap final : public Bootstrap {
 public:
  void allGather(const void* send, void* recv, std::size_t bytes) override {
    if (bytes) std::memcpy(recv, send, bytes);
  }
};

// The C shim handed to backends; exceptions stop here.
int bootstrapAllGather(void* ctx, const void* send, void* recv, size_t bytes) {
  try {
    static_cast<Bootstrap*>(ctx)->allGather(send, recv, bytes);
    return 0;
  } catch (const Error& e) {
    log().error("bootstrap all-gather failed: {}", e.what());
    return 1;
  } catch (const std::exception& e) {
    log().error("bootstrap all-gather failed: {}", e.what());
    return 1;
  }
}

// Which plugin EPCOMM_BACKEND names; auto (collective over the bootstrap): shm when every
// rank is on this host; across hosts ucx where its plugin is installed (whatever launched the
// ranks, mpirun included), else mpi under mpirun, else an error saying what is missing.
std::string resolveBackendName(const Config& config, Bootstrap& bootstrap, int rank, int size) {
  if (config.backend != "auto") return config.backend;
  const HostIdentity mine = thisHost();
  std::vector<HostIdentity> all(static_cast<std::size_t>(size));
  bootstrap.allGather(&mine, all.data(), sizeof mine);
  // Every rank sees the same table, so every rank decides alike (the plugin is installed
  // alike on every host, or the ranks fail to agree on the backend's settings at init).
  bool oneHost = true;
  for (int r = 1; r < size && oneHost; ++r) oneHost = all[static_cast<std::size_t>(r)] == all[0];
  if (oneHost) return "shm";
  const bool mpirun = launcherRanks().size > 0;
  if (backendPluginFound("ucx", config)) {
    log().info("EPCOMM_BACKEND=auto: the ranks span several hosts: ucx{}",
               mpirun ? " (preferred to mpi under mpirun; EPCOMM_BACKEND=mpi chooses mpi)" : "");
    return "ucx";
  }
  if (mpirun) {
    log().info(
        "EPCOMM_BACKEND=auto: the ranks span several hosts: mpi (the ucx plugin is not "
        "installed)");
    return "mpi";
  }
  throwError(ErrorCode::kInvalidUsage, rank, "init",
             "EPCOMM_BACKEND=auto: the ranks span several hosts and were not launched by "
             "mpirun, and the ucx backend (libepcomm-backend-ucx.so) is not installed: install "
             "it (set EPCOMM_PLUGIN_PATH to its folder) or launch with mpirun "
             "(EPCOMM_BACKEND=mpi)");
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

std::unique_ptr<BackendHandle> createBackend(const std::string& name, Bootstrap* bootstrap,
                                             int rank, int size, const Config& config) {
  const LoadedPlugin plugin = loadBackendPlugin(name, config, rank);
  PluginKnobs knobs(*plugin.table, config);
  // A network backend gets the interface the user selected (ucx: unless UCX's own settings).
  const std::string netDevice = name == "ucx" ? ucxNetDevice(config, rank) : std::string();
  epcommBackendBootstrap shim{bootstrap, &bootstrapAllGather};
  epcommBackendCreateArgs args{};
  args.structSize = sizeof(args);
  args.rank = rank;
  args.size = size;
  args.bootstrap = bootstrap ? &shim : nullptr;
  args.timeoutMs = config.timeoutMs;
  args.bufferBytes = config.bufferBytes;
  args.log = &logFromBackend;
  args.knob = &PluginKnobs::lookup;
  args.knobCtx = &knobs;
  args.netDevice = netDevice.empty() ? nullptr : netDevice.c_str();
  return BackendHandle::create(plugin.table, args);
}

void checkRankSize(int rank, int size, const char* op) {
  if (size <= 0) {
    throwError(ErrorCode::kInvalidArgument, rank, op,
               fmt::format("size {} must be at least 1", size));
  }
  if (rank < 0 || rank >= size) {
    throwError(ErrorCode::kInvalidArgument, rank, op,
               fmt::format("rank {} is out of range for size {}", rank, size));
  }
}

// The step every init path shares once its bootstrap is up: the backend EPCOMM_BACKEND names
// (auto: decided over the bootstrap), created over that bootstrap.
std::unique_ptr<BackendHandle> createWorldBackend(Bootstrap& bootstrap, int rank, int size,
                                                  const Config& config) {
  const std::string name = resolveBackendName(config, bootstrap, rank, size);
  return createBackend(name, &bootstrap, rank, size, config);
}

}  // namespace

std::unique_ptr<Communicator> Communicator::assemble(std::unique_ptr<BackendHandle> backend,
                                                     const Config& config) {
  std::unique_ptr<Communicator> comm(new Communicator(std::move(backend), config));
  comm->agreeOnSettings();
  return bindIfAsked(std::move(comm));
}

std::unique_ptr<Communicator> Communicator::init(const UniqueId& id, int rank, int size,
                                                 const Config& config) {
  setLogLevel(config.logLevel);
  checkRankSize(rank, size, "init");
  setLogRank(rank);
  const RendezvousInfo info = decodeUniqueId(id, rank);
  std::unique_ptr<Bootstrap> bootstrap =
      connectRendezvous(info, rank, size, config.connectTimeoutS);
  return assemble(createWorldBackend(*bootstrap, rank, size, config), config);
}

std::unique_ptr<Communicator> Communicator::init(const OobAllGather& allGather, int rank, int size,
                                                 const Config& config) {
  setLogLevel(config.logLevel);
  checkRankSize(rank, size, "init");
  setLogRank(rank);
  if (!allGather)
    throwError(ErrorCode::kInvalidArgument, rank, "init", "the all-gather callback is empty");
  OobBootstrap bootstrap(allGather);
  return assemble(createWorldBackend(bootstrap, rank, size, config), config);
}

std::unique_ptr<Communicator> Communicator::initFromEnvironment(const Config& config) {
  setLogLevel(config.logLevel);
  if (!config.initAddr.empty()) {
    const char* op = "init from EPCOMM_INIT_ADDR";
    if (config.initRank < 0 || config.initSize <= 0) {
      throwError(ErrorCode::kInvalidArgument, config.initRank, op,
                 "EPCOMM_INIT_ADDR=" + config.initAddr +
                     " needs EPCOMM_RANK (or RANK) and EPCOMM_SIZE (or WORLD_SIZE)");
    }
    checkRankSize(config.initRank, config.initSize, op);
    setLogRank(config.initRank);
    const std::size_t colon = config.initAddr.rfind(':');
    int port = -1;
    if (colon != std::string::npos) port = std::atoi(config.initAddr.c_str() + colon + 1);
    if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535) {
      throwError(ErrorCode::kInvalidArgument, config.initRank, op,
                 fmt::format("EPCOMM_INIT_ADDR=\"{}\" is not host:port", config.initAddr));
    }
    if (config.initSecret.size() > kSecretBytes) {
      throwError(ErrorCode::kInvalidArgument, config.initRank, op,
                 fmt::format("EPCOMM_INIT_SECRET is longer than {} bytes", kSecretBytes));
    }
    RendezvousInfo info;
    info.host = config.initAddr.substr(0, colon);
    if (info.host.size() > 2 && info.host.front() == '[' && info.host.back() == ']') {
      info.host = info.host.substr(1, info.host.size() - 2);
    }
    info.host = resolveHost(info.host, config.initRank);  // torch style: a name is fine
    info.port = static_cast<std::uint16_t>(port);
    std::memcpy(info.secret, config.initSecret.data(), config.initSecret.size());
    if (config.initRank == 0) startRendezvousServer(info, config.connectTimeoutS);
    auto bootstrap =
        connectRendezvous(info, config.initRank, config.initSize, config.connectTimeoutS);
    return assemble(createWorldBackend(*bootstrap, config.initRank, config.initSize, config),
                    config);
  }
  if (const LauncherRanks launcher = launcherRanks(); launcher.size > 0) {
    setLogRank(launcher.rank);
    // Under mpirun the ranks bootstrap through MPI itself: the mpi backend needs no
    // exchange for the world, and lends its all-gather to any other backend.
    handInterfaceToOpenMpi(config, launcher.rank);
    auto mpi = createBackend("mpi", nullptr, launcher.rank, launcher.size, config);
    BackendBootstrap bootstrap(*mpi);
    const std::string name = resolveBackendName(config, bootstrap, launcher.rank, launcher.size);
    if (name == "mpi") return assemble(std::move(mpi), config);
    return assemble(createBackend(name, &bootstrap, launcher.rank, launcher.size, config), config);
  }
  if (const std::string why = unreachableWorld(config); !why.empty()) {
    throwError(ErrorCode::kInvalidUsage, config.initRank >= 0 ? config.initRank : 0,
               "init from the environment", why);
  }
  setLogRank(0);
  SelfBootstrap bootstrap;
  return assemble(createWorldBackend(bootstrap, 0, 1, config), config);
}

}  // namespace epcomm
