/* epcomm EP C API: DeepEP-style MoE dispatch/combine (ep/buffer.h) for engines in C, Rust or
 * Python ctypes. C types only; result codes, bf16 and the error mechanism are comm/epcomm.h's.
 *
 * Calls. Every call on a Buffer is collective (every rank of its communicator, same order,
 * same hidden / numExperts / numTopk), as in C++. A bad argument on any rank (a topk index
 * outside [-1, numExperts), N > T in low-latency mode, a too small buffer, a NULL inputs or
 * outputs struct, ...) is epcommInvalidArgument on EVERY rank, before any data moves, and the
 * Buffer stays usable; epcommGetLastError(comm) (or NULL: this thread's) names the rank at
 * fault and the problem. Errors inside the communicator (a lost peer, a timeout) abort it,
 * as any collective does. One thread per Buffer at a time. Exceptions: a NULL Buffer, and
 * the calls that are not collective (HandleDestroy, LowLatencyCombineBuffer, ResolveMode,
 * BufferGetConfig), fail on the calling rank only; a hook must be run on every rank.
 *
 * Output memory (one rule): every output array is owned by the library, the caller never
 * frees it, and it stays valid until the object that holds it is reused or destroyed:
 *  - getDispatchLayout: held by the Buffer, until the next epcommEpGetDispatchLayout on it.
 *  - normal dispatch: held by the NEW handle the call returns (out->handle), until
 *    epcommEpHandleDestroy(handle). A cached dispatch returns a new handle as well.
 *  - normal combine: held by the handle it reverses, until the next epcommEpCombine with that
 *    handle or its destruction.
 *  - low-latency dispatch / combine: held by the Buffer's two alternating slots, as in C++
 *    (ep/low_latency.h): the outputs of the last two low-latency dispatches (and of their
 *    combines) stay valid; the third dispatch reuses the first's slot. A combine may instead
 *    write into the caller's memory (inputs `out`).
 * Inputs are read during the call only, except a low-latency combine's topkWeights with
 * returnRecvHook, read when its hook runs.
 * epcommEpBufferDestroy releases the handles and hooks left; destroy every Buffer before its
 * communicator. A Buffer, handle or hook that was destroyed (or run, for a hook) and passed
 * again is epcommInvalidArgument, not a crash.
 *
 * Shapes and counts are int64_t (torch-sized) but must fit in an int; flags are int (0/1).
 * A zero-initialised inputs struct ({0}) means "defaults" for every optional field.
 * Tokens are bf16 (epcommBf16_t: the upper 16 bits of an IEEE f32), row-major.
 */
#ifndef EPCOMM_EP_EPCOMM_EP_H_
#define EPCOMM_EP_EPCOMM_EP_H_

#include <stddef.h>
#include <stdint.h>

#include "../comm/epcomm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t epcommBf16_t; /* bf16 bits */

typedef struct epcommEpBuffer* epcommEpBuffer_t;
typedef struct epcommEpHandle* epcommEpHandle_t; /* a normal dispatch: layout + outputs */
typedef struct epcommEpHook* epcommEpHook_t;     /* a deferred low-latency receive */

/* SGLang's --deepep-mode and batch kinds (values as the C++ ep::Mode / ep::BatchKind). */
typedef enum {
  epcommEpModeNormal = 0,
  epcommEpModeLowLatency = 1,
  epcommEpModeAuto = 2
} epcommEpMode_t;
typedef enum { epcommEpBatchPrefill = 0, epcommEpBatchDecode = 1 } epcommEpBatchKind_t;

/* Wire format. Default: the Buffer's setting in normal mode (EPCOMM_EP_INT8,
 * EPCOMM_EP_QUANT_GROUP), bf16 in low-latency mode. Int8: symmetric int8 with one f32 scale
 * per token per 128 channels (Group) or per token (PerToken); see ep/quant.h. */
typedef enum {
  epcommEpQuantDefault = 0,
  epcommEpQuantNone = 1,
  epcommEpQuantInt8Group = 2,
  epcommEpQuantInt8PerToken = 3
} epcommEpQuant_t;

