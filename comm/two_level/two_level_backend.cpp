#include "comm/two_level/two_level_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "comm/log.h"
#include "comm/src/backend_factory.h"
#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {
namespace {

// Host indices renumbered in the order of each host's lowest rank (numberHosts' order).
std::vector<int> renumber(const std::vector<int>& hosts) {
  std::map<int, int> index;
  std::vector<int> out(hosts.size());
  for (std::size_t r = 0; r < hosts.size(); ++r) {
    const auto it = index.try_emplace(hosts[r], static_cast<int>(index.size())).first;
    out[r] = it->second;
  }
  return out;
}

const epcommBackendV1* tableFor(std::uint64_t capabilities, std::uint64_t maxCount) {
  static std::mutex mutex;
  static std::map<std::pair<std::uint64_t, std::uint64_t>, std::unique_ptr<epcommBackendV1>> tables;
  std::lock_guard<std::mutex> lock(mutex);
  auto& table = tables[{capabilities, maxCount}];
  if (!table) {
    table = std::make_unique<epcommBackendV1>(
        plugin_detail::makeTable<TwoLevelBackend>("two-level", capabilities, maxCount));
  }
  return table.get();
}

}  // namespace

std::unique_ptr<BackendHandle> createTwoLevelBackend(std::unique_ptr<BackendHandle> world,
                                                     std::vector<int> hostOfRank,
                                                     const InHostFactory& makeInHost,
                                                     const Config& config) {
  HostLayout layout(std::move(hostOfRank));
  const int rank = world->rank();
  // The knobs that shape the algorithms, compared before any two-level collective runs (the
  // communicator's own check of agreed knobs comes after the first ones): ranks that differ
  // would take different steps.
  const std::int64_t mine[2] = {static_cast<std::int64_t>(config.twoLevelSmallBytes),
                                config.twoLevelRails};
  std::vector<std::int64_t> all(2 * static_cast<std::size_t>(world->size()));
  world->allGather(mine, all.data(), 2, static_cast<int>(DataType::kI64));
  for (int r = 0; r < world->size(); ++r) {
    for (int k = 0; k < 2; ++k) {
      if (all[2 * static_cast<std::size_t>(r) + k] == mine[k]) continue;
      throwError(ErrorCode::kInvalidArgument, rank, "init",
                 fmt::format("ranks disagree on {} (this rank has {}, rank {} has {}); every rank "
                             "must set the same",
                             k == 0 ? "EPCOMM_TWO_LEVEL_SMALL_BYTES" : "EPCOMM_TWO_LEVEL_RAILS",
                             mine[k], r, all[2 * static_cast<std::size_t>(r) + k]));
    }
  }
  const int host = layout.hostOf(rank);
  const int local = layout.localOf(rank);
  std::unique_ptr<BackendHandle> inHost;
  {
    // The in-host backend bootstraps over the network backend's ranks of this host.
    std::unique_ptr<BackendHandle> hostRanks = world->split(host, rank);
    BackendBootstrap bootstrap(*hostRanks);
    inHost = makeInHost(bootstrap, local, layout.localSize(host));
  }
  std::unique_ptr<BackendHandle> rail = world->split(local, host);
  const std::string name = inHost->name() + "+" + world->name();
  log().info("two levels: host {} of {}, local rank {} of {} ({} in host, {} among hosts)", host,
             layout.numHosts(), local, layout.localSize(host), inHost->name(), world->name());
  return TwoLevelBackend::wrap(
      std::make_unique<TwoLevelBackend>(std::move(world), std::move(inHost), std::move(rail),
                                        std::move(layout), config.twoLevelSmallBytes,
                                        static_cast<int>(config.twoLevelRails)),
      name);
}

TwoLevelBackend::TwoLevelBackend(const epcommBackendCreateArgs& args) {
  throwError(ErrorCode::kInternal, args.rank, "init",
             "the two-level backend is built by the communicator, not loaded as a plugin");
}

