/* The EP C API (ep/epcomm_ep.h), driven from C only, under mpirun (any rank count, any
 * backend): config and mode, low-latency dispatch + hook + weighted combine (copy and
 * zero-copy), and the error paths (a bad topk index on one rank fails on every rank with a
 * message naming it, NULL structs, a config not made with the initializer); the layout and
 * normal mode are in c_api_normal_test.c, epcommEpDispatchEx's extras in
 * c_api_dispatch_ex_test.c, the shared helpers in c_api_test_util.h. Compiled
 * as C11 with -pedantic -Werror (the header check). Exit 0 when every check passed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ep/c_api_test_util.h"

static void testConfigAndMode(epcommComm_t comm) {
  epcommEpBuffer_t buffer = NULL;
  epcommEpConfig_t zero;
  memset(&zero, 0, sizeof(zero));
  CHECK(epcommEpBufferCreate(comm, &zero, &buffer) == epcommInvalidArgument);
  CHECK(buffer == NULL);
  CHECK(contains(epcommGetLastError(NULL), "EPCOMM_EP_CONFIG_INITIALIZER"));
  CHECK(contains(epcommGetLastError(comm), "EPCOMM_EP_CONFIG_INITIALIZER"));
  epcommEpConfig_t wrongMagic = EPCOMM_EP_CONFIG_INITIALIZER;
  wrongMagic.magic = EPCOMM_CONFIG_MAGIC;
  CHECK(epcommEpBufferCreate(comm, &wrongMagic, &buffer) == epcommInvalidArgument);
  epcommEpConfig_t small = EPCOMM_EP_CONFIG_INITIALIZER;
  small.size = 16;
  CHECK(epcommEpBufferCreate(comm, &small, &buffer) == epcommInvalidArgument);
  epcommEpConfig_t badValue = EPCOMM_EP_CONFIG_INITIALIZER;
  badValue.quantGroup = 64;
  CHECK(epcommEpBufferCreate(comm, &badValue, &buffer) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "quantGroup"));
  CHECK(epcommEpBufferCreate(NULL, NULL, &buffer) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "comm is NULL"));
  /* The output pointer NULL on one rank: every rank fails. */
  CHECK(epcommEpBufferCreate(comm, NULL, gRank == 0 ? NULL : &buffer) == epcommInvalidArgument);
  CHECK(buffer == NULL);
  CHECK(epcommEpBufferDestroy(NULL) == epcommSuccess);

  epcommEpMode_t mode = epcommEpModeNormal;
  CHECK_OK(epcommEpResolveMode(epcommEpModeAuto, epcommEpBatchDecode, &mode));
  CHECK(mode == epcommEpModeLowLatency);
  CHECK_OK(epcommEpResolveMode(epcommEpModeAuto, epcommEpBatchPrefill, &mode));
  CHECK(mode == epcommEpModeNormal);
  CHECK_OK(epcommEpResolveMode(epcommEpModeLowLatency, epcommEpBatchPrefill, &mode));
  CHECK(mode == epcommEpModeLowLatency);
  CHECK(epcommEpResolveMode((epcommEpMode_t)7, epcommEpBatchPrefill, &mode) ==
        epcommInvalidArgument);
  CHECK(epcommEpResolveMode(epcommEpModeAuto, epcommEpBatchPrefill, NULL) == epcommInvalidArgument);
}

static void llDispatchInputs(epcommEpLowLatencyDispatchInputs_t* d, const Inputs* in) {
  memset(d, 0, sizeof(*d));
  d->x = in->x;
  d->numTokens = in->n;
  d->hidden = kHidden;
  d->topkIdx = in->idx;
  d->numTopk = kTopk;
  d->numExperts = in->experts;
}

/* DeepEP's low-latency checks of a dispatch of rank-row inputs made with seed. */
static void checkLowLatency(const epcommEpLowLatencyDispatchOutputs_t* out, int seed,
                            int64_t experts) {
  const int64_t local = experts / gSize, rowsPerExpert = (int64_t)kCapacity * gSize;
  CHECK(out->numLocalExperts == local && out->maxTokens == kCapacity && out->numRanks == gSize);
  for (int64_t e = 0; e < local; ++e) {
    int64_t begin = 0;
    for (int s = 0; s < gSize; ++s) {
      Inputs src = makeInputs(seed, s, llTokensOf(s), experts, 1);
      int64_t count = 0;
      for (int64_t t = 0; t < src.n; ++t) {
        for (int k = 0; k < kTopk; ++k) {
          if (src.idx[t * kTopk + k] != gRank * local + e) continue;
          const int64_t row = e * rowsPerExpert + begin + count++;
          const epcommBf16_t* x = out->recvX + row * kHidden;
          CHECK(out->srcInfo[row] == t && tokenOfRow(x) == t);
          for (int c = 0; c < kHidden - 2; ++c) CHECK(fromBf16(x[c]) == (float)s);
        }
      }
      CHECK(out->layoutRange[e * gSize + s] == ((begin << 32) | count));
      begin += count;
      freeInputs(&src);
    }
    CHECK(out->recvCount[e] == begin);
  }
}