/* Buffer options (ep::BufferConfig); starts with size | magic | version like epcommConfig_t.
 * Initialise with EPCOMM_EP_CONFIG_INITIALIZER; a field left at -1 keeps the environment's
 * setting (the knob named), else its default. */
#define EPCOMM_EP_CONFIG_MAGIC 0x65706570u /* "epep" */
#define EPCOMM_EP_CONFIG_VERSION 1u
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int64_t normalBufferMiB; /* EPCOMM_EP_BUFFSIZE: normal-mode staging, MiB (>= 1) */
  int64_t rounds;          /* EPCOMM_EP_ROUNDS: at most this many normal rounds; 0: no limit */
  int64_t roundTokens;     /* EPCOMM_EP_ROUND_TOKENS: tokens per round; 0: one round */
  int64_t llMaxTokens;     /* EPCOMM_EP_LL_MAX_TOKENS: low-latency capacity T (>= 1) */
  int combineRounds;       /* EPCOMM_EP_COMBINE_ROUNDS: combine in the same rounds (0/1) */
  int int8;                /* EPCOMM_EP_INT8: int8 normal dispatch by default (0/1) */
  int quantGroup;          /* EPCOMM_EP_QUANT_GROUP: 128, or 0 for one scale per token */
  int reserved;            /* 0 */
  /* After epcommCommShrink (ep::ExpertMask in ep/buffer.h): the ranks the experts were laid
   * out over (the communicator's size before the shrink) and, for each rank of comm, the
   * rank whose experts it holds (the shrink's keptRanks, comm's size entries, copied); the
   * experts of the ranks not kept are masked: combine gives zeros for them. 0 / NULL: no
   * mask. */
  int maskOriginalRanks;
  const int* maskKeptRanks;
} epcommEpConfig_t;
#define EPCOMM_EP_CONFIG_INITIALIZER                                                            \
  {                                                                                             \
    sizeof(epcommEpConfig_t), EPCOMM_EP_CONFIG_MAGIC, EPCOMM_EP_CONFIG_VERSION, -1, -1, -1, -1, \
        -1, -1, -1, 0, 0, NULL                                                                  \
  }

/* ---- Buffer ---- */

/* Collective on comm. config may be NULL (everything from the environment). A config that
 * was not made with EPCOMM_EP_CONFIG_INITIALIZER (bad size, magic or version) or holds an
 * invalid value is epcommInvalidArgument on every rank. */
epcommResult_t epcommEpBufferCreate(epcommComm_t comm, const epcommEpConfig_t* config,
                                    epcommEpBuffer_t* buffer);
/* Collective; NULL is a no-op. Releases the handles and hooks left. */
epcommResult_t epcommEpBufferDestroy(epcommEpBuffer_t buffer);
/* The settings in force (every field resolved, none -1). Local. */
epcommResult_t epcommEpBufferGetConfig(epcommEpBuffer_t buffer, epcommEpConfig_t* config);
/* The mode a batch runs in (SGLang's DeepEPMode.resolve): configured unless Auto, then
 * LowLatency for decode batches and Normal otherwise. Local. */
epcommResult_t epcommEpResolveMode(epcommEpMode_t configured, epcommEpBatchKind_t batch,
                                   epcommEpMode_t* mode);

/* ---- Dispatch layout (DeepEP's get_dispatch_layout; ep/layout.h) ---- */

typedef struct {
  const int64_t* topkIdx; /* [numTokens, numTopk]; -1 = no expert */
  int64_t numTokens;
  int64_t numTopk;
  int64_t numExperts; /* a multiple of the number of ranks R; rank r owns [r*E/R, (r+1)*E/R) */
} epcommEpLayoutInputs_t;

typedef struct {
  int64_t numTokens;
  int64_t numRanks;
  int64_t numExperts;
  const int32_t* numTokensPerRank;   /* [numRanks]: tokens with >= 1 expert there */
  const int32_t* numTokensPerExpert; /* [numExperts]: (token, slot) pairs per expert */
  const uint8_t* isTokenInRank;      /* [numTokens, numRanks], 0 or 1 */
} epcommEpLayoutOutputs_t;

