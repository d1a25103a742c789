#include "comm/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "comm/log.h"
#include "comm/src/argument_check.h"
#include "comm/src/backend_handle.h"
#include "comm/src/bootstrap.h"
#include "comm/src/plugin_loader.h"
#include "topology/cpu_affinity.h"
#include "topology/interface_selection.h"

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

struct LauncherRanks {
  int rank = -1;
  int size = -1;
};

int envInt(const char* name) {
  const char* v = std::getenv(name);
  const std::optional<std::int64_t> x = v ? parseInteger(v) : std::nullopt;
  return (x && *x >= 0 && *x <= std::numeric_limits<int>::max()) ? static_cast<int>(*x) : -1;
}

// Ranks given by mpirun (Open MPI), or by a PMI launcher.
LauncherRanks launcherRanks() {
  LauncherRanks r{envInt("OMPI_COMM_WORLD_RANK"), envInt("OMPI_COMM_WORLD_SIZE")};
  if (r.rank < 0 || r.size <= 0) r = {envInt("PMI_RANK"), envInt("PMI_SIZE")};
  if (r.rank < 0 || r.size <= 0 || r.rank >= r.size) return {};
  return r;
}

// Where the environment says this process is one of several ranks but gives no way to
// reach them (torchrun / the engines' MASTER_ADDR + RANK + WORLD_SIZE, srun), the reason;
// empty where one rank is what it says.
std::string unreachableWorld(const Config& config) {
  std::string said;
  if (config.initSize > 1) {
    said = "EPCOMM_SIZE or WORLD_SIZE is " + std::to_string(config.initSize);
  } else if (const int n = envInt("SLURM_NTASKS"); n > 1) {
    said = "SLURM_NTASKS is " + std::to_string(n);
  } else if (const int local = envInt("LOCAL_WORLD_SIZE"); local > 1) {
    said = "LOCAL_WORLD_SIZE is " + std::to_string(local);
  } else {
    return {};
  }
  const char* master = std::getenv("MASTER_ADDR");
  return "the environment says this is one of several ranks (" + said +
         (master ? ", MASTER_ADDR=" + std::string(master) : std::string()) +
         ") but names no way to reach them: set EPCOMM_INIT_ADDR=host:port (rank 0 listens "
         "there; e.g. MASTER_ADDR with a free port other than MASTER_PORT, which torch's store "
         "holds) with EPCOMM_RANK/RANK and EPCOMM_SIZE/WORLD_SIZE, or bootstrap through the "
         "caller's all-gather (Communicator::init(allGather, rank, size), "
         "epcommCommInitRankOob) or a UniqueId, or launch with mpirun";
}

// Under mpirun, data between hosts travels through Open MPI's btl/tcp. A selection the user
// made (EPCOMM_SOCKET_IFNAME / EPCOMM_IF_IP and their HCCL/GLOO aliases) is validated on
// every rank (an error naming the knob when it matches nothing) and handed to Open MPI as
// btl_tcp_if_include through its environment, which MPI_Init reads, unless the user set
// Open MPI's own parameter (mpirun --mca, OMPI_MCA_*), which then wins.
void handInterfaceToOpenMpi(const Config& config, int rank) {
  const char* include = std::getenv("OMPI_MCA_btl_tcp_if_include");
  const char* exclude = std::getenv("OMPI_MCA_btl_tcp_if_exclude");
  if (config.socketIfname.empty() && config.ifIp.empty()) {
    log().info(
        "mpi: data between hosts over Open MPI's own interface choice ({}); set "
        "EPCOMM_SOCKET_IFNAME or EPCOMM_IF_IP to choose",
        include   ? "btl_tcp_if_include=" + std::string(include)
        : exclude ? "btl_tcp_if_exclude=" + std::string(exclude)
                  : std::string("every interface but loopback"));
    return;
  }
  const topology::InterfaceSelection nic = topology::selectInterface(config, rank);
  if (include || exclude) {
    log().info(
        "mpi: data between hosts as Open MPI's {}={} says (set by the user, so the "
        "selected interface {} is not handed to it)",
        include ? "btl_tcp_if_include" : "btl_tcp_if_exclude", include ? include : exclude,
        nic.name);
    return;
  }
  setenv("OMPI_MCA_btl_tcp_if_include", nic.name.c_str(), 1);
  log().info(
      "mpi: data between hosts over interface {} ({}): handed to Open MPI as "
      "btl_tcp_if_include (effective unless MPI was initialised before epcomm)",
      nic.name, nic.address);
}

// Identifies the host (and its IPC namespace) for localRank/localSize.
std::array<char, 128> hostIdentity() {
  std::array<char, 128> id{};
  gethostname(id.data(), 95);
  std::error_code ec;
  const std::string ns = std::filesystem::read_symlink("/proc/self/ns/ipc", ec).string();
  std::strncpy(id.data() + 96, ns.c_str(), 31);
  return id;
}

