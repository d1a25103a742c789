#include "comm/communicator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comm/agreement.h"
#include "comm/error.h"
#include "comm/log.h"
#include "comm/src/argument_check.h"
#include "comm/src/backend_handle.h"
#include "comm/src/host_identity.h"

namespace epcomm {
namespace {

// "epcomm rank R: <step>: <what>" as a failure of the caller's `call`: "epcomm rank R: <call>
// (in its <step>): <what>"; nullopt for a message of another shape.
std::optional<Error> inCall(const Error& e, int rank, const char* call) {
  const std::string prefix = "epcomm rank " + std::to_string(rank) + ": ";
  const std::string what = e.what();
  const std::size_t stepEnd = what.find(": ", prefix.size());
  if (what.rfind(prefix, 0) != 0 || stepEnd == std::string::npos) return std::nullopt;
  return Error(e.code(), fmt::format("{}{} (in its {}): {}", prefix, call,
                                     what.substr(prefix.size(), stepEnd - prefix.size()),
                                     what.substr(stepEnd + 2)));
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

void Communicator::agreeOnSettings() {
  if (size_ == 1) return;
  std::vector<KnobInfo> agreed;
  for (const KnobInfo& knob : knobRegistry()) {
    // A two-level backend ("shm+ucx") agrees on both levels' knobs.
    bool ours = knob.layer == "comm" || knob.layer == "topology";
    std::string_view names = backend_->name();
    while (!ours && !names.empty()) {
      const std::size_t plus = std::min(names.find('+'), names.size());
      ours = knob.layer == names.substr(0, plus);
      names.remove_prefix(std::min(plus + 1, names.size()));
    }
    if (knob.agreed && ours) agreed.push_back(knob);
  }
  // An all-gather of each rank's value digests, not an all-reduce: the backend's all-reduce
  // may itself depend on these knobs (shm's algorithm choice), its all-gather does not.
  const std::size_t n = agreed.size();
  std::vector<std::int64_t> mine(n + 1), all((n + 1) * static_cast<std::size_t>(size_));
  mine[0] = static_cast<std::int64_t>(n);  // ranks with other plugins register other rows
  for (std::size_t i = 0; i < n; ++i) {
    mine[i + 1] = CallAgreement::callIdOf(config_.text(agreed[i].name));
  }
  run("init", [&] {
    backend_->allGather(mine.data(), all.data(), mine.size(), static_cast<int>(DataType::kI64));
  });
  for (int r = 0; r < size_; ++r) {
    const std::int64_t* theirs = all.data() + static_cast<std::size_t>(r) * (n + 1);
    for (std::size_t i = 0; i <= n; ++i) {
      if (theirs[i] == mine[i]) continue;
      const std::string what =
          i == 0 ? std::string(
                       "the set of knobs every rank must share (the ranks loaded "
                       "different backend plugins)")
                 : fmt::format("{} (this rank has \"{}\", rank {} another value)",
                               agreed[i - 1].name, config_.text(agreed[i - 1].name), r);
      throwError(ErrorCode::kInvalidArgument, rank_, "init",
                 fmt::format("ranks disagree on {}; every rank must set the same", what));
    }
  }
}

void Communicator::finishInit() {
  const HostIdentity mine = thisHost();
  std::vector<HostIdentity> all(static_cast<std::size_t>(size_));
  backend_->allGather(&mine, all.data(), sizeof mine, static_cast<int>(DataType::kU8));
  const std::vector<int> hostOf = numberHosts(all);
  host_ = hostOf[static_cast<std::size_t>(rank_)];
  localRank_ = 0;
  localSize_ = 0;
  numHosts_ = 0;
  for (int r = 0; r < size_; ++r) {
    const int h = hostOf[static_cast<std::size_t>(r)];
    numHosts_ = std::max(numHosts_, h + 1);
    if (h != host_) continue;
    if (r < rank_) ++localRank_;
    ++localSize_;
  }
  log().info("communicator up: rank {} of {} (local {} of {}, host {} of {}), backend {}", rank_,
             size_, localRank_, localSize_, host_, numHosts_, backend_->name());
}

const std::string& Communicator::backendName() const {
  return backend_->name();
}

std::string Communicator::lastAlgorithm() const {
  return backend_->lastAlgorithm();
}

void Communicator::checkUsable(const char* op) const {
  if (aborted_) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               "the communicator was aborted (after an error or abort()); create a new one (after "
               "a lost rank the survivors can shrink() it)");
  }
}

void Communicator::runErased(const char* op, void* fn, void (*call)(void*)) {
  const ArgumentCheck* armed = std::exchange(armed_, nullptr);
  try {
    call(fn);
  } catch (const Error& e) {
    // A failure inside the backend leaves the ranks at different points: abort. A bad
    // argument the backend found (comm/backend.h) left no peer waiting: stay usable.
    const bool fatal = e.code() != ErrorCode::kInvalidArgument;
    // Inside a caller's call (CallScope) the step's failure is that call's, for the peers too.
    const std::optional<Error> named =
        fatal && userCall_.load() ? inCall(e, rank_, userCall_.load()) : std::nullopt;
    if (fatal) abortBecause(named ? named->what() : e.what());
    // This rank's own problem names the bad argument; the backend's names only the rank.
    if (armed && !armed->ok()) throwError(ErrorCode::kInvalidArgument, rank_, op, armed->problem());
    if (named) throw *named;
    throw;
  }
  if (armed && !armed->ok()) {
    // The backend broke its contract (it ran a call this rank declared invalid).
    abort();
    throwError(ErrorCode::kInvalidArgument, rank_, op, armed->problem());
  }
}

Communicator::Agreement Communicator::agree(const char* op, const ArgumentCheck& check,
                                            std::initializer_list<Shape> shapes) {
  if (config_.checkArgs && size_ > 1 &&
      backend_->hasCapability(EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY)) {
    // The backend compares every rank's record in the collective's first step.
    epcommCallCheck c{};
    c.structSize = sizeof(c);
    c.valid = check.ok() ? 1 : 0;
    c.opId = CallAgreement::callIdOf(op);
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
  CallAgreement agreement(op);
  if (!check.ok()) agreement.fail(check.problem());
  for (const Shape& shape : shapes) agreement.same(shape.name, shape.value);
  agree(agreement);
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  constexpr const char* kOp = "split";
  checkUsable(kOp);
  std::unique_ptr<BackendHandle> child;
  run(kOp, [&] { child = backend_->split(color, key); });
  if (!child) return nullptr;
  return std::unique_ptr<Communicator>(new Communicator(std::move(child), config_));
}

Communicator::WaitState Communicator::waitState() const {
  const BackendHandle::WaitState w = backend_->waitState();
  WaitState state;
  if (!w.waiting) return state;
  state.waiting = true;
  state.peer = w.peer;
  state.seconds = w.seconds;
  const char* call = userCall_.load();
  state.call = call ? fmt::format("{} (in its {})", call, w.op) : w.op;
  return state;
}

std::unique_ptr<Communicator> Communicator::shrink(std::vector<int>* keptRanks) {
  constexpr const char* kOp = "shrink";
  if (!backend_->canShrink()) {
    throwError(ErrorCode::kInvalidUsage, rank_, kOp,
               fmt::format("backend {} cannot shrink a communicator (shm, ucx and two levels "
                           "can: EPCOMM_BACKEND=shm, ucx or auto without mpirun); under mpirun "
                           "the launcher ends the job when a rank dies",
                           backend_->name()));
  }
  abortBecause("shrinking: the survivors form a new communicator (Communicator::shrink)");
  std::vector<int> kept;
  std::unique_ptr<BackendHandle> child = backend_->shrink(kept);
  if (keptRanks) *keptRanks = std::move(kept);
  return std::unique_ptr<Communicator>(new Communicator(std::move(child), config_));
}

void Communicator::abort() {
  abortBecause(nullptr);
}

void Communicator::abortBecause(const char* reason) {
  if (aborted_.exchange(true)) return;
  try {
    backend_->abort(reason);
  } catch (const Error& e) {
    log().warn("abort: {}", e.what());
  }
}

}  // namespace epcomm
