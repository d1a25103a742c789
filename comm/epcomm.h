/* epcomm C API: NCCL-shaped, C types only, for engines in C, Rust or Python ctypes.
 *
 * Result codes, reduce ops and data types keep NCCL's numbering. Every call returns an
 * epcommResult_t; epcommGetLastError(comm) (or with NULL: this thread's last error) gives
 * the message, which names the rank, the operation and what was wrong. After an error
 * inside a collective the communicator is aborted (epcommCommGetAsyncError reports it);
 * destroy it and make a new one.
 */
#ifndef EPCOMM_COMM_EPCOMM_H_
#define EPCOMM_COMM_EPCOMM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EPCOMM_MAJOR 0
#define EPCOMM_MINOR 1
#define EPCOMM_PATCH 0
/* As NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch. */
#define EPCOMM_VERSION_CODE (EPCOMM_MAJOR * 10000 + EPCOMM_MINOR * 100 + EPCOMM_PATCH)

typedef enum {
  epcommSuccess = 0,
  epcommUnhandledDeviceError = 1, /* reserved (NCCL's unhandledCudaError) */
  epcommSystemError = 2,
  epcommInternalError = 3,
  epcommInvalidArgument = 4,
  epcommInvalidUsage = 5,
  epcommRemoteError = 6, /* a peer was lost */
  epcommInProgress = 7,
  epcommTimeout = 8,
  epcommNumResults = 9
} epcommResult_t;

typedef enum {
  epcommInt8 = 0,
  epcommUint8 = 1,
  epcommInt32 = 2,
  epcommInt64 = 4,
  epcommFloat16 = 6,
  epcommFloat32 = 7,
  epcommBfloat16 = 9
} epcommDataType_t;

typedef enum {
  epcommSum = 0,
  epcommProd = 1,
  epcommMax = 2,
  epcommMin = 3,
  epcommAvg = 4
} epcommRedOp_t;

#define EPCOMM_UNIQUE_ID_BYTES 128
typedef struct {
  char internal[EPCOMM_UNIQUE_ID_BYTES];
} epcommUniqueId;

typedef struct epcommComm* epcommComm_t;

/* Communicator options; starts with size | magic | version (as ncclConfig_t) so it can grow
 * without breaking binaries. Initialise with EPCOMM_CONFIG_INITIALIZER; a field left at
 * its initializer value keeps the environment's setting. */
#define EPCOMM_CONFIG_MAGIC 0x65706363u /* "epcc" */
#define EPCOMM_CONFIG_VERSION 1u
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  const char* backend; /* EPCOMM_BACKEND; NULL: environment */
  long long timeoutMs; /* EPCOMM_TIMEOUT_MS; 0: no deadline; < 0: environment */
  long long bufferMiB; /* EPCOMM_BUFFSIZE; <= 0: environment */
  int checkArgs;       /* EPCOMM_CHECK_ARGS 0/1; < 0: environment */
} epcommConfig_t;
#define EPCOMM_CONFIG_INITIALIZER \
  { sizeof(epcommConfig_t), EPCOMM_CONFIG_MAGIC, EPCOMM_CONFIG_VERSION, NULL, -1, -1, -1 }

/* Out-of-band all-gather (UCC style): each rank contributes `bytes`; recv gets
 * nranks * bytes in rank order. Return 0 on success. */
typedef int (*epcommOobAllGather_t)(void* ctx, const void* send, void* recv, size_t bytes);

epcommResult_t epcommGetVersion(int* version);
/* This process's worker threads (EPCOMM_THREADS; comm/workers.h), shared by its
 * communicators: an engine hands its own count (torch.get_num_threads()); 0 returns to
 * EPCOMM_THREADS / the default. Between calls, not during one. */
epcommResult_t epcommSetThreads(int threads);
epcommResult_t epcommGetThreads(int* threads);
const char* epcommGetErrorString(epcommResult_t result);
/* The last error message of comm, or of this thread when comm is NULL ("" if none). */
const char* epcommGetLastError(epcommComm_t comm);

/* Made on one rank, passed to the others out of band (starts a rendezvous server). */
epcommResult_t epcommGetUniqueId(epcommUniqueId* uniqueId);
epcommResult_t epcommCommInitRank(epcommComm_t* comm, int nranks, epcommUniqueId commId, int rank);
epcommResult_t epcommCommInitRankConfig(epcommComm_t* comm, int nranks, epcommUniqueId commId,
                                        int rank, const epcommConfig_t* config);
