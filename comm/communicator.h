// The communicator: a group of ranks and the collectives between them. Thread-compatible:
// one thread at a time per communicator. Every call throws epcomm::Error on failure; after
// an error that leaves peers inconsistent the communicator is aborted and every later call
// fails with kInvalidUsage.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "agreement.h"
#include "config.h"
#include "error.h"
#include "export.h"
#include "types.h"
#include "unique_id.h"
#include "window.h"

namespace epcomm {

class ArgumentCheck;
class BackendHandle;

// An out-of-band all-gather (UCC style): each rank contributes `bytes` bytes of `send`;
// `recv` receives size * bytes in rank order. Lets an engine that already has a store
// (torch TCPStore, MPI, Gloo) bootstrap without a second rendezvous port.
using OobAllGather = std::function<void(const void* send, void* recv, std::size_t bytes)>;

class EPCOMM_API Communicator {
 public:
  // From a UniqueId made by UniqueId::create() on one rank.
  static std::unique_ptr<Communicator> init(const UniqueId& id, int rank, int size,
                                            const Config& config = Config::fromEnvironment());
  // Through the caller's all-gather.
  static std::unique_ptr<Communicator> init(const OobAllGather& allGather, int rank, int size,
                                            const Config& config = Config::fromEnvironment());
  // From the environment: EPCOMM_INIT_ADDR + EPCOMM_RANK + EPCOMM_SIZE (torch style), else
  // the launcher's ranks under mpirun, else a single rank.
  static std::unique_ptr<Communicator> initFromEnvironment(
      const Config& config = Config::fromEnvironment());

  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int localRank() const { return localRank_; }  // rank among the ranks on this host
  int localSize() const { return localSize_; }  // ranks on this host
  // This rank's host among the communicator's hosts (0 .. numHosts() - 1, numbered in the
  // order of each host's lowest rank), and how many hosts the communicator spans.
  int host() const { return host_; }
  int numHosts() const { return numHosts_; }
  const std::string& backendName() const;
  // The backend's name for the algorithm this rank's last collective ran (shm: "lines",
  // "oneshot", "twoshot", ...; backends/shm/all_reduce_algorithms.h), "" where the backend
  // does not say. For benchmarks and logs.
  std::string lastAlgorithm() const;
  // Whether the backend has symmetric windows (createWindow / allocate work); the same on
  // every rank. Not collective.
  bool hasWindows() const;
  const Config& config() const { return config_; }

  // Ranks with the same color form a new communicator, ordered by (key, old rank). A
  // negative color takes part but gets nullptr. Collective.
  std::unique_ptr<Communicator> split(int color, int key);

  // After a rank died (a call failed with kPeerLost), the ranks still alive form a new
  // communicator without the dead ones, in their old order (ULFM's MPI_Comm_shrink, NCCL's
  // ncclCommShrink). Collective among the survivors: every rank still alive calls it. This
  // communicator is aborted first (a survivor still waiting in one of its calls then fails
  // and can join), so it works after abort. A rank that is alive but has not called it
  // within EPCOMM_TIMEOUT_MS fails it on the others with kTimeout naming that rank; a member
  // that dies during it fails it with kPeerLost (call it again). keptRanks, if given,
  // receives each new rank's rank here. kInvalidUsage on a backend that cannot shrink (shm,
  // ucx and two levels can; under mpirun the launcher ends the job when a rank dies).
  std::unique_ptr<Communicator> shrink(std::vector<int>* keptRanks = nullptr);

  // In place when send == recv (allGather: when send == recv + rank * sendCount).
  void allReduce(const void* send, void* recv, std::size_t count, DataType dtype, ReduceOp op);
  // recv holds size * sendCount elements, rank r's block at r * sendCount.
  void allGather(const void* send, void* recv, std::size_t sendCount, DataType dtype);
  // Rank r contributes recvCounts[r] elements, placed at recvDispls[r] (elements).
  void allGatherV(const void* send, std::size_t sendCount, void* recv,
                  const std::size_t* recvCounts, const std::size_t* recvDispls, DataType dtype);
  // send holds size * recvCount elements; rank r receives the reduction of block r.
  void reduceScatter(const void* send, void* recv, std::size_t recvCount, DataType dtype,
                     ReduceOp op);
  // NCCL style: root's send is copied into every rank's recv (send ignored off the root).
  void broadcast(const void* send, void* recv, std::size_t count, DataType dtype, int root);
  void barrier();
  // Block r of send (countPerRank elements) goes to rank r; block r of recv comes from r.
  void allToAll(const void* send, void* recv, std::size_t countPerRank, DataType dtype);
  // Counts and displacements in elements, one per rank.
  void allToAllV(const void* send, const std::size_t* sendCounts, const std::size_t* sendDispls,
                 void* recv, const std::size_t* recvCounts, const std::size_t* recvDispls,
                 DataType dtype);
  // Point to point; a recv must match the peer's send in count, dtype and tag.
  void send(const void* buf, std::size_t count, DataType dtype, int peer, int tag = 0);
  void recv(void* buf, std::size_t count, DataType dtype, int peer, int tag = 0);

