/* The EP C API's layout and normal mode (ep/epcomm_ep.h), from C: DeepEP's oracles through
 * the C structs (layout counts, rows that carry their source rank and token index,
 * combine(dispatch(x)) == x * ranks reached, cached dispatch, int8). Part of ep_c_api_test
 * (main in c_api_test.c). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ep/c_api_test_util.h"

void testLayout(epcommEpBuffer_t buffer, int64_t experts) {
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

void testNormal(epcommEpBuffer_t buffer, int64_t experts) {
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

void testInt8(epcommEpBuffer_t buffer, int64_t experts, int quant) {
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