// Which plugin EPCOMM_BACKEND names; auto (collective over the bootstrap): shm when every
// rank is on this host, else mpi when launched by mpirun. Across hosts without mpirun there
// is no backend in this build (tcp is not part of it): that is an error saying so.
std::string resolveBackendName(const Config& config, Bootstrap& bootstrap, int rank, int size) {
  if (config.backend != "auto") return config.backend;
  const std::array<char, 128> mine = hostIdentity();
  std::vector<char> all(mine.size() * static_cast<std::size_t>(size));
  bootstrap.allGather(mine.data(), all.data(), mine.size());
  // Every rank sees the same table, so every rank decides alike.
  bool oneHost = true;
  for (int r = 1; r < size && oneHost; ++r) {
    oneHost = std::memcmp(all.data() + r * mine.size(), all.data(), mine.size()) == 0;
  }
  if (oneHost) return "shm";
  if (launcherRanks().size > 0) return "mpi";
  throwError(ErrorCode::kInvalidUsage, rank, "init",
             "EPCOMM_BACKEND=auto: the ranks span several hosts and were not launched by "
             "mpirun; this build has no tcp backend, so launch with mpirun (EPCOMM_BACKEND=mpi)");
}

std::unique_ptr<BackendHandle> createBackend(const std::string& name, Bootstrap* bootstrap,
                                             int rank, int size, const Config& config) {
  const LoadedPlugin plugin = loadBackendPlugin(name, config, rank);
  epcommBackendBootstrap shim{bootstrap, &bootstrapAllGather};
  epcommBackendCreateArgs args{};
  args.structSize = sizeof(args);
  args.rank = rank;
  args.size = size;
  args.bootstrap = bootstrap ? &shim : nullptr;
  args.timeoutMs = config.timeoutMs;
  args.bufferBytes = config.bufferBytes;
  args.log = &logFromBackend;
  return BackendHandle::create(plugin.table, args);
}

void checkRankSize(int rank, int size, const char* op) {
  if (size <= 0) {
    throwError(ErrorCode::kInvalidArgument, rank, op,
               "size " + std::to_string(size) + " must be at least 1");
  }
  if (rank < 0 || rank >= size) {
    throwError(
        ErrorCode::kInvalidArgument, rank, op,
        "rank " + std::to_string(rank) + " is out of range for size " + std::to_string(size));
  }
}

// EPCOMM_CPU_AFFINITY: once the rank's place on its host is known, bind it to its share of
// the cores (topology/). Only the communicators made by init bind, not split's children.
// EPCOMM_CPU_AFFINITY: the ranks of a host that were given the same cpus (launcher, taskset,
// the engine, or the whole machine) divide them; a rank never leaves the cpus it was given.
std::unique_ptr<Communicator> bindIfAsked(std::unique_ptr<Communicator> comm) {
  if (!comm->config().cpuAffinity) return comm;
  constexpr std::size_t kMaxCpus = 4096;
  struct Record {
    std::array<char, 128> host;
    std::array<std::uint64_t, kMaxCpus / 64> cpus;
  };
  Record mine{hostIdentity(), {}};
  const std::vector<int> cpus = topology::processCpus();
  for (int cpu : cpus) {
    if (cpu >= 0 && static_cast<std::size_t>(cpu) < kMaxCpus)
      mine.cpus[cpu / 64] |= 1ull << (cpu % 64);
  }
  std::vector<Record> all(static_cast<std::size_t>(comm->size()));
  comm->allGather(&mine, all.data(), sizeof(Record), DataType::kU8);
  topology::BindingGroup group;
  group.cpus = cpus;
  group.size = 0;
  for (int r = 0; r < comm->size(); ++r) {
    const Record& other = all[static_cast<std::size_t>(r)];
    if (other.host != mine.host || other.cpus != mine.cpus) continue;
    if (r < comm->rank()) ++group.index;
    ++group.size;
  }
  topology::bindLocalRank(comm->config(), comm->rank(), group);
  return comm;
}

}  // namespace

Communicator::Communicator(std::unique_ptr<BackendHandle> backend, Config config)
    : backend_(std::move(backend)), config_(std::move(config)) {
  rank_ = backend_->rank();
  size_ = backend_->size();
  finishInit();
}

Communicator::~Communicator() {
  if (!windows_.empty()) {
    // The backend releases their memory with itself; the Window objects must not call it.
    log().warn(
        "communicator destroyed with {} window(s) alive: their memory is released; "
        "destroy windows (and registered buffers) before their communicator",
        windows_.size());
    for (Window* w : windows_) {
      w->comm_ = nullptr;
      w->peers_.clear();
    }
  }
}