/* Identity experts: combine = x * the sum of its valid weights. */
static void checkWeighted(const Inputs* in, const epcommBf16_t* combined, double maxDiff) {
  float* want = malloc((size_t)(in->n * kHidden + 1) * sizeof(float));
  float* got = malloc((size_t)(in->n * kHidden + 1) * sizeof(float));
  for (int64_t t = 0; t < in->n; ++t) {
    float w = 0;
    for (int k = 0; k < kTopk; ++k) w += in->idx[t * kTopk + k] >= 0 ? in->w[t * kTopk + k] : 0.0f;
    for (int c = 0; c < kHidden; ++c) {
      want[t * kHidden + c] = fromBf16(in->x[t * kHidden + c]) * w;
      got[t * kHidden + c] = fromBf16(combined[t * kHidden + c]);
    }
  }
  CHECK(calcDiff(want, got, in->n * kHidden) < maxDiff);
  free(want);
  free(got);
}

static void testLowLatency(epcommEpBuffer_t buffer, int64_t experts) {
  Inputs in = makeInputs(4, gRank, llTokensOf(gRank), experts, 1);
  epcommEpLowLatencyDispatchInputs_t di;
  llDispatchInputs(&di, &in);
  di.returnRecvHook = 1;
  epcommEpLowLatencyDispatchOutputs_t out;
  CHECK_OK(epcommEpLowLatencyDispatch(buffer, &di, &out));
  CHECK(out.hook != NULL && out.quant == epcommEpQuantNone);
  CHECK_OK(epcommEpHookRun(out.hook));
  CHECK(epcommEpHookRun(NULL) == epcommInvalidArgument);
  checkLowLatency(&out, 4, experts);

  /* Weighted combine into the caller's memory, no hook. */
  const size_t rows = (size_t)(out.numLocalExperts * out.maxTokens * out.numRanks);
  epcommBf16_t* mine = malloc((size_t)(in.n * kHidden + 1) * 2);
  epcommEpLowLatencyCombineInputs_t ci = {out.recvX, in.idx, in.w, out.handle, mine, 0, 0};
  epcommEpLowLatencyCombineOutputs_t co;
  CHECK_OK(epcommEpLowLatencyCombine(buffer, &ci, &co));
  CHECK(co.hook == NULL && co.combinedX == mine && co.numTokens == in.n);
  checkWeighted(&in, mine, 5e-6);

  /* Again through the zero-copy combine buffer, with a hook, into the Buffer's slot. */
  epcommBf16_t* zero = NULL;
  CHECK_OK(epcommEpLowLatencyCombineBuffer(buffer, &out.handle, &zero));
  CHECK(zero != NULL);
  if (zero) memcpy(zero, out.recvX, rows * kHidden * 2);
  ci.x = NULL;
  ci.zeroCopy = 1;
  ci.out = NULL;
  ci.returnRecvHook = 1;
  CHECK_OK(epcommEpLowLatencyCombine(buffer, &ci, &co));
  CHECK(co.hook != NULL);
  CHECK_OK(epcommEpHookRun(co.hook));
  CHECK(epcommEpHookRun(co.hook) == epcommInvalidArgument); /* a run hook is gone */
  checkWeighted(&in, co.combinedX, 5e-6);

  /* Int8 (dequantised) on Gaussian rows. */
  Inputs g = makeInputs(5, gRank, llTokensOf(gRank), experts, 0);
  epcommEpLowLatencyDispatchInputs_t qi;
  llDispatchInputs(&qi, &g);
  qi.quant = epcommEpQuantInt8Group;
  qi.dequantize = 1;
  epcommEpLowLatencyDispatchOutputs_t qo;
  CHECK_OK(epcommEpLowLatencyDispatch(buffer, &qi, &qo));
  CHECK(qo.hook == NULL && qo.quant == epcommEpQuantInt8Group && qo.numScales == kHidden / 128);
  CHECK(qo.recvXInt8 != NULL && qo.recvScales != NULL && qo.recvX != NULL);
  epcommEpLowLatencyCombineInputs_t qc = {qo.recvX, g.idx, g.w, qo.handle, NULL, 0, 0};
  CHECK_OK(epcommEpLowLatencyCombine(buffer, &qc, &co));
  checkWeighted(&g, co.combinedX, 3e-3);

  /* A third dispatch reuses the first's slot: its handle is stale now. */
  CHECK_OK(epcommEpLowLatencyDispatch(buffer, &di, &qo));
  CHECK_OK(epcommEpHookRun(qo.hook));
  CHECK(epcommEpLowLatencyCombineBuffer(buffer, &out.handle, &zero) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "stale"));
  /* A hook not run can be released (its slot then stays busy until the Buffer goes). */
  free(mine);
  freeInputs(&g);
  freeInputs(&in);
}

