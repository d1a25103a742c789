/* The EP C API (ep/epcomm_ep.h), driven from C only, under mpirun (any rank count, any
 * backend): DeepEP's oracles through the C structs — layout counts, rows that carry their
 * source rank and token index, combine(dispatch(x)) == x * ranks reached, cached dispatch,
 * int8, low-latency dispatch + hook + weighted combine (copy and zero-copy) — and the error
 * paths: a bad topk index on one rank fails on every rank with a message naming it, NULL
 * structs, a config not made with the initializer. Compiled as C11 with -pedantic -Werror
 * (the header check). Exit 0 when every check passed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ep/epcomm_ep.h"

static int gRank = 0, gSize = 1;
/* --skewed: rank 0 has no tokens (sends nothing) and no token goes to the last rank's
 * experts (it receives nothing), so every check also covers empty arrays. */
static int gSkewed = 0;
static int64_t gFailed = 0, gChecks = 0;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    ++gChecks;                                                                                 \
    if (!(cond)) {                                                                             \
      ++gFailed;                                                                               \
      fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed\n", gRank, __FILE__, __LINE__, #cond); \
    }                                                                                          \
  } while (0)
#define CHECK_OK(call)                                                                  \
  do {                                                                                  \
    epcommResult_t rc_ = (call);                                                        \
    if (rc_ != epcommSuccess) {                                                         \
      fprintf(stderr, "rank %d: %s:%d: %s: %s: %s\n", gRank, __FILE__, __LINE__, #call, \
              epcommGetErrorString(rc_), epcommGetLastError(NULL));                     \
      exit(1);                                                                          \
    }                                                                                   \
  } while (0)

enum { kHidden = 256, kTopk = 4, kCapacity = 32 };

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

typedef struct {
  int64_t n, experts;
  epcommBf16_t* x; /* [n, kHidden] */
  int64_t* idx;    /* [n, kTopk] */
  float* w;        /* [n, kTopk] */
} Inputs;

static uint32_t nextRandom(uint64_t* s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

/* Every rank can regenerate every rank's inputs. rankRows: every channel = the source rank
 * but the last two = token index (lo, hi); else values in [-2, 2). Distinct experts per
 * token, ~10% of slots -1, every 17th token routed nowhere. */
static Inputs makeInputs(int seed, int rank, int64_t n, int64_t experts, int rankRows) {
  const int64_t routable = gSkewed && gSize > 1 ? experts - experts / gSize : experts;
  if (gSkewed && gSize > 1 && rank == 0) n = 0;
  Inputs in = {n, experts, malloc((size_t)(n * kHidden + 1) * 2),
               malloc((size_t)(n * kTopk + 1) * 8), malloc((size_t)(n * kTopk + 1) * 4)};
  uint64_t s = (uint64_t)seed * 7919u + (uint64_t)rank + 1;
  int* pool = malloc((size_t)experts * sizeof(int));
  for (int64_t t = 0; t < n; ++t) {
    epcommBf16_t* row = in.x + t * kHidden;
    for (int c = 0; c < kHidden; ++c) {
      row[c] = toBf16(rankRows ? (float)rank : (float)(nextRandom(&s) % 4096) / 1024.0f - 2.0f);
    }
    if (rankRows) {
      row[kHidden - 1] = toBf16((float)(t % 256));
      row[kHidden - 2] = toBf16((float)(t / 256));
    }
    for (int e = 0; e < experts; ++e) pool[e] = e;
    for (int k = 0; k < kTopk; ++k) {
      const int pick = k + (int)(nextRandom(&s) % (uint32_t)(routable - k));
      const int tmp = pool[k];
      pool[k] = pool[pick];
      pool[pick] = tmp;
      const int drop = t % 17 == 0 || nextRandom(&s) % 10 == 0;
      in.idx[t * kTopk + k] = drop ? -1 : pool[k];
      in.w[t * kTopk + k] = 0.1f + (float)(nextRandom(&s) % 1000) / 1000.0f;
    }
  }
  free(pool);
  return in;
}
static void freeInputs(Inputs* in) {
  free(in->x);
  free(in->idx);
  free(in->w);
}
static int tokenOfRow(const epcommBf16_t* row) {
  return (int)fromBf16(row[kHidden - 1]) + 256 * (int)fromBf16(row[kHidden - 2]);
}
static int64_t tokensOf(int rank) {
  return 40 + 5 * rank;
}
static int64_t llTokensOf(int rank) {
  return 17 + 4 * rank < kCapacity ? 17 + 4 * rank : kCapacity;
}
static int reached(const Inputs* in, int64_t t, int rank, int64_t local) {
  for (int k = 0; k < kTopk; ++k) {
    const int64_t e = in->idx[t * kTopk + k];
    if (e >= 0 && e / local == rank) return 1;
  }
  return 0;
}
static int numReached(const Inputs* in, int64_t t, int64_t local) {
  int n = 0;
  for (int r = 0; r < gSize; ++r) n += reached(in, t, r, local);
  return n;
}
static int contains(const char* haystack, const char* needle) {
  return strstr(haystack, needle) != NULL;
}
/* DeepEP's calc_diff on x + 1, y + 1. */
static double calcDiff(const float* x, const float* y, int64_t n) {
  double xy = 0, xx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = x[i] + 1.0, b = y[i] + 1.0;
    xy += a * b;
    xx += a * a + b * b;
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}

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

static void testLayout(epcommEpBuffer_t buffer, int64_t experts) {
  Inputs in = makeInputs(1, gRank, tokensOf(gRank), experts, 1);
  epcommEpLayoutInputs_t li = {in.idx, in.n, kTopk, experts};
  epcommEpLayoutOutputs_t lo;
  CHECK_OK(epcommEpGetDispatchLayout(buffer, &li, &lo));
  const int64_t local = experts / gSize;
  CHECK(lo.numTokens == in.n && lo.numRanks == gSize && lo.numExperts == experts);
  for (int r = 0; r < gSize; ++r) {
    int count = 0;
    for (int64_t t = 0; t < in.n; ++t) {
      count += reached(&in, t, r, local);
      CHECK(lo.isTokenInRank[t * gSize + r] == reached(&in, t, r, local));
    }
    CHECK(lo.numTokensPerRank[r] == count);
  }
  for (int64_t e = 0; e < experts; ++e) {
    int count = 0;
    for (int64_t i = 0; i < in.n * kTopk; ++i) count += in.idx[i] == e;
    CHECK(lo.numTokensPerExpert[e] == count);
  }
  freeInputs(&in);
}

/* Every DeepEP check of a normal dispatch of rank-row inputs made with seed. */
static void checkDispatch(const epcommEpDispatchOutputs_t* out, int seed, int64_t experts,
                          int cached) {
  const int64_t local = experts / gSize;
  int64_t row = 0;
  int32_t* perExpert = calloc((size_t)local, sizeof(int32_t));
  for (int s = 0; s < gSize; ++s) {
    Inputs src = makeInputs(seed, s, tokensOf(s), experts, 1);
    CHECK(out->rankPrefix[s] == row);
    for (int64_t t = 0; t < src.n; ++t) {
      for (int k = 0; k < kTopk; ++k) {
        const int64_t e = src.idx[t * kTopk + k];
        if (e >= 0 && e / local == gRank) ++perExpert[e - gRank * local];
      }
      if (!reached(&src, t, gRank, local)) continue;
      const epcommBf16_t* x = out->recvX + row * kHidden;
      CHECK(tokenOfRow(x) == t && out->recvSrcIdx[row] == t);
      for (int c = 0; c < kHidden - 2; ++c) CHECK(fromBf16(x[c]) == (float)s);
      for (int k = 0; k < out->numTopk; ++k) {
        const int64_t e = src.idx[t * kTopk + k];
        const int here = e >= 0 && e / local == gRank;
        CHECK(out->recvTopkIdx[row * kTopk + k] == (here ? e - gRank * local : -1));
        CHECK(out->recvTopkWeights[row * kTopk + k] == (here ? src.w[t * kTopk + k] : 0.0f));
      }
      ++row;
    }
    freeInputs(&src);
  }
  CHECK(out->numRecvTokens == row && out->rankPrefix[gSize] == row);
  CHECK(out->numTopk == (cached ? 0 : kTopk));
  CHECK(out->numLocalExperts == (cached ? 0 : local));
  for (int64_t e = 0; e < out->numLocalExperts; ++e) {
    CHECK(out->numRecvTokensPerExpert[e] == perExpert[e]);
  }
  free(perExpert);
}

static void testNormal(epcommEpBuffer_t buffer, int64_t experts) {
  const int64_t local = experts / gSize;
  Inputs in = makeInputs(2, gRank, tokensOf(gRank), experts, 1);
  epcommEpDispatchInputs_t di;
  memset(&di, 0, sizeof(di)); /* zero = defaults */
  di.x = in.x;
  di.numTokens = in.n;
  di.hidden = kHidden;
  di.topkIdx = in.idx;
  di.topkWeights = in.w;
  di.numTopk = kTopk;
  di.numExperts = experts;
  di.quant = epcommEpQuantNone;
  epcommEpDispatchOutputs_t out;
  CHECK_OK(epcommEpDispatch(buffer, &di, &out));
  CHECK(out.handle != NULL && out.quant == epcommEpQuantNone && out.recvXInt8 == NULL);
  checkDispatch(&out, 2, experts, 0);

  /* combine(dispatch(x)) == x * ranks reached (exact for rank rows), unweighted and weighted. */
  epcommEpCombineInputs_t ci = {out.recvX, kHidden, out.handle, out.recvTopkWeights, kTopk, 0, 0};
  epcommEpCombineOutputs_t co;
  CHECK_OK(epcommEpCombine(buffer, &ci, &co));
  CHECK(co.numTokens == in.n && co.hidden == kHidden && co.numTopk == kTopk);
  for (int64_t t = 0; t < in.n; ++t) {
    const float n = (float)numReached(&in, t, local);
    for (int c = 0; c < kHidden; ++c) {
      CHECK(fromBf16(co.combinedX[t * kHidden + c]) == fromBf16(in.x[t * kHidden + c]) * n);
    }
    for (int k = 0; k < kTopk; ++k) {
      CHECK(co.combinedTopkWeights[t * kTopk + k] ==
            (in.idx[t * kTopk + k] >= 0 ? in.w[t * kTopk + k] : 0.0f));
    }
  }
  ci.weighted = 1;
  CHECK_OK(epcommEpCombine(buffer, &ci, &co));
  for (int64_t t = 0; t < in.n; ++t) {
    float w = 0;
    for (int k = 0; k < kTopk; ++k) w += in.idx[t * kTopk + k] >= 0 ? in.w[t * kTopk + k] : 0.0f;
    for (int c = 0; c < kHidden; ++c) {
      const float want = fromBf16(in.x[t * kHidden + c]) * w;
      CHECK(fabsf(fromBf16(co.combinedX[t * kHidden + c]) - want) <= 1e-2f * fabsf(want) + 1e-6f);
    }
  }

  /* Cached: the handle's layout again, a new handle; the first one's outputs stay valid. */
  epcommEpDispatchInputs_t cached = di;
  cached.handle = out.handle;
  cached.topkIdx = NULL;
  epcommEpDispatchOutputs_t again;
  CHECK_OK(epcommEpDispatch(buffer, &cached, &again));
  CHECK(again.handle != NULL && again.handle != out.handle);
  CHECK(again.numRecvTokens == out.numRecvTokens);
  CHECK(memcmp(again.recvX, out.recvX, (size_t)(out.numRecvTokens * kHidden) * 2) == 0);
  checkDispatch(&again, 2, experts, 1);
  checkDispatch(&out, 2, experts, 0);
  ci.handle = again.handle;
  ci.x = again.recvX;
  ci.topkWeights = NULL;
  ci.numTopk = 0;
  ci.weighted = 0;
  CHECK_OK(epcommEpCombine(buffer, &ci, &co));
  CHECK(co.combinedTopkWeights == NULL);
  for (int64_t t = 0; t < in.n; ++t) {
    CHECK(fromBf16(co.combinedX[t * kHidden]) == (float)gRank * (float)numReached(&in, t, local));
  }
  CHECK_OK(epcommEpHandleDestroy(again.handle));
  CHECK(epcommEpHandleDestroy(again.handle) == epcommInvalidArgument); /* twice */
  /* A destroyed handle passed back is refused on every rank (here: on every rank). */
  cached.handle = again.handle;
  CHECK(epcommEpDispatch(buffer, &cached, &again) == epcommInvalidArgument);
  CHECK(contains(epcommGetLastError(NULL), "not a live handle"));
  CHECK(again.handle == NULL);
  CHECK_OK(epcommEpHandleDestroy(out.handle));
  CHECK_OK(epcommEpHandleDestroy(NULL));
  freeInputs(&in);
}

static void testInt8(epcommEpBuffer_t buffer, int64_t experts, int quant) {
  const int64_t local = experts / gSize;
  Inputs in = makeInputs(3, gRank, tokensOf(gRank), experts, 0);
  epcommEpDispatchInputs_t di = {in.x,    in.n, kHidden, in.idx, in.w, kTopk,
                                 experts, NULL, 1,       quant,  1};
  epcommEpDispatchOutputs_t out;
  CHECK_OK(epcommEpDispatch(buffer, &di, &out));
  const int64_t scales = quant == epcommEpQuantInt8Group ? kHidden / 128 : 1;
  CHECK(out.quant == quant && out.numScales == scales);
  CHECK(out.recvXInt8 != NULL && out.recvScales != NULL && out.recvX != NULL);
  /* int8 * scale == the dequantised rows (to bf16 rounding). */
  for (int64_t r = 0; r < out.numRecvTokens; ++r) {
    for (int c = 0; c < kHidden; ++c) {
      const float q = (float)out.recvXInt8[r * kHidden + c] *
                      out.recvScales[r * scales + c / (kHidden / scales)];
      CHECK(fabsf(fromBf16(out.recvX[r * kHidden + c]) - q) <= fabsf(q) / 128.0f + 1e-6f);
    }
  }
  epcommEpCombineInputs_t ci = {out.recvX, kHidden, out.handle, NULL, 0, 0, 0};
  epcommEpCombineOutputs_t co;
  CHECK_OK(epcommEpCombine(buffer, &ci, &co));
  float* want = malloc((size_t)(in.n * kHidden) * sizeof(float));
  float* got = malloc((size_t)(in.n * kHidden) * sizeof(float));
  for (int64_t t = 0; t < in.n; ++t) {
    for (int c = 0; c < kHidden; ++c) {
      want[t * kHidden + c] = fromBf16(in.x[t * kHidden + c]) * (float)numReached(&in, t, local);
      got[t * kHidden + c] = fromBf16(co.combinedX[t * kHidden + c]);
    }
  }
  CHECK(calcDiff(want, got, in.n * kHidden) < 3e-3);
  free(want);
  free(got);
  /* Int8 without dequantize: no bf16 rows. */
  di.dequantize = 0;
  epcommEpDispatchOutputs_t raw;
  CHECK_OK(epcommEpDispatch(buffer, &di, &raw));
  CHECK(raw.recvX == NULL && raw.recvXInt8 != NULL);
  CHECK(memcmp(raw.recvXInt8, out.recvXInt8, (size_t)(out.numRecvTokens * kHidden)) == 0);
  CHECK_OK(epcommEpHandleDestroy(raw.handle));
  CHECK_OK(epcommEpHandleDestroy(out.handle));
  freeInputs(&in);
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
  if (gRank == bad) in.idx[5] = experts + 3; /* token 1, slot 1 */
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