void Communicator::finishInit() {
  const std::array<char, 128> mine = hostIdentity();
  std::vector<char> all(mine.size() * static_cast<std::size_t>(size_));
  backend_->allGather(mine.data(), all.data(), mine.size(), static_cast<int>(DataType::kU8));
  localRank_ = 0;
  localSize_ = 0;
  for (int r = 0; r < size_; ++r) {
    if (std::memcmp(all.data() + r * mine.size(), mine.data(), mine.size()) != 0) continue;
    if (r < rank_) ++localRank_;
    ++localSize_;
  }
  log().info("communicator up: rank {} of {} (local {} of {}), backend {}", rank_, size_,
             localRank_, localSize_, backend_->name());
}

std::unique_ptr<Communicator> Communicator::init(const UniqueId& id, int rank, int size,
                                                 const Config& config) {
  setLogLevel(config.logLevel);
  checkRankSize(rank, size, "init");
  setLogRank(rank);
  const RendezvousInfo info = decodeUniqueId(id, rank);
  std::unique_ptr<Bootstrap> bootstrap =
      connectRendezvous(info, rank, size, config.connectTimeoutS);
  const std::string name = resolveBackendName(config, *bootstrap, rank, size);
  auto backend = createBackend(name, bootstrap.get(), rank, size, config);
  return bindIfAsked(std::unique_ptr<Communicator>(new Communicator(std::move(backend), config)));
}

std::unique_ptr<Communicator> Communicator::init(const OobAllGather& allGather, int rank, int size,
                                                 const Config& config) {
  setLogLevel(config.logLevel);
  checkRankSize(rank, size, "init");
  setLogRank(rank);
  if (!allGather)
    throwError(ErrorCode::kInvalidArgument, rank, "init", "the all-gather callback is empty");
  OobBootstrap bootstrap(allGather);
  const std::string name = resolveBackendName(config, bootstrap, rank, size);
  auto backend = createBackend(name, &bootstrap, rank, size, config);
  return bindIfAsked(std::unique_ptr<Communicator>(new Communicator(std::move(backend), config)));
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
                 "EPCOMM_INIT_ADDR=\"" + config.initAddr + "\" is not host:port");
    }
    if (config.initSecret.size() > kSecretBytes) {
      throwError(ErrorCode::kInvalidArgument, config.initRank, op,
                 "EPCOMM_INIT_SECRET is longer than " + std::to_string(kSecretBytes) + " bytes");
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
    const std::string name =
        resolveBackendName(config, *bootstrap, config.initRank, config.initSize);
    auto backend = createBackend(name, bootstrap.get(), config.initRank, config.initSize, config);
    return bindIfAsked(std::unique_ptr<Communicator>(new Communicator(std::move(backend), config)));
  }
  if (const LauncherRanks launcher = launcherRanks(); launcher.size > 0) {
    setLogRank(launcher.rank);
    // Under mpirun the ranks bootstrap through MPI itself: the mpi backend needs no
    // exchange for the world, and lends its all-gather to any other backend.
    handInterfaceToOpenMpi(config, launcher.rank);
    auto mpi = createBackend("mpi", nullptr, launcher.rank, launcher.size, config);
    BackendBootstrap bootstrap(*mpi);
    const std::string name = resolveBackendName(config, bootstrap, launcher.rank, launcher.size);
    if (name == "mpi")
      return bindIfAsked(std::unique_ptr<Communicator>(new Communicator(std::move(mpi), config)));
    auto backend = createBackend(name, &bootstrap, launcher.rank, launcher.size, config);
    return bindIfAsked(std::unique_ptr<Communicator>(new Communicator(std::move(backend), config)));
  }
  if (const std::string why = unreachableWorld(config); !why.empty()) {
    throwError(ErrorCode::kInvalidUsage, config.initRank >= 0 ? config.initRank : 0,
               "init from the environment", why);
  }
  setLogRank(0);
  SelfBootstrap bootstrap;
  const std::string name = resolveBackendName(config, bootstrap, 0, 1);
  auto backend = createBackend(name, &bootstrap, 0, 1, config);
  return bindIfAsked(std::unique_ptr<Communicator>(new Communicator(std::move(backend), config)));
}

const std::string& Communicator::backendName() const {
  return backend_->name();
}

void Communicator::checkUsable(const char* op) const {
  if (aborted_) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               "the communicator was aborted (after an error or abort()); create a new one");
  }
}