/* Bad arguments: an error on every rank with a message naming the problem; the Buffer stays
 * usable. */
static void testErrors(epcommEpBuffer_t buffer, epcommComm_t comm, int64_t experts) {
  const int bad = gSize - 1;
  Inputs in = makeInputs(6, gRank, tokensOf(gRank), experts, 1);
  const int64_t saved = gRank == bad ? in.idx[5] : 0; /* the bad rank has tokens (skewed too) */
  if (gRank == bad) in.idx[5] = experts + 3;          /* token 1, slot 1 */
  epcommEpLayoutInputs_t li = {in.idx, in.n, kTopk, experts};
  epcommEpLayoutOutputs_t lo;
  CHECK(epcommEpGetDispatchLayout(buffer, &li, &lo) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "topkIdx[1, 1]"));
  CHECK(contains(epcommGetLastError(comm), "is outside [-1, numExperts"));
  epcommEpDispatchInputs_t di = {in.x, in.n, kHidden, in.idx, in.w, kTopk, experts, NULL, 0, 0, 0};
  epcommEpDispatchOutputs_t out;
  CHECK(epcommEpDispatch(buffer, &di, &out) == epcommInvalidArgument);
  CHECK(out.handle == NULL);
  CHECK(contains(epcommGetLastError(NULL), "topkIdx[1, 1]"));
  if (gRank == bad) in.idx[5] = saved;

  /* NULL structs, a shape beyond int, on one rank: every rank fails. */
  CHECK(epcommEpDispatch(buffer, gRank == 0 ? NULL : &di, &out) == epcommInvalidArgument);
  if (gRank == 0) CHECK(contains(epcommGetLastError(NULL), "inputs are NULL"));
  CHECK(epcommEpGetDispatchLayout(buffer, &li, gRank == 0 ? NULL : &lo) == epcommInvalidArgument);
  if (gRank == 0) CHECK(contains(epcommGetLastError(NULL), "outputs are NULL"));
  epcommEpDispatchInputs_t huge = di;
  if (gRank == bad) huge.numTokens = (int64_t)1 << 40;
  CHECK(epcommEpDispatch(buffer, &huge, &out) == epcommInvalidArgument);
  if (gRank == bad) CHECK(contains(epcommGetLastError(NULL), "does not fit in an int"));
  CHECK(epcommEpDispatch(NULL, &di, &out) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "buffer is NULL"));
  CHECK(epcommEpCombine(buffer, NULL, NULL) == epcommInvalidArgument);
  epcommEpCombineInputs_t noHandle = {in.x, kHidden, NULL, NULL, 0, 0, 0};
  epcommEpCombineOutputs_t co;
  CHECK(epcommEpCombine(buffer, &noHandle, &co) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "handle is missing"));

  /* Low-latency: N > T names T and its knob; an unknown quant. */
  Inputs many = makeInputs(7, gRank, kCapacity + 1, experts, 1);
  epcommEpLowLatencyDispatchInputs_t ll;
  llDispatchInputs(&ll, &many);
  if (gRank != gSize - 1) ll.numTokens = many.n < 3 ? many.n : 3; /* the last rank has T + 1 */
  epcommEpLowLatencyDispatchOutputs_t llo;
  CHECK(epcommEpLowLatencyDispatch(buffer, &ll, &llo) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "EPCOMM_EP_LL_MAX_TOKENS"));
  ll.numTokens = many.n < 3 ? many.n : 3;
  ll.quant = 9;
  CHECK(epcommEpLowLatencyDispatch(buffer, &ll, &llo) == epcommInvalidArgument);
  CHECK(epcommEpLowLatencyDispatch(buffer, &ll, NULL) == epcommInvalidArgument);
  CHECK(epcommEpLowLatencyCombine(buffer, NULL, NULL) == epcommInvalidArgument);
  CHECK(epcommEpLowLatencyCombineBuffer(buffer, NULL, NULL) == epcommInvalidArgument);
  epcommEpConfig_t got;
  CHECK(epcommEpBufferGetConfig(buffer, NULL) == epcommInvalidArgument);
  memset(&got, 0, sizeof(got));
  CHECK(epcommEpBufferGetConfig(buffer, &got) == epcommInvalidArgument);

  /* Still usable, and the communicator too. */
  CHECK_OK(epcommEpGetDispatchLayout(buffer, &li, &lo));
  CHECK_OK(epcommBarrier(comm));
  freeInputs(&many);
  freeInputs(&in);
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) gSkewed |= strcmp(argv[i], "--skewed") == 0;
  epcommComm_t comm = NULL;
  CHECK_OK(epcommCommInitFromEnv(&comm, NULL));
  CHECK_OK(epcommCommUserRank(comm, &gRank));
  CHECK_OK(epcommCommCount(comm, &gSize));
  const int64_t experts = 8 * gSize;

  testConfigAndMode(comm);
  epcommEpConfig_t config = EPCOMM_EP_CONFIG_INITIALIZER;
  config.normalBufferMiB = 32;
  config.llMaxTokens = kCapacity;
  epcommEpBuffer_t buffer = NULL;
  CHECK_OK(epcommEpBufferCreate(comm, &config, &buffer));
  epcommEpConfig_t got = EPCOMM_EP_CONFIG_INITIALIZER;
  CHECK_OK(epcommEpBufferGetConfig(buffer, &got));
  CHECK(got.llMaxTokens == kCapacity && got.normalBufferMiB == 32 && got.rounds >= 0);
  CHECK(got.quantGroup == 128 || got.quantGroup == 0);

  testLayout(buffer, experts);
  testNormal(buffer, experts);
  testInt8(buffer, experts, epcommEpQuantInt8Group);
  testInt8(buffer, experts, epcommEpQuantInt8PerToken);
  testDispatchExtras(buffer, comm, experts);
  testLowLatency(buffer, experts);
  testErrors(buffer, comm, experts);
  testNormal(buffer, experts); /* after the errors: recycled handles, same results */

  /* Handles and hooks left behind go with the Buffer. */
  Inputs in = makeInputs(8, gRank, tokensOf(gRank), experts, 1);
  epcommEpDispatchInputs_t di = {in.x, in.n, kHidden, in.idx, NULL, kTopk, experts, NULL, 0, 0, 0};
  epcommEpDispatchOutputs_t left;
  CHECK_OK(epcommEpDispatch(buffer, &di, &left));
  epcommEpLowLatencyDispatchInputs_t ll;
  Inputs few = makeInputs(9, gRank, 4, experts, 1);
  llDispatchInputs(&ll, &few);
  ll.returnRecvHook = 1;
  epcommEpLowLatencyDispatchOutputs_t llo;
  CHECK_OK(epcommEpLowLatencyDispatch(buffer, &ll, &llo));
  CHECK_OK(epcommEpHookDestroy(llo.hook));
  CHECK(epcommEpHookDestroy(llo.hook) == epcommInvalidArgument);
  CHECK_OK(epcommEpLowLatencyDispatch(buffer, &ll, &llo)); /* its hook is left unrun */
  CHECK_OK(epcommEpBufferDestroy(buffer));
  /* What went with it is refused, not a crash. */
  CHECK(epcommEpHandleDestroy(left.handle) == epcommInvalidArgument);
  CHECK(epcommEpHookRun(llo.hook) == epcommInvalidArgument);
  CHECK(epcommEpBufferDestroy(buffer) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "not a live Buffer"));
  freeInputs(&few);
  freeInputs(&in);

  int64_t failed = gFailed;
  CHECK_OK(epcommAllReduce(&gFailed, &failed, 1, epcommInt64, epcommSum, comm));
  printf("ep c_api_test rank %d of %d: %lld checks here, %lld failed (all ranks)\n", gRank, gSize,
         (long long)gChecks, (long long)failed);
  CHECK_OK(epcommCommDestroy(comm));
  return failed == 0 ? 0 : 1;
}
