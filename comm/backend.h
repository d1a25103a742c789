/* Backend plugin ABI, version 1.
 *
 * A backend is a shared library libepcomm-backend-<name>.so that exports one symbol,
 * `epcommBackend_v1`, of type epcommBackendV1. It starts with its ABI version and struct
 * size so the loader can refuse a mismatched plugin with a clear message, and so later
 * versions can append members. Only C types cross the boundary; C++ backends implement
 * epcomm::Backend (comm/backend_plugin.h) and export it with EPCOMM_EXPORT_BACKEND.
 *
 * Contracts every entry point keeps:
 *  - Arguments have been validated by the communicator (non-null buffers when count > 0,
 *    valid dtype/op, root/peer in range, consistent across ranks where checked).
 *  - A call returns epcommBackendSuccess or an error code; on error, lastError(state) holds
 *    a message naming what failed. A backend never aborts the process for an error of its own.
 *  - epcommBackendInvalidArgument means no peer is left waiting (the call moved nothing on
 *    any rank, or completed on the peers, as a recv whose count differs from the send's);
 *    the communicator stays usable. Any other error aborts the communicator.
 *  - In-place: allReduce/allGather/reduceScatter/broadcast/allToAll/allToAllV accept
 *    send == recv where MPI accepts MPI_IN_PLACE (allGather: send == recv + rank * count;
 *    reduceScatter: send == recv is not in place, the recv block is separate).
 */
#ifndef EPCOMM_COMM_BACKEND_H_
#define EPCOMM_COMM_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EPCOMM_BACKEND_ABI_VERSION 1u
#define EPCOMM_BACKEND_SYMBOL "epcommBackend_v1"

/* Result codes of backend entry points; values equal epcommResult_t's (comm/epcomm.h). */
enum {
  epcommBackendSuccess = 0,
  epcommBackendSystemError = 2,
  epcommBackendInternalError = 3,
  epcommBackendInvalidArgument = 4,
  epcommBackendInvalidUsage = 5,
  epcommBackendRemoteError = 6, /* a peer was lost */
  epcommBackendTimeout = 8,
};

/* Capability bits of epcommBackendV1::capabilities. */
/* The backend checks cross-rank agreement itself, inside each collective: before every
 * collective (not send/recv) the communicator calls setCallCheck; the backend publishes the
 * record in the collective's first synchronisation step, and every rank compares every
 * rank's record before touching any data. On an invalid record or a mismatch every rank
 * fails with epcommBackendInvalidArgument naming the culprit, having moved no data. When
 * this rank's record is invalid the communicator still calls the collective (so no peer is
 * left waiting) and the backend must not touch its buffers or counts. Without this bit the
 * communicator agrees through one extra all-reduce per call (EPCOMM_CHECK_ARGS). */
#define EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY (1ull << 0)
#define EPCOMM_BACKEND_CAP_MULTI_HOST (1ull << 1) /* ranks may span hosts */
/* The window entry points (windowCreate ... windowReadSignal) are implemented. */
#define EPCOMM_BACKEND_CAP_WINDOWS (1ull << 2)
/* The table's shrink works (the survivors of a lost rank form a new communicator). */
#define EPCOMM_BACKEND_CAP_SHRINK (1ull << 3)

/* What one rank passes to one collective, for the cross-rank check (see
 * EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY). opId, valid and shape are compared across ranks;
 * the names only build messages and are valid until the collective returns. */
typedef struct epcommCallCheck {
  uint32_t structSize; /* sizeof(epcommCallCheck) of the caller */
  int valid;           /* 0: this rank's arguments are invalid (its buffers are untouchable) */
  int64_t opId;        /* identifies the collective (equal on every rank for the same call) */
  int numShapes;       /* 0..3 values every rank must pass identically */
  int64_t shape[3];
  const char* op;           /* the collective's name, e.g. "allReduce" */
  const char* shapeName[3]; /* e.g. "count" */
} epcommCallCheck;

/* Out-of-band all-gather the communicator lends a backend during create/split: every rank
 * contributes `bytes` bytes and receives size * bytes, in rank order. Returns 0 on success. */
typedef struct epcommBackendBootstrap {
  void* ctx;
  int (*allGather)(void* ctx, const void* send, void* recv, size_t bytes);
} epcommBackendBootstrap;

/* A backend's knob: its row in the configuration registry (comm/config.h). The loader
 * registers a plugin's rows (copied) when it loads it; the communicator resolves each from
 * the environment (own name, then aliases in order), validates it by type, and hands the
 * values to create through args->knob. A backend never reads the environment itself. */
#define EPCOMM_KNOB_STRING 0
#define EPCOMM_KNOB_INTEGER 1 /* whole number in [min, max] */
#define EPCOMM_KNOB_BOOLEAN 2 /* 1, 0, true, false in any case */
#define EPCOMM_KNOB_CHOICE 3  /* one of choices */
/* OR'd into type: every rank must set the same value (the communicator agrees every such
 * knob once, when it is created, and fails on every rank naming the knob otherwise). */