void Communicator::runErased(const char* op, void* fn, void (*call)(void*)) {
  const ArgumentCheck* armed = std::exchange(armed_, nullptr);
  try {
    call(fn);
  } catch (const Error& e) {
    // A failure inside the backend leaves the ranks at different points: abort. A bad
    // argument the backend found (comm/backend.h) left no peer waiting: stay usable.
    if (e.code() != ErrorCode::kInvalidArgument) abort();
    // This rank's own problem names the bad argument; the backend's names only the rank.
    if (armed && !armed->ok()) throwError(ErrorCode::kInvalidArgument, rank_, op, armed->problem());
    throw;
  }
  if (armed && !armed->ok()) {
    // The backend broke its contract (it ran a call this rank declared invalid).
    abort();
    throwError(ErrorCode::kInvalidArgument, rank_, op, armed->problem());
  }
}

namespace {

// A small stable number per operation name, so ranks can compare what they called.
std::int64_t operationId(const char* op) {
  std::uint64_t h = kFnvOffset;
  for (const char* c = op; *c; ++c) h = fnvMix(h, static_cast<unsigned char>(*c));
  return static_cast<std::int64_t>(h >> 2);
}

}  // namespace

Communicator::Agreement Communicator::agree(const char* op, const ArgumentCheck& check,
                                            std::initializer_list<Shape> shapes) {
  if (config_.checkArgs && size_ > 1 &&
      backend_->hasCapability(EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY)) {
    // The backend compares every rank's record in the collective's first step.
    epcommCallCheck c{};
    c.structSize = sizeof(c);
    c.valid = check.ok() ? 1 : 0;
    c.opId = operationId(op);
    c.op = op;
    for (const Shape& shape : shapes) {
      if (c.numShapes == 3) break;
      c.shape[c.numShapes] = shape.value;
      c.shapeName[c.numShapes] = shape.name;
      ++c.numShapes;
    }
    run(op, [&] { backend_->setCallCheck(c); });
    armed_ = &check;
    return Agreement::kArmed;
  }
  if (!config_.checkArgs || size_ == 1) {
    if (!check.ok()) {
      // Peers may already be inside the collective: this communicator is now unusable.
      if (size_ > 1) abort();
      throwError(ErrorCode::kInvalidArgument, rank_, op, check.problem());
    }
    return Agreement::kLocal;
  }
  agreeByAllReduce(op, check, shapes);
  return Agreement::kAgreed;
}

void Communicator::agreeByAllReduce(const char* op, const ArgumentCheck& check,
                                    std::initializer_list<Shape> shapes) {
  if (size_ == 1) {
    if (!check.ok()) throwError(ErrorCode::kInvalidArgument, rank_, op, check.problem());
    return;
  }
  // Max over ranks of: the highest bad rank, the operation and every shape, each also
  // bit-inverted (~x orders in reverse, so its max gives the min without overflow).
  constexpr std::size_t kSlots = 3 + 2 * 3;
  std::int64_t v[kSlots] = {};
  v[0] = check.ok() ? -1 : rank_;
  v[1] = operationId(op);
  v[2] = ~v[1];
  std::size_t i = 3;
  for (const Shape& shape : shapes) {
    v[i++] = shape.value;
    v[i++] = ~shape.value;
  }
  run(op, [&] {
    backend_->allReduce(v, v, kSlots, static_cast<int>(DataType::kI64),
                        static_cast<int>(ReduceOp::kMax));
  });
  if (!check.ok()) throwError(ErrorCode::kInvalidArgument, rank_, op, check.problem());
  if (v[0] >= 0) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "rank " + std::to_string(v[0]) +
                   " passed invalid arguments (its error names them); no data was moved");
  }
  if (v[1] != ~v[2]) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "ranks called different collectives at the same point (this rank called " +
                   std::string(op) + "); no data was moved");
  }
  i = 3;
  for (const Shape& shape : shapes) {
    const std::int64_t hi = v[i];
    const std::int64_t lo = ~v[i + 1];
    i += 2;
    if (hi != lo) {
      throwError(ErrorCode::kInvalidArgument, rank_, op,
                 std::string("ranks disagree on ") + shape.name + ": this rank passed " +
                     std::to_string(shape.value) + ", the ranks' values range " +
                     std::to_string(lo) + ".." + std::to_string(hi) +
                     "; every rank must pass the same; no data was moved");
    }
  }
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  constexpr const char* kOp = "split";
  checkUsable(kOp);
  std::unique_ptr<BackendHandle> child;
  run(kOp, [&] { child = backend_->split(color, key); });
  if (!child) return nullptr;
  return std::unique_ptr<Communicator>(new Communicator(std::move(child), config_));
}

void Communicator::abort() {
  if (aborted_.exchange(true)) return;
  try {
    backend_->abort();
  } catch (const Error& e) {
    log().warn("abort: {}", e.what());
  }
}

}  // namespace epcomm