  // Collective: settles `agreement` (comm/agreement.h) across the ranks with one small
  // all-reduce made straight on the backend. Throws kInvalidArgument on every rank when any
  // rank recorded a problem (each rank's message names every failing rank's problem) or a
  // `same` value differs; afterwards agreement.maxOf() holds the maxima. Throws
  // kInvalidUsage after abort; a failure of the all-reduce itself aborts.
  void agree(CallAgreement& agreement);

  // Symmetric memory (comm/window.h). Collective: every rank, same arguments. Throws
  // kInvalidUsage when the backend has no windows.
  std::unique_ptr<Window> createWindow(std::size_t bytes, int numSignals = 0);
  std::unique_ptr<RegisteredBuffer> allocate(std::size_t bytes);

  // What this communicator's call in progress waits for, asked from any thread (an engine's
  // watchdog, polling as with NCCL's ncclCommGetAsyncError): a call that has waited past its
  // first moments (shm, ucx: past the spin; mpi: from its start) names itself, the rank it
  // waits for and how long, long before EPCOMM_TIMEOUT_MS ends it. Reads only.
  struct WaitState {
    bool waiting = false;
    std::string call;    // "ep::dispatch (in its allReduce)", or the backend's step alone
    int peer = -1;       // the rank waited for; -1: any rank, or not known (mpi)
    double seconds = 0;  // waited so far
  };
  WaitState waitState() const;

  // Fails every later call (and peers' calls where the backend can reach them). Idempotent;
  // safe from another thread (a call already inside the backend finishes or times out).
  void abort();
  bool aborted() const { return aborted_.load(); }

  // While alive, a failure of one of this communicator's steps (a peer lost in an all-reduce)
  // names the caller's own call it happened in: "epcomm rank 0: ep::dispatch (in its
  // allReduce): rank 2 (pid 123) died", for this rank and, through the abort reason, its
  // peers. Layers above the communicator (ep::Buffer) open one per call. Nests.
  class CallScope {
   public:
    CallScope(Communicator& comm, const char* call)
        : comm_(comm), previous_(comm.userCall_.exchange(call)) {}
    ~CallScope() { comm_.userCall_.store(previous_); }
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

   private:
    Communicator& comm_;
    const char* previous_;
  };

 private:
  Communicator(std::unique_ptr<BackendHandle> backend, Config config);
  // The end of every init path: the communicator over `backend`, bound if asked.
  static std::unique_ptr<Communicator> assemble(std::unique_ptr<BackendHandle> backend,
                                                const Config& config);
  void finishInit();
  // Every rank's agreed knobs (KnobInfo::agreed) of comm, topology and this backend equal,
  // else kInvalidArgument on every rank naming the knob. Once per init (splits inherit).
  void agreeOnSettings();
  // Throws kInvalidUsage after abort; `op` names the call.
  void checkUsable(const char* op) const;
  // send / recv arguments, checked on this rank; throws kInvalidArgument.
  void checkPointToPoint(const char* op, const void* buf, std::size_t count, DataType dtype,
                         int peer, int tag) const;
  // One value every rank must pass identically, named for the error message.
  struct Shape {
    const char* name;
    std::int64_t value;
  };
  // How agree() settled the check.
  enum class Agreement {
    kLocal,   // checked on this rank only (EPCOMM_CHECK_ARGS=0 or one rank); it is valid
    kAgreed,  // the ranks synchronised through an extra all-reduce and agree
    kArmed,   // the backend checks inside the next backend call (CAP_CHECKS_CONSISTENCY);
              // that call must be made even when `check` failed (it then touches no data)
  };
  // Cross-rank agreement (EPCOMM_CHECK_ARGS): every rank learns whether any rank's
  // arguments were bad, whether all called the same collective, and whether the shapes
  // match, so none is left waiting in a collective. At most three shapes. Throws
  // kInvalidArgument when the check failed, except for kArmed, where the next run() throws.
  Agreement agree(const char* op, const ArgumentCheck& check, std::initializer_list<Shape> shapes);
  // The all-reduce form of agree(), whatever EPCOMM_CHECK_ARGS says (rare calls: windows).
  void agreeByAllReduce(const char* op, const ArgumentCheck& check,
                        std::initializer_list<Shape> shapes);
  // Runs a backend call; an error from it aborts the communicator and is rethrown. The
  // callable is passed by reference (no allocation on the hot path).
  template <typename Fn>
  void run(const char* op, Fn&& fn) {
    runErased(op, &fn, [](void* f) { (*static_cast<std::remove_reference_t<Fn>*>(f))(); });
  }
  void runErased(const char* op, void* fn, void (*call)(void*));
  // abort(), telling the peers why where the backend can (the error that caused it).
  void abortBecause(const char* reason);

  friend class Window;

  std::unique_ptr<BackendHandle> backend_;
  Config config_;
  int rank_ = 0;
  int size_ = 1;
  int localRank_ = 0;
  int localSize_ = 1;
  int host_ = 0;
  int numHosts_ = 1;
  std::atomic<bool> aborted_{false};
  // The check armed in the backend by agree() (kArmed), taken by the next run().
  const ArgumentCheck* armed_ = nullptr;
  // CallScope's call, or null (atomic: waitState reads it from other threads).
  std::atomic<const char*> userCall_{nullptr};
  // Windows alive on this communicator; the destructor detaches those still alive.
  std::vector<Window*> windows_;
};

}  // namespace epcomm
