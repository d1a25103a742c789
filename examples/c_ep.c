/* A C engine's MoE layer on epcomm's EP C API (ep/epcomm_ep.h): one prefill batch in normal
 * mode (dispatch, experts, weighted combine) and one decode batch in low-latency mode
 * (dispatch with a receive hook, experts writing into the zero-copy combine buffer, combine),
 * the mode picked by auto-mode resolution as SGLang's --deepep-mode auto does. The "experts"
 * double their input, so the layer must return 2 * x * (sum of the token's weights).
 * Run under mpirun (any number of ranks). Exit 0 on success. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <epcomm/ep/epcomm_ep.h>

#include "example_check.h"

enum { kHidden = 512, kTopk = 4, kExpertsPerRank = 4, kPrefillTokens = 100, kDecodeTokens = 8 };

static epcommBf16_t toBf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);
  return (epcommBf16_t)(u >> 16);
}
static float fromBf16(epcommBf16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

/* The expert computation: y = 2 * x, row by row. */
static void experts(const epcommBf16_t* x, epcommBf16_t* y, int64_t rows) {
  for (int64_t i = 0; i < rows * kHidden; ++i) y[i] = toBf16(2.0f * fromBf16(x[i]));
}

/* Tokens with values in [-1, 1), distinct experts, weights in [0.1, 1.1). */
static void route(int rank, int64_t n, int64_t numExperts, epcommBf16_t* x, int64_t* idx,
                  float* w) {
  srand((unsigned)(rank * 7919 + (int)n));
  for (int64_t i = 0; i < n * kHidden; ++i) x[i] = toBf16((float)(rand() % 2048) / 1024 - 1);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t first = rand() % numExperts;
    for (int k = 0; k < kTopk; ++k) {
      idx[t * kTopk + k] = (first + k * 3) % numExperts; /* distinct while 3 * kTopk <= E */
      w[t * kTopk + k] = 0.1f + (float)(rand() % 1000) / 1000;
    }
  }
}

/* Wrong elements of y against 2 * x * (sum of weights): bf16 rounding, plus the int8 error
 * (max|x| / 254 per element, ep/quant.h) when int8 went on the wire. */
static int64_t wrongRows(const epcommBf16_t* x, const float* w, const epcommBf16_t* y, int64_t n,
                         int int8) {
  int64_t wrong = 0;
  for (int64_t t = 0; t < n; ++t) {
    float sum = 0;
    for (int k = 0; k < kTopk; ++k) sum += w[t * kTopk + k];
    for (int c = 0; c < kHidden; ++c) {
      const float want = 2.0f * fromBf16(x[t * kHidden + c]) * sum;
      const float slack = 1e-2f * fabsf(want) + (int8 ? 2.0f * sum / 254 : 1e-3f);
      wrong += fabsf(fromBf16(y[t * kHidden + c]) - want) > slack;
    }
  }
  return wrong;
}