epcommResult_t epcommEpGetDispatchLayout(epcommEpBuffer_t buffer, const epcommEpLayoutInputs_t* in,
                                         epcommEpLayoutOutputs_t* out);

/* ---- Normal mode (prefill / extend; semantics in ep/normal.h) ---- */

typedef struct {
  const epcommBf16_t* x; /* [numTokens, hidden]; may be NULL with extras->xInt8 */
  int64_t numTokens;
  int64_t hidden;
  const int64_t* topkIdx;   /* [numTokens, numTopk]; -1 = none. Ignored in cached mode */
  const float* topkWeights; /* [numTokens, numTopk]; optional (NULL) */
  int64_t numTopk;          /* ignored in cached mode */
  int64_t numExperts;       /* ignored in cached mode */
  epcommEpHandle_t handle;  /* cached mode: reuse this dispatch's layout; NULL: fresh */
  int64_t expertAlignment;  /* round per-expert counts up to this; 0: 1 */
  int quant;                /* epcommEpQuant_t */
  int dequantize;           /* int8: also return the dequantised tokens in recvX */
} epcommEpDispatchInputs_t;

typedef struct {
  epcommEpHandle_t handle; /* new; holds every array below; epcommEpHandleDestroy it */
  int64_t numRecvTokens;   /* rows received, grouped by source rank */
  int64_t hidden;
  int64_t numTopk;         /* 0 in cached mode (no topk received) */
  int64_t numScales;       /* int8: scales per row; else 0 */
  int64_t numLocalExperts; /* 0 in cached mode */
  int64_t bytesSent;       /* payload sent to other ranks */
  int quant;               /* epcommEpQuant_t used: None, Int8Group or Int8PerToken */
  int reserved;
  epcommBf16_t* recvX;    /* [numRecvTokens, hidden]; NULL for int8 unless dequantize */
  int8_t* recvXInt8;      /* [numRecvTokens, hidden]; int8 only, else NULL */
  float* recvScales;      /* [numRecvTokens, numScales]; int8 only, else NULL */
  int64_t* recvTopkIdx;   /* [numRecvTokens, numTopk]: local expert ids, -1 elsewhere */
  float* recvTopkWeights; /* [numRecvTokens, numTopk]: 0 where not local */
  const int32_t* numRecvTokensPerExpert; /* [numLocalExperts], rounded up to the alignment */
  const int32_t* recvSrcIdx;             /* [numRecvTokens]: each row's token index at its source */
  const int64_t* rankPrefix;             /* [R + 1]: first row of each source rank */
} epcommEpDispatchOutputs_t;

/* Dispatch inputs added after epcommEpDispatchInputs_t, for epcommEpDispatchEx (C++:
 * ep::DispatchInputs). Versioned by size as comm/backend.h's structs: zero-initialise, set
 * structSize = sizeof(epcommEpDispatchExtras_t), then the fields wanted; a zero field is
 * "not used". A field that structSize does not cover entirely reads as its default (a
 * binary built with an older, shorter struct keeps working); bytes beyond the fields this
 * library knows (a newer header's) must be zero. A structSize below 8 (the header; 0 too) or
 * above 4096, reserved not 0, or a non-zero unknown byte is epcommInvalidArgument on every
 * rank, this rank's message naming the field and value. */