TwoLevelBackend::TwoLevelBackend(std::unique_ptr<BackendHandle> world,
                                 std::unique_ptr<BackendHandle> inHost,
                                 std::unique_ptr<BackendHandle> rail, HostLayout layout,
                                 std::size_t smallBytes, int shareRails)
    : world_(std::move(world)),
      inHost_(std::move(inHost)),
      rail_(std::move(rail)),
      smallBytes_(smallBytes),
      shareRailsKnob_(shareRails) {
  levels_.rank = world_->rank();
  levels_.size = world_->size();
  levels_.layout = std::move(layout);
  levels_.host = levels_.layout.hostOf(levels_.rank);
  levels_.local = levels_.layout.localOf(levels_.rank);
  levels_.inHost = inHost_.get();
  levels_.rail = rail_.get();
  levels_.world = world_.get();
  const int fewest = levels_.layout.minLocalSize();
  levels_.rails = shareRails > 0 ? std::min(shareRails, fewest) : fewest;
}

std::unique_ptr<BackendHandle> TwoLevelBackend::wrap(std::unique_ptr<TwoLevelBackend> backend,
                                                     std::string name) {
  const BackendHandle& world = *backend->world_;
  const BackendHandle& inHost = *backend->inHost_;
  std::uint64_t caps = EPCOMM_BACKEND_CAP_MULTI_HOST;
  if (world.hasCapability(EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY) &&
      inHost.hasCapability(EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY)) {
    caps |= EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY;
  }
  if (backend->windowLevel()->hasWindows()) caps |= EPCOMM_BACKEND_CAP_WINDOWS;
  if (world.canShrink() && inHost.canShrink()) caps |= EPCOMM_BACKEND_CAP_SHRINK;
  // The levels see up to size times a call's count (all-gather's rail blocks).
  const std::size_t levelMax = std::min(world.maxCountPerCall(), inHost.maxCountPerCall());
  const std::uint64_t maxCount =
      levelMax == SIZE_MAX ? 0 : std::max<std::uint64_t>(1, levelMax / backend->size());
  const int rank = backend->rank();
  const int size = backend->size();
  auto* state = new plugin_detail::State{std::move(backend), {}};
  return std::make_unique<BackendHandle>(tableFor(caps, maxCount), state, std::move(name), rank,
                                         size);
}

BackendHandle* TwoLevelBackend::oneLevel() const {
  if (levels_.numHosts() == 1) return inHost_.get();
  if (levels_.layout.maxLocalSize() == 1) return world_.get();
  return nullptr;
}

BackendHandle* TwoLevelBackend::activeFlat() const {
  BackendHandle* one = oneLevel();
  return one ? one : world_.get();
}

Level TwoLevelBackend::levelOf(const BackendHandle* backend) const {
  return backend == inHost_.get() ? Level::kInHost : Level::kWorld;
}

void TwoLevelBackend::named(const char* algorithm) {
  algorithm_ = algorithm;
}

const char* TwoLevelBackend::lastAlgorithm() const {
  if (BackendHandle* one = oneLevel()) return one->lastAlgorithm();
  algorithmText_ = fmt::format("{} (in host: {}; among hosts: {})", algorithm_,
                               inHost_->lastAlgorithm(), rail_->lastAlgorithm());
  return algorithmText_.c_str();
}

bool TwoLevelBackend::waitState(int* peer, double* seconds, char* op, std::size_t opLen) const {
  const HostLayout& layout = levels_.layout;
  const struct {
    BackendHandle* backend;
    const char* level;
  } levels[] = {{inHost_.get(), "in-host level"},
                {rail_.get(), "rail level"},
                {world_.get(), "network level"}};
  for (const auto& l : levels) {
    if (!l.backend) continue;
    const BackendHandle::WaitState w = l.backend->waitState();
    if (!w.waiting) continue;
    int mine = w.peer;  // the level's rank in the communicator's numbering
    if (w.peer >= 0 && l.backend == inHost_.get()) {
      const std::vector<int>& members = layout.members(levels_.host);
      mine = w.peer < static_cast<int>(members.size()) ? members[w.peer] : -1;
    } else if (w.peer >= 0 && l.backend == rail_.get()) {
      const std::vector<int>& rail = layout.rail(levels_.local);
      mine = w.peer < static_cast<int>(rail.size()) ? rail[w.peer] : -1;
    }
    *peer = mine;
    *seconds = w.seconds;
    if (op && opLen > 0) std::snprintf(op, opLen, "%s [%s]", w.op.c_str(), l.level);
    return true;
  }
  return false;
}