#define EPCOMM_KNOB_AGREED 0x100
typedef struct epcommBackendKnob {
  const char* name;
  const char* aliases; /* ','-separated names honoured after name, or NULL */
  int type;            /* EPCOMM_KNOB_* */
  const char* unit;    /* "ms", "MiB", ... or NULL */
  const char* defaultValue;
  int64_t min, max;    /* EPCOMM_KNOB_INTEGER */
  const char* choices; /* EPCOMM_KNOB_CHOICE: '|'-separated */
  const char* meaning;
} epcommBackendKnob;

typedef struct epcommBackendCreateArgs {
  uint32_t structSize; /* sizeof(epcommBackendCreateArgs) of the caller */
  int rank;
  int size;
  const epcommBackendBootstrap* bootstrap; /* valid only during create */
  int64_t timeoutMs;                       /* EPCOMM_TIMEOUT_MS: deadline of any wait; 0: none */
  size_t bufferBytes;                      /* EPCOMM_BUFFSIZE in bytes */
  /* Logging sink: level 0 trace ... 4 error. May be called from any thread. */
  void (*log)(int level, const char* message);
  /* The validated value of one of this backend's knobs (its table's knobs), or NULL for a
   * name it did not declare. Valid during create; copy what is kept. (A caller whose
   * structSize stops before it has none: use the knobs' defaults.) */
  const char* (*knob)(void* ctx, const char* name);
  void* knobCtx;
  /* The network interface the user selected (EPCOMM_SOCKET_IFNAME, EPCOMM_IF_IP or their
   * HCCL / GLOO aliases, resolved by topology/), for a network backend to use; NULL when
   * none was selected or the user configured the transport's own device choice. */
  const char* netDevice;
  /* EPCOMM_WAIT_REPORT_S in ms: a wait (for a peer, a message, a signal) that lasts longer
   * logs a warning through `log` naming the call, the rank it waits for and how long, then
   * again every this often; 0: never. (A caller whose structSize stops before it: 0.) */
  int64_t waitReportMs;
  /* This process's worker threads (EPCOMM_THREADS, comm/workers.h: epcomm::parallelFor):
   * runs body(arg, lo, hi) over disjoint parts [lo, hi) covering [0, n), every boundary but
   * n a multiple of align units, parts of at least 64 KiB (unitBytes per unit), possibly
   * concurrently; returns 0, or nonzero when a part failed. Process-wide: valid as long as
   * the plugin is loaded. NULL (or a caller whose structSize stops before it): run
   * body(arg, 0, n) on the calling thread. */
  int (*parallelFor)(size_t n, size_t unitBytes, size_t align,
                     void (*body)(void* arg, size_t lo, size_t hi), void* arg);
} epcommBackendCreateArgs;