typedef struct {
  uint32_t structSize; /* sizeof(epcommEpDispatchExtras_t) as the caller compiled it */
  uint32_t reserved;   /* 0 */
  /* DeepEP's layout arguments as epcommEpGetDispatchLayout returned them, both or neither
   * (one alone is refused; ignored in cached mode): used as given, not recomputed from
   * topkIdx. Rows go where isTokenInRank says; topkIdx is still required and only labels
   * them (local ids), so it must agree with isTokenInRank. */
  const uint8_t* isTokenInRank;      /* [numTokens, R], 0 or 1 */
  const int32_t* numTokensPerExpert; /* [numExperts] */
  /* Pre-quantised tokens (DeepEP's (data, scales) x): int8 rows and one f32 scale per
   * quantisation group (128 channels with Int8Group, the whole row with Int8PerToken; see
   * ep/quant.h); they arrive as sent (recvXInt8, recvScales). Scale g of token t is
   * xScales[t * scalesTokenStride + g * scalesGroupStride], strides in floats and of any
   * value (column-major scales: 1 and numTokens); both 0 means row-major [numTokens,
   * numScales]. in->x is then not read (may be NULL) and in->quant must be, or default
   * to, an int8 mode. */
  const int8_t* xInt8;  /* [numTokens, hidden] */
  const float* xScales; /* see above */
  int64_t scalesTokenStride;
  int64_t scalesGroupStride;
  /* DeepEP's num_worst_tokens: > 0 gives every row array of the outputs (recvX, recvXInt8,
   * recvScales, recvTopkIdx, recvTopkWeights) exactly this many rows: out->numRecvTokens
   * still counts the rows received (recvSrcIdx has that many), the rows after them are
   * padding (zeros, topk ids -1); numRecvTokensPerExpert is empty (numLocalExperts 0).
   * Negative, or fewer than a rank receives: epcommInvalidArgument on every rank, before
   * any token moves. 0: no padding. */
  int64_t numWorstTokens;
} epcommEpDispatchExtras_t;

/* Dispatch. On error out->handle is NULL and nothing needs freeing. extras may be NULL (no
 * extras); epcommEpDispatch is epcommEpDispatchEx with NULL extras. */
epcommResult_t epcommEpDispatchEx(epcommEpBuffer_t buffer, const epcommEpDispatchInputs_t* in,
                                  const epcommEpDispatchExtras_t* extras,
                                  epcommEpDispatchOutputs_t* out);
epcommResult_t epcommEpDispatch(epcommEpBuffer_t buffer, const epcommEpDispatchInputs_t* in,
                                epcommEpDispatchOutputs_t* out);

typedef struct {
  const epcommBf16_t* x; /* [numRecvTokens of the handle, hidden], dispatch order */
  int64_t hidden;
  epcommEpHandle_t handle;  /* the dispatch being reversed */
  const float* topkWeights; /* [numRecvTokens, numTopk]; optional (as DeepEP) */
  int64_t numTopk; /* > 0: weights given (topkWeights may be NULL only with no rows received) */
  int weighted;    /* 1: scale each row by the sum of its topkWeights row (needs them) */
  int reserved;
} epcommEpCombineInputs_t;

typedef struct {
  int64_t numTokens; /* this rank's source tokens */
  int64_t hidden;
  int64_t numTopk; /* of combinedTopkWeights; 0 without topkWeights */
  int64_t bytesSent;
  epcommBf16_t* combinedX;    /* [numTokens, hidden] */
  float* combinedTopkWeights; /* [numTokens, numTopk], or NULL */
} epcommEpCombineOutputs_t;

epcommResult_t epcommEpCombine(epcommEpBuffer_t buffer, const epcommEpCombineInputs_t* in,
                               epcommEpCombineOutputs_t* out);
/* Local; NULL is a no-op. The handle's arrays (dispatch and combine outputs) go with it. */
epcommResult_t epcommEpHandleDestroy(epcommEpHandle_t handle);

/* ---- Low-latency mode (decode; semantics in ep/low_latency.h) ---- */

/* Plain data naming a low-latency dispatch (its Buffer slot); copy it freely. A handle whose
 * slot was reused by a later dispatch is refused (epcommInvalidArgument). */
typedef struct {
  int64_t slot;
  int64_t sequence;
  int64_t numTokens;
  int64_t numTopk;
  int64_t hidden;
  int64_t numExperts;
} epcommEpLowLatencyHandle_t;

typedef struct {
  const epcommBf16_t* x; /* [numTokens, hidden], numTokens <= T (llMaxTokens) */
  int64_t numTokens;
  int64_t hidden;
  const int64_t* topkIdx; /* [numTokens, numTopk]; -1 = none; an expert at most once a token */
  int64_t numTopk;
  int64_t numExperts;
  int quant;          /* epcommEpQuant_t; Default = None (bf16) */
  int dequantize;     /* int8: also fill recvX with the dequantised rows */
  int returnRecvHook; /* 1: only send; out->hook receives (run it on every rank) */
  int reserved;
} epcommEpLowLatencyDispatchInputs_t;