/* Bootstrap through the caller's all-gather instead of a UniqueId. */
epcommResult_t epcommCommInitRankOob(epcommComm_t* comm, int nranks, int rank,
                                     epcommOobAllGather_t allGather, void* ctx,
                                     const epcommConfig_t* config);
/* From the environment: EPCOMM_INIT_ADDR + EPCOMM_RANK + EPCOMM_SIZE, mpirun, or one rank. */
epcommResult_t epcommCommInitFromEnv(epcommComm_t* comm, const epcommConfig_t* config);
/* newcomm is NULL for a negative color (as NCCL_SPLIT_NOCOLOR). The child shares the
 * parent's backend and settings; config (may be NULL) is only validated. */
epcommResult_t epcommCommSplit(epcommComm_t comm, int color, int key, epcommComm_t* newcomm,
                               const epcommConfig_t* config);
/* After a rank died (a call returned epcommRemoteError), the ranks still alive form newcomm
 * without the dead ones, in their old order (ULFM's MPI_Comm_shrink, NCCL's ncclCommShrink).
 * Collective among the survivors: every rank still alive calls it; comm is aborted first (a
 * survivor still inside one of its calls then fails and can join), so it works on an aborted
 * comm, which the caller still destroys. A rank that is alive but has not called it within
 * EPCOMM_TIMEOUT_MS fails it with epcommTimeout, named; a member dying during it fails it
 * with epcommRemoteError (call it again). keptRanks (may be NULL, else room for comm's size)
 * receives, for each rank of newcomm, its rank in comm. The shm, ucx and two-level backends
 * can shrink; mpi returns epcommInvalidUsage (under mpirun the launcher ends the job). */
epcommResult_t epcommCommShrink(epcommComm_t comm, epcommComm_t* newcomm, int* keptRanks);
/* Destroy waits for calls on comm in other threads to return. Abort first makes every call
 * on comm fail (one blocked inside the backend returns when it completes or times out
 * after EPCOMM_TIMEOUT_MS), then destroys it; safe from a watchdog thread. */
epcommResult_t epcommCommDestroy(epcommComm_t comm);
epcommResult_t epcommCommAbort(epcommComm_t comm);
/* epcommSuccess, or the error that aborted the communicator. */
epcommResult_t epcommCommGetAsyncError(epcommComm_t comm, epcommResult_t* asyncError);
/* What comm's call in progress waits for, from any thread (a watchdog polling while a call
 * runs, long before EPCOMM_TIMEOUT_MS): waiting 1 once a call has waited past its first
 * moments, the call ("ep::dispatch (in its allReduce)"), the rank it waits for (-1: any
 * rank, or not known: mpi) and how long. waiting 0: no call waits. */
typedef struct {
  int waiting;
  int peer;
  double seconds;
  char call[128]; /* NUL-terminated, cut to fit */
} epcommWaitState_t;
epcommResult_t epcommCommGetWaitState(epcommComm_t comm, epcommWaitState_t* state);
epcommResult_t epcommCommCount(const epcommComm_t comm, int* count);
epcommResult_t epcommCommUserRank(const epcommComm_t comm, int* rank);
/* Where this rank runs: its rank among the ranks on its host and their number, and its
 * host among the communicator's hosts (numbered in the order of each host's lowest rank)
 * and their number. */
typedef struct {
  int localRank;
  int localSize;
  int host;
  int numHosts;
} epcommCommPlacement_t;
epcommResult_t epcommCommPlacement(const epcommComm_t comm, epcommCommPlacement_t* placement);

epcommResult_t epcommAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                               epcommDataType_t datatype, epcommRedOp_t op, epcommComm_t comm);
epcommResult_t epcommBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                               epcommDataType_t datatype, int root, epcommComm_t comm);
epcommResult_t epcommReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                   epcommDataType_t datatype, epcommRedOp_t op, epcommComm_t comm);
epcommResult_t epcommAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                               epcommDataType_t datatype, epcommComm_t comm);
epcommResult_t epcommAllGatherV(const void* sendbuff, size_t sendcount, void* recvbuff,
                                const size_t* recvcounts, const size_t* rdispls,
                                epcommDataType_t datatype, epcommComm_t comm);