void TwoLevelBackend::abortWithReason(const char* reason) {
  for (BackendHandle* b : {inHost_.get(), rail_.get(), world_.get()}) {
    try {
      b->abort(reason);
    } catch (const Error& e) {
      log().warn("abort: {}", e.what());
    }
  }
}

std::unique_ptr<TwoLevelBackend> TwoLevelBackend::over(std::unique_ptr<BackendHandle> world,
                                                       std::unique_ptr<BackendHandle> inHost) {
  std::vector<int> hosts(static_cast<std::size_t>(world->size()));
  const int mine = levels_.host;
  onLevel(Level::kWorld, world.get(),
          [&] { world->allGather(&mine, hosts.data(), 1, static_cast<int>(DataType::kI32)); });
  HostLayout layout(renumber(hosts));
  const int newRank = world->rank();
  std::unique_ptr<BackendHandle> rail;
  onLevel(Level::kWorld, world.get(),
          [&] { rail = world->split(layout.localOf(newRank), layout.hostOf(newRank)); });
  return std::make_unique<TwoLevelBackend>(std::move(world), std::move(inHost), std::move(rail),
                                           std::move(layout), smallBytes_, shareRailsKnob_);
}

std::unique_ptr<Backend> TwoLevelBackend::shrink(int* keptRanks) {
  std::vector<int> keptWorld, keptInHost;
  std::unique_ptr<BackendHandle> world;
  std::unique_ptr<BackendHandle> inHost;
  onLevel(Level::kWorld, world_.get(), [&] { world = world_->shrink(keptWorld); });
  onLevel(Level::kInHost, inHost_.get(), [&] { inHost = inHost_->shrink(keptInHost); });
  std::copy(keptWorld.begin(), keptWorld.end(), keptRanks);
  return over(std::move(world), std::move(inHost));
}

std::unique_ptr<Backend> TwoLevelBackend::split(int color, int key) {
  std::unique_ptr<BackendHandle> world;
  std::unique_ptr<BackendHandle> inHost;
  onLevel(Level::kWorld, world_.get(), [&] { world = world_->split(color, key); });
  // Ranks of one host keep their relative order in both splits (key, then the old rank,
  // whose order the local index follows).
  onLevel(Level::kInHost, inHost_.get(), [&] { inHost = inHost_->split(color, key); });
  if (!world) return nullptr;
  return over(std::move(world), std::move(inHost));
}

void TwoLevelBackend::setCallCheck(const epcommCallCheck* check) {
  if (check) {
    check_ = *check;
  } else {
    check_.reset();
  }
}

void TwoLevelBackend::allReduce(const void* send, void* recv, size_t count, int dtype, int op) {
  if (BackendHandle* one = oneLevel()) {
    return onLevel(levelOf(one), one, [&] { one->allReduce(send, recv, count, dtype, op); });
  }
  const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt);
  Steps steps(levels_, "allReduce", check);
  const std::size_t es = dtypeSize(static_cast<DataType>(dtype));
  if (count <= smallBytes_ / std::max<std::size_t>(es, 1)) {
    named("two-level redundant");
    allReduceRedundant(levels_, steps, scratch_, send, recv, count, dtype, op);
  } else {
    named("two-level shares");
    allReduceShares(levels_, steps, scratch_, send, recv, count, dtype, op);
  }
}

void TwoLevelBackend::allGather(const void* send, void* recv, size_t sendCount, int dtype) {
  if (oneLevel() || !levels_.allOnRails()) {
    return checkedFlat("allGather", [&] { activeFlat()->allGather(send, recv, sendCount, dtype); });
  }
  const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt);
  Steps steps(levels_, "allGather", check);
  named("two-level rails");
  allGatherRails(levels_, steps, scratch_, send, recv, sendCount, dtype);
}

void TwoLevelBackend::allGatherV(const void* send, size_t sendCount, void* recv,
                                 const size_t* recvCounts, const size_t* recvDispls, int dtype) {
  // Counts differ per rank: the network backend's own algorithm over every rank.
  checkedFlat("allGatherV", [&] {
    activeFlat()->allGatherV(send, sendCount, recv, recvCounts, recvDispls, dtype);
  });
}