int main(void) {
  epcommComm_t comm = NULL;
  int rank = 0, size = 0;
  if (exampleInit(&comm, &rank, &size) != 0) return 1;
  const int64_t numExperts = (int64_t)kExpertsPerRank * size;

  epcommEpConfig_t config = EPCOMM_EP_CONFIG_INITIALIZER; /* -1: environment / default */
  config.normalBufferMiB = 64;
  config.llMaxTokens = 16;
  epcommEpBuffer_t buffer = NULL;
  EXAMPLE_CHECK(epcommEpBufferCreate(comm, &config, &buffer));

  const int64_t maxN = kPrefillTokens;
  epcommBf16_t* x = malloc((size_t)(maxN * kHidden) * sizeof(epcommBf16_t));
  int64_t* idx = malloc((size_t)(maxN * kTopk) * sizeof(int64_t));
  float* w = malloc((size_t)(maxN * kTopk) * sizeof(float));
  int64_t wrong = 0;

  /* Prefill batch: auto resolves to normal mode. */
  epcommEpMode_t mode;
  EXAMPLE_CHECK(epcommEpResolveMode(epcommEpModeAuto, epcommEpBatchPrefill, &mode));
  wrong += mode != epcommEpModeNormal;
  route(rank, kPrefillTokens, numExperts, x, idx, w);
  epcommEpDispatchInputs_t di;
  memset(&di, 0, sizeof(di)); /* zero: defaults (alignment 1, the Buffer's quantisation) */
  di.x = x;
  di.numTokens = kPrefillTokens;
  di.hidden = kHidden;
  di.topkIdx = idx;
  di.topkWeights = w;
  di.numTopk = kTopk;
  di.numExperts = numExperts;
  epcommEpDispatchOutputs_t d;
  EXAMPLE_CHECK(epcommEpDispatch(buffer, &di, &d)); /* d's arrays live in d.handle */
  epcommBf16_t* y = malloc((size_t)(d.numRecvTokens * kHidden + 1) * sizeof(epcommBf16_t));
  if (d.recvX) {
    experts(d.recvX, y, d.numRecvTokens);
  } else { /* int8 on the wire (EPCOMM_EP_INT8=1) without dequantisation: do it here */
    for (int64_t i = 0; i < d.numRecvTokens * kHidden; ++i) {
      const int64_t r = i / kHidden, g = (i % kHidden) / (kHidden / d.numScales);
      y[i] = toBf16(2.0f * (float)d.recvXInt8[i] * d.recvScales[r * d.numScales + g]);
    }
  }
  epcommEpCombineInputs_t ci = {y, kHidden, d.handle, d.recvTopkWeights, d.numTopk, 1, 0};
  epcommEpCombineOutputs_t c;
  EXAMPLE_CHECK(epcommEpCombine(buffer, &ci, &c));
  wrong += wrongRows(x, w, c.combinedX, kPrefillTokens, d.quant != epcommEpQuantNone);
  printf("c_ep rank %d of %d: prefill: %lld tokens in, %lld rows received\n", rank, size,
         (long long)kPrefillTokens, (long long)d.numRecvTokens);
  EXAMPLE_CHECK(epcommEpHandleDestroy(d.handle));
  free(y);

  /* Decode batch: low-latency mode, receive in a hook, experts write into the Buffer. */
  EXAMPLE_CHECK(epcommEpResolveMode(epcommEpModeAuto, epcommEpBatchDecode, &mode));
  wrong += mode != epcommEpModeLowLatency;
  route(rank, kDecodeTokens, numExperts, x, idx, w);
  epcommEpLowLatencyDispatchInputs_t li;
  memset(&li, 0, sizeof(li));
  li.x = x;
  li.numTokens = kDecodeTokens;
  li.hidden = kHidden;
  li.topkIdx = idx;
  li.numTopk = kTopk;
  li.numExperts = numExperts;
  li.returnRecvHook = 1;
  epcommEpLowLatencyDispatchOutputs_t ld;
  EXAMPLE_CHECK(epcommEpLowLatencyDispatch(buffer, &li, &ld));
  /* ... the engine overlaps other work (attention of the next micro-batch) here ... */
  EXAMPLE_CHECK(epcommEpHookRun(ld.hook));
  epcommBf16_t* zeroCopy = NULL;
  EXAMPLE_CHECK(epcommEpLowLatencyCombineBuffer(buffer, &ld.handle, &zeroCopy));
  const int64_t rowsPerExpert = ld.maxTokens * ld.numRanks;
  for (int64_t e = 0; e < ld.numLocalExperts; ++e) {
    const int64_t first = e * rowsPerExpert * kHidden;
    experts(ld.recvX + first, zeroCopy + first, ld.recvCount[e]);
  }
  epcommEpLowLatencyCombineInputs_t lc;
  memset(&lc, 0, sizeof(lc));
  lc.topkIdx = idx;
  lc.topkWeights = w;
  lc.handle = ld.handle;
  lc.zeroCopy = 1;
  epcommEpLowLatencyCombineOutputs_t lo;
  EXAMPLE_CHECK(epcommEpLowLatencyCombine(buffer, &lc, &lo)); /* lo.combinedX: in the Buffer */
  wrong += wrongRows(x, w, lo.combinedX, kDecodeTokens, 0);

  /* A bad call is an error with a message on every rank, not a crash or a hang. */
  if (rank == size - 1) idx[0] = numExperts;
  li.returnRecvHook = 0;
  if (epcommEpLowLatencyDispatch(buffer, &li, &ld) != epcommInvalidArgument) ++wrong;
  printf("c_ep rank %d of %d: decode: bad topk refused: %s\n", rank, size,
         epcommGetLastError(comm));

  printf("c_ep rank %d of %d: %lld wrong\n", rank, size, (long long)wrong);
  free(w);
  free(idx);
  free(x);
  EXAMPLE_CHECK(epcommEpBufferDestroy(buffer));
  EXAMPLE_CHECK(epcommCommDestroy(comm));
  return wrong == 0 ? 0 : 1;
}