epcommResult_t epcommAllToAll(const void* sendbuff, void* recvbuff, size_t count,
                              epcommDataType_t datatype, epcommComm_t comm);
epcommResult_t epcommAllToAllV(const void* sendbuff, const size_t* sendcounts,
                               const size_t* sdispls, void* recvbuff, const size_t* recvcounts,
                               const size_t* rdispls, epcommDataType_t datatype, epcommComm_t comm);
epcommResult_t epcommSend(const void* sendbuff, size_t count, epcommDataType_t datatype, int peer,
                          epcommComm_t comm);
epcommResult_t epcommRecv(void* recvbuff, size_t count, epcommDataType_t datatype, int peer,
                          epcommComm_t comm);
epcommResult_t epcommBarrier(epcommComm_t comm);

/* ---- Symmetric windows and registered buffers (C++: comm/window.h) ----
 *
 * A window is `bytes` bytes on every rank plus numSignals unsigned 64-bit signal slots, all
 * zero at creation. A rank reads and writes its own memory (*localBase, 64-byte aligned)
 * directly; peers write it only through epcommWindowPut. Needs a backend with windows
 * (mpi, shm); others fail with epcommInvalidUsage naming the backend.
 *  - Create / destroy are collective: every rank of comm, same order, same bytes and
 *    numSignals (a mismatch is epcommInvalidArgument on every rank; comm stays usable).
 *    Destroy every window before its communicator; epcommCommDestroy destroys any left
 *    (collectively, in creation order), epcommCommAbort releases them locally.
 *  - Put is complete on return (src reusable) and visible at the peer no later than any
 *    later signal from this rank to that peer: a rank whose wait returned sees every put
 *    the signaller made to it before signalling.
 *  - WaitSignal waits until this rank's slot >= value (unsigned), failing with
 *    epcommTimeout past EPCOMM_TIMEOUT_MS (which aborts comm).
 *  - Put / signal / wait / read are not collective; one thread per communicator at a time,
 *    between collectives. */
typedef struct epcommWindow* epcommWindow_t;
typedef enum {
  epcommSignalSet = 0,
  epcommSignalAdd = 1,
  epcommNumSignalOps = 2,
  epcommMaxSignalOp = 0x7fffffff /* int-sized, so any int is a value (as ncclMaxRedOp) */
} epcommSignalOp_t;

/* localBase may be NULL (the address is then not returned). */
epcommResult_t epcommWindowCreate(epcommComm_t comm, size_t bytes, int numSignals,
                                  epcommWindow_t* win, void** localBase);
/* Collective; NULL is a no-op. */
epcommResult_t epcommWindowDestroy(epcommWindow_t win);
/* Copies bytes of src into peer's window at offset (peer may be this rank). */
epcommResult_t epcommWindowPut(epcommWindow_t win, int peer, size_t offset, const void* src,
                               size_t bytes);
/* Sets (epcommSignalSet) or atomically adds to (epcommSignalAdd) peer's slot. */
epcommResult_t epcommWindowSignal(epcommWindow_t win, int peer, int slot, uint64_t value,
                                  epcommSignalOp_t op);
epcommResult_t epcommWindowWaitSignal(epcommWindow_t win, int slot, uint64_t value);
/* This rank's slot now, without waiting. */
epcommResult_t epcommWindowReadSignal(epcommWindow_t win, int slot, uint64_t* value);
/* *base = peer's window memory as mapped in this process, for direct loads (as
 * nvshmem_ptr), or NULL where the backend cannot map it (another host, mpi's message
 * transport). Loads see what the peer stored before a signal this rank has waited for;
 * write through epcommWindowPut. */
epcommResult_t epcommWindowPeerData(epcommWindow_t win, int peer, void** base);

/* Registered memory, as ncclMemAlloc / ncclMemFree but COLLECTIVE on comm (every rank, same
 * order, same bytes): `bytes` bytes that collectives on comm may use in place when every
 * rank passes buffers inside its registered memory (a window without signals). Free with
 * epcommMemFree on the same comm before destroying it; freeing NULL is a no-op. */
epcommResult_t epcommMemAlloc(epcommComm_t comm, size_t bytes, void** ptr);
epcommResult_t epcommMemFree(epcommComm_t comm, void* ptr);

#ifdef __cplusplus
}
#endif

#endif /* EPCOMM_COMM_EPCOMM_H_ */