void TwoLevelBackend::reduceScatter(const void* send, void* recv, size_t recvCount, int dtype,
                                    int op) {
  if (oneLevel() || !levels_.allOnRails()) {
    return checkedFlat("reduceScatter",
                       [&] { activeFlat()->reduceScatter(send, recv, recvCount, dtype, op); });
  }
  const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt);
  Steps steps(levels_, "reduceScatter", check);
  named("two-level rails");
  reduceScatterRails(levels_, steps, scratch_, send, recv, recvCount, dtype, op);
}

void TwoLevelBackend::broadcast(const void* send, void* recv, size_t count, int dtype, int root) {
  if (BackendHandle* one = oneLevel()) {
    named("flat");
    return onLevel(levelOf(one), one, [&] { one->broadcast(send, recv, count, dtype, root); });
  }
  const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt);
  Steps steps(levels_, "broadcast", check);
  named("two-level shares");
  broadcastShares(levels_, steps, scratch_, send, recv, count, dtype, root);
}

void TwoLevelBackend::barrier() {
  if (BackendHandle* one = oneLevel()) {
    return onLevel(levelOf(one), one, [&] { one->barrier(); });
  }
  const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt);
  Steps steps(levels_, "barrier", check);
  named("two-level");
  barrierLevels(levels_, steps);
}

void TwoLevelBackend::allToAll(const void* send, void* recv, size_t countPerRank, int dtype) {
  if (oneLevel()) {
    return checkedFlat("allToAll",
                       [&] { activeFlat()->allToAll(send, recv, countPerRank, dtype); });
  }
  const auto n = static_cast<std::size_t>(size());
  std::vector<std::size_t> counts(n, countPerRank), displs(n);
  for (std::size_t r = 0; r < n; ++r) displs[r] = r * countPerRank;
  splitAllToAll("allToAll", send, counts.data(), displs.data(), recv, counts.data(), displs.data(),
                dtype);
}

void TwoLevelBackend::allToAllV(const void* send, const size_t* sendCounts,
                                const size_t* sendDispls, void* recv, const size_t* recvCounts,
                                const size_t* recvDispls, int dtype) {
  if (oneLevel()) {
    return checkedFlat("allToAllV", [&] {
      activeFlat()->allToAllV(send, sendCounts, sendDispls, recv, recvCounts, recvDispls, dtype);
    });
  }
  splitAllToAll("allToAllV", send, sendCounts, sendDispls, recv, recvCounts, recvDispls, dtype);
}

void TwoLevelBackend::splitAllToAll(const char* op, const void* send, const size_t* sendCounts,
                                    const size_t* sendDispls, void* recv, const size_t* recvCounts,
                                    const size_t* recvDispls, int dtype) {
  named("two-level split");
  const std::optional<epcommCallCheck> check = std::exchange(check_, std::nullopt);
  if (check) {
    Steps settle(levels_, op, check);
    barrierLevels(levels_, settle);
  }
  const std::optional<epcommCallCheck> none;
  Steps steps(levels_, op, none);
  allToAllVSplit(levels_, steps, send, sendCounts, sendDispls, recv, recvCounts, recvDispls, dtype);
}

void TwoLevelBackend::send(const void* buf, size_t count, int dtype, int peer, int tag) {
  if (levels_.layout.hostOf(peer) == levels_.host) {
    return onLevel(Level::kInHost, inHost_.get(),
                   [&] { inHost_->send(buf, count, dtype, levels_.layout.localOf(peer), tag); });
  }
  onLevel(Level::kWorld, world_.get(), [&] { world_->send(buf, count, dtype, peer, tag); });
}

void TwoLevelBackend::recv(void* buf, size_t count, int dtype, int peer, int tag) {
  if (levels_.layout.hostOf(peer) == levels_.host) {
    return onLevel(Level::kInHost, inHost_.get(),
                   [&] { inHost_->recv(buf, count, dtype, levels_.layout.localOf(peer), tag); });
  }
  onLevel(Level::kWorld, world_.get(), [&] { world_->recv(buf, count, dtype, peer, tag); });
}

}  // namespace epcomm::two_level