typedef struct {
  epcommEpLowLatencyHandle_t handle;
  epcommEpHook_t hook; /* with returnRecvHook: run it before reading the arrays; else NULL */
  int64_t numLocalExperts;
  int64_t numRanks;
  int64_t maxTokens; /* T; rows per expert = T * numRanks */
  int64_t hidden;
  int64_t numScales;
  int64_t bytesSent;
  int quant; /* epcommEpQuant_t used */
  int reserved;
  epcommBf16_t* recvX;      /* [numLocalExperts, T * R, hidden]; NULL for int8 unless dequantize */
  int8_t* recvXInt8;        /* [numLocalExperts, T * R, hidden]; int8 only */
  float* recvScales;        /* [numLocalExperts, T * R, numScales]; int8 only */
  const int32_t* recvCount; /* [numLocalExperts]: valid rows per expert */
  const int32_t* srcInfo;   /* [numLocalExperts, T * R]: token index at its source */
  const int64_t* layoutRange; /* [numLocalExperts, R]: (begin << 32) | count per source */
} epcommEpLowLatencyDispatchOutputs_t;

epcommResult_t epcommEpLowLatencyDispatch(epcommEpBuffer_t buffer,
                                          const epcommEpLowLatencyDispatchInputs_t* in,
                                          epcommEpLowLatencyDispatchOutputs_t* out);

typedef struct {
  const epcommBf16_t* x;    /* [numLocalExperts, T * R, hidden]; NULL with zeroCopy */
  const int64_t* topkIdx;   /* the dispatch's [numTokens, numTopk] */
  const float* topkWeights; /* [numTokens, numTopk]; with returnRecvHook: read by the hook */
  epcommEpLowLatencyHandle_t handle;
  epcommBf16_t* out;  /* [numTokens, hidden] to write into; NULL: in the dispatch's slot */
  int zeroCopy;       /* 1: x was written into epcommEpLowLatencyCombineBuffer(handle) */
  int returnRecvHook; /* 1: only send; out->hook receives */
} epcommEpLowLatencyCombineInputs_t;

typedef struct {
  epcommEpHook_t hook; /* with returnRecvHook; else NULL */
  int64_t numTokens;
  int64_t hidden;
  int64_t bytesSent;
  epcommBf16_t* combinedX; /* [numTokens, hidden]: sum_k topkWeights[t,k] * expert output */
} epcommEpLowLatencyCombineOutputs_t;

epcommResult_t epcommEpLowLatencyCombine(epcommEpBuffer_t buffer,
                                         const epcommEpLowLatencyCombineInputs_t* in,
                                         epcommEpLowLatencyCombineOutputs_t* out);
/* Where expert outputs [numLocalExperts, T * R, hidden] may be written for a zero-copy
 * combine of this dispatch; valid as the dispatch's outputs are (until the second
 * low-latency dispatch after it reuses its slot). A stale handle is epcommInvalidArgument.
 * Local. */
epcommResult_t epcommEpLowLatencyCombineBuffer(epcommEpBuffer_t buffer,
                                               const epcommEpLowLatencyHandle_t* handle,
                                               epcommBf16_t** combineBuffer);

/* Receives what the dispatch or combine that returned hook sent (its outputs are valid from
 * then on), then releases the hook, even on error. Every rank runs its hooks, in the same
 * order, each exactly once; a hook never run keeps its slot busy (a dispatch that needs the
 * slot fails, naming it) until the Buffer is destroyed. */
epcommResult_t epcommEpHookRun(epcommEpHook_t hook);
/* Releases a hook without running it (after an error elsewhere); NULL is a no-op. Local. */
epcommResult_t epcommEpHookDestroy(epcommEpHook_t hook);

#ifdef __cplusplus
}
#endif

#endif /* EPCOMM_EP_EPCOMM_EP_H_ */