typedef struct epcommBackendV1 {
  uint32_t abiVersion; /* EPCOMM_BACKEND_ABI_VERSION */
  uint32_t structSize; /* sizeof(epcommBackendV1) */
  const char* name;
  uint64_t capabilities;
  /* The most elements, or the largest displacement, one call may pass (per rank for the
   * v-variants); the communicator refuses larger calls on every rank. 0: no limit. */
  uint64_t maxCountPerCall;

  /* Lifecycle. create fills *state; on failure it writes a message into err. */
  int (*create)(const epcommBackendCreateArgs* args, void** state, char* err, size_t errLen);
  void (*destroy)(void* state);
  const char* (*lastError)(void* state);
  /* Makes every pending and later call fail fast; safe from any thread. */
  int (*abort)(void* state);
  /* Sub-communicator: ranks with equal color form one, ordered by (key, rank). A negative
   * color gets *newState = NULL. *newRank and *newSize describe the new communicator. */
  int (*split)(void* state, int color, int key, void** newState, int* newRank, int* newSize);

  /* Collectives. dtype and op carry epcomm::DataType / epcomm::ReduceOp values. */
  int (*allReduce)(void* state, const void* send, void* recv, size_t count, int dtype, int op);
  int (*allGather)(void* state, const void* send, void* recv, size_t sendCount, int dtype);
  int (*allGatherV)(void* state, const void* send, size_t sendCount, void* recv,
                    const size_t* recvCounts, const size_t* recvDispls, int dtype);
  int (*reduceScatter)(void* state, const void* send, void* recv, size_t recvCount, int dtype,
                       int op);
  int (*broadcast)(void* state, const void* send, void* recv, size_t count, int dtype, int root);
  int (*barrier)(void* state);
  int (*allToAll)(void* state, const void* send, void* recv, size_t countPerRank, int dtype);
  int (*allToAllV)(void* state, const void* send, const size_t* sendCounts,
                   const size_t* sendDispls, void* recv, const size_t* recvCounts,
                   const size_t* recvDispls, int dtype);
  int (*send)(void* state, const void* buf, size_t count, int dtype, int peer, int tag);
  int (*recv)(void* state, void* buf, size_t count, int dtype, int peer, int tag);

  /* Arms the check the next collective carries (NULL disarms); consumed by that collective.
   * May be NULL for backends without EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY. */
  int (*setCallCheck)(void* state, const epcommCallCheck* check);

  /* --- Symmetric windows (optional: only a table with EPCOMM_BACKEND_CAP_WINDOWS whose
   * structSize covers windowReadSignal has them; otherwise the communicator refuses windows
   * and registered buffers with kInvalidUsage naming the backend). ---
   *
   * A window is `bytes` bytes on every rank plus numSignals uint64 signal slots per rank,
   * all zero at creation. Rank r reads and writes its own memory (*localBase, 64-byte
   * aligned) directly; peers write it only through windowPut. Registered buffers
   * (Communicator::allocate) are windows with no signals: a backend may recognise a
   * collective's send/recv buffer lying inside one of its windows (on every rank) and skip
   * the copy through its staging buffers.
   *
   * windowCreate / windowDestroy are collective (every rank, same order, same bytes and
   * numSignals; the communicator checks that). windowDestroy returns once no peer can still
   * put into or signal this rank's window. Put, signal and the waits are not collective and
   * may be called by one thread per communicator at a time, between collectives.
   *
   * Ordering: windowPut is complete on return (src may be reused) and is visible at the
   * peer no later than any later windowSignal from this rank to that peer (release /
   * acquire: a rank whose windowWaitSignal returned sees every put the signaller made to it
   * before signalling). Signal op: EPCOMM_SIGNAL_SET stores value, EPCOMM_SIGNAL_ADD adds it
   * atomically. windowWaitSignal waits until the rank's own slot >= value (as an unsigned
   * 64-bit number), failing with epcommBackendTimeout past the communicator's timeout and
   * epcommBackendRemoteError when a peer died or aborted. */
  int (*windowCreate)(void* state, size_t bytes, int numSignals, void** window, void** localBase);
  int (*windowDestroy)(void* state, void* window);
  int (*windowPut)(void* state, void* window, int peer, size_t offset, const void* src,
                   size_t bytes);
  int (*windowSignal)(void* state, void* window, int peer, int slot, uint64_t value, int op);
  int (*windowWaitSignal)(void* state, void* window, int slot, uint64_t value);
  /* Reads this rank's signal slot without waiting (acquire). */
  int (*windowReadSignal)(void* state, void* window, int slot, uint64_t* value);

  /* Optional (a table whose structSize covers it, non-NULL): peer's window data as mapped
   * in this process, for direct loads (NVSHMEM's nvshmem_ptr), or *base = NULL when this
   * backend cannot map it (another host, a message transport). Loads see what the peer
   * stored before a windowSignal this rank's windowWaitSignal has seen; writes go through
   * windowPut. A backend without the entry maps no peer. */
  int (*windowPeerBase)(void* state, void* window, int peer, void** base);

  /* Optional (a table whose structSize covers numKnobs): the backend's knobs. */
  const epcommBackendKnob* knobs;
  size_t numKnobs;

  /* Optional (structSize covers it, non-NULL): the name of the algorithm this rank's last
   * collective ran (e.g. "twoshot"), for benchmarks and logs; "" when unknown. */
  const char* (*lastAlgorithm)(void* state);

  /* Optional (structSize covers it, non-NULL): abort as `abort` does, telling the peers why
   * (`reason`: this rank's error message, NUL-terminated; a backend may truncate it). A
   * peer's wait that then fails because this rank aborted ends its message with
   * EPCOMM_ABORT_REASON_MARK followed by the reason, so every rank can name the first
   * cause (a dead rank, say), not only the rank that gave up after it. */
  int (*abortWithReason)(void* state, const char* reason);

  /* Optional (EPCOMM_BACKEND_CAP_SHRINK, structSize covers it): after ranks died, the ranks
   * still alive form a new communicator without them, in the old order (ULFM's
   * MPI_Comm_shrink). Collective among the survivors, and callable after abort: every rank
   * still alive calls it; a rank that is alive but has not called it within the timeout
   * fails it on the others with epcommBackendTimeout, naming it; a member that dies during
   * it fails it with epcommBackendRemoteError (the survivors may call it again).
   * keptRanks (the old size entries) receives, for each new rank, its rank here. */
  int (*shrink)(void* state, void** newState, int* newRank, int* newSize, int* keptRanks);

  /* Optional (structSize covers it, non-NULL): whether a call of this communicator waits now
   * past its first moments (*waiting = 1), and then its name (op, NUL-terminated, cut to
   * opLen), the rank it waits for (*peer, in this communicator; -1: any rank, or unknown)
   * and for how long (*seconds). Safe from any thread while calls run; reads only. */
  int (*waitState)(void* state, int* waiting, int* peer, double* seconds, char* op, size_t opLen);
} epcommBackendV1;

/* Separates a "rank R aborted" message from the reason R gave (abortWithReason). */
#define EPCOMM_ABORT_REASON_MARK "; it reported: "

/* The members every v1 table has; the window members after them are optional. */
#define EPCOMM_BACKEND_V1_CORE_SIZE offsetof(epcommBackendV1, windowCreate)

/* Signal ops of windowSignal. */
#define EPCOMM_SIGNAL_SET 0
#define EPCOMM_SIGNAL_ADD 1

#ifdef __cplusplus
}
#endif

#endif /* EPCOMM_COMM_BACKEND_H_ */
