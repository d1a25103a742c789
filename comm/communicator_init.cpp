// Communicator::init* : the init paths (UniqueId, the caller's all-gather, the environment:
// EPCOMM_INIT_ADDR, mpirun, one rank). Each brings up a bootstrap, then shares one tail:
// the backend over that bootstrap (createWorldBackend), the communicator, its binding
// (assemble).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

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
#include "comm/src/backend_factory.h"
#include "comm/src/backend_handle.h"
#include "comm/src/bootstrap.h"
#include "comm/src/host_identity.h"
#include "comm/src/launch_environment.h"
#include "comm/src/plugin_loader.h"
#include "comm/src/workers.h"

namespace epcomm {
namespace {

// A numeric IPv4 or IPv6 address of this machine's loopback (127.0.0.0/8, ::1, and IPv4 in
// IPv6 for 127/8): only processes of this host can reach it.
bool isLoopback(const std::string& address) {
  in_addr v4{};
  if (inet_pton(AF_INET, address.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, address.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

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

// A single rank needs no exchange.
class SelfBootstrap final : public Bootstrap {
 public:
  void allGather(const void* send, void* recv, std::size_t bytes) override {
    if (bytes) std::memcpy(recv, send, bytes);
  }
};

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
  return createChosenBackend(chooseBackend(config, bootstrap, rank, size), bootstrap, rank, size,
                             config);
}

}  // namespace

std::unique_ptr<Communicator> Communicator::assemble(std::unique_ptr<BackendHandle> backend,
                                                     const Config& config) {
  std::unique_ptr<Communicator> comm(new Communicator(std::move(backend), config));
  comm->agreeOnSettings();
  comm = bindIfAsked(std::move(comm));
  configureThreads(config, comm->localSize());
  return comm;
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
    if (config.initSecret.empty() && !config.initInsecure && !isLoopback(info.host)) {
      throwError(
          ErrorCode::kInvalidUsage, config.initRank, op,
          fmt::format("EPCOMM_INIT_ADDR={} is not a loopback address and EPCOMM_INIT_SECRET is "
                      "empty: anyone who reaches the port could join as a rank. Set "
                      "EPCOMM_INIT_SECRET to the same string (up to {} bytes, e.g. `openssl rand "
                      "-hex 16`) on every rank, or EPCOMM_INIT_INSECURE=1 to accept anyone",
                      config.initAddr, kSecretBytes));
    }
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
    const BackendChoice choice = chooseBackend(config, bootstrap, launcher.rank, launcher.size);
    return assemble(createChosenBackend(choice, bootstrap, launcher.rank, launcher.size, config,
                                        std::move(mpi)),
                    config);
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
