/* epcommEpDispatchEx's extras (ep/epcomm_ep.h), from C: DeepEP's layout arguments given equal
 * the topk path's results and are used as given, a pre-quantised input (strided scales)
 * arrives bitwise as the library's own quantisation, numWorstTokens pads every row array,
 * structSize versioning, and bad extras on one rank fail on every rank while the Buffer
 * stays usable. Part of ep_c_api_test (main in c_api_test.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ep/c_api_test_util.h"

static epcommEpDispatchExtras_t noExtras(void) {
  epcommEpDispatchExtras_t ex;
  memset(&ex, 0, sizeof(ex));
  ex.structSize = sizeof(ex);
  return ex;
}

static int64_t allMax(epcommComm_t comm, int64_t v) {
  int64_t out = v;
  CHECK_OK(epcommAllReduce(&v, &out, 1, epcommInt64, epcommMax, comm));
  return out;
}

/* The first `rows` rows of two dispatches' outputs are the same, bit for bit. */
static void checkSameRows(const epcommEpDispatchOutputs_t* a, const epcommEpDispatchOutputs_t* b,
                          int64_t rows) {
  const size_t n = (size_t)rows;
  CHECK((a->recvX == NULL) == (b->recvX == NULL) && a->numTopk == b->numTopk);
  if (a->recvX && b->recvX) CHECK(memcmp(a->recvX, b->recvX, n * kHidden * 2) == 0);
  if (a->recvXInt8 && b->recvXInt8) CHECK(memcmp(a->recvXInt8, b->recvXInt8, n * kHidden) == 0);
  if (a->recvScales && b->recvScales && a->numScales == b->numScales) {
    CHECK(memcmp(a->recvScales, b->recvScales, n * (size_t)a->numScales * 4) == 0);
  }
  CHECK(memcmp(a->recvTopkIdx, b->recvTopkIdx, n * (size_t)a->numTopk * 8) == 0);
  CHECK(memcmp(a->recvTopkWeights, b->recvTopkWeights, n * (size_t)a->numTopk * 4) == 0);
  CHECK(memcmp(a->recvSrcIdx, b->recvSrcIdx, n * 4) == 0);
}

static void testLayoutGiven(epcommEpBuffer_t buffer, int64_t experts) {
  Inputs in = makeInputs(20, gRank, tokensOf(gRank), experts, 0);
  epcommEpLayoutInputs_t li = {in.idx, in.n, kTopk, experts};
  epcommEpLayoutOutputs_t lo;
  CHECK_OK(epcommEpGetDispatchLayout(buffer, &li, &lo));
  epcommEpDispatchInputs_t di = {in.x, in.n, kHidden,           in.idx, in.w, kTopk, experts,
                                 NULL, 2,    epcommEpQuantNone, 0};
  epcommEpDispatchOutputs_t derived, given;
  CHECK_OK(epcommEpDispatch(buffer, &di, &derived));
  epcommEpDispatchExtras_t ex = noExtras();
  ex.isTokenInRank = lo.isTokenInRank;
  ex.numTokensPerExpert = lo.numTokensPerExpert;
  CHECK_OK(epcommEpDispatchEx(buffer, &di, &ex, &given));
  CHECK(given.numRecvTokens == derived.numRecvTokens);
  CHECK(given.numLocalExperts == derived.numLocalExperts);
  for (int64_t e = 0; e < given.numLocalExperts; ++e) {
    CHECK(given.numRecvTokensPerExpert[e] == derived.numRecvTokensPerExpert[e]);
  }
  checkSameRows(&given, &derived, derived.numRecvTokens);
  CHECK_OK(epcommEpHandleDestroy(given.handle));

  /* An older caller's struct that ends after the layout fields: what lies beyond its
   * structSize is not read (here values that would be refused). */
  ex.structSize = offsetof(epcommEpDispatchExtras_t, xInt8);
  ex.xInt8 = (const int8_t*)in.idx;
  ex.numWorstTokens = -7;
  CHECK_OK(epcommEpDispatchEx(buffer, &di, &ex, &given));
  CHECK(given.numRecvTokens == derived.numRecvTokens);
  checkSameRows(&given, &derived, derived.numRecvTokens);
  CHECK_OK(epcommEpHandleDestroy(given.handle));

  /* Used as given: every token marked for every rank reaches every rank, whatever topkIdx
   * says, grouped by source in token order. */
  uint8_t* all = malloc((size_t)(in.n * gSize + 1));
  memset(all, 1, (size_t)(in.n * gSize + 1));
  ex = noExtras();
  ex.isTokenInRank = all;
  ex.numTokensPerExpert = lo.numTokensPerExpert;
  CHECK_OK(epcommEpDispatchEx(buffer, &di, &ex, &given));
  int64_t row = 0;
  for (int s = 0; s < gSize; ++s) {
    Inputs src = makeInputs(20, s, tokensOf(s), experts, 0);
    CHECK(given.rankPrefix[s] == row);
    for (int64_t t = 0; t < src.n && row < given.numRecvTokens; ++t, ++row) {
      CHECK(given.recvSrcIdx[row] == t);
      CHECK(memcmp(given.recvX + row * kHidden, src.x + t * kHidden, kHidden * 2) == 0);
    }
    freeInputs(&src);
  }
  CHECK(given.numRecvTokens == row);
  CHECK_OK(epcommEpHandleDestroy(given.handle));
  CHECK_OK(epcommEpHandleDestroy(derived.handle));
  free(all);
  freeInputs(&in);
}

/* The library's own quantisation of this rank's tokens as int8 rows [n, kHidden] and
 * row-major scales [n, numScales]: a dispatch that keeps every token here (rows in token
 * order). */
static void quantiseHere(epcommEpBuffer_t buffer, const Inputs* in, int quant, int8_t* q,
                         float* scales) {
  uint8_t* self = calloc((size_t)(in->n * gSize + 1), 1);
  int32_t* perExpert = calloc((size_t)in->experts + 1, sizeof(int32_t));
  for (int64_t t = 0; t < in->n; ++t) self[t * gSize + gRank] = 1;
  epcommEpDispatchExtras_t ex = noExtras();
  ex.isTokenInRank = self;
  ex.numTokensPerExpert = perExpert;
  epcommEpDispatchInputs_t di = {in->x,       in->n, kHidden, in->idx, in->w, kTopk,
                                 in->experts, NULL,  1,       quant,   0};
  epcommEpDispatchOutputs_t here;
  CHECK_OK(epcommEpDispatchEx(buffer, &di, &ex, &here));
  CHECK(here.numRecvTokens == in->n && here.quant == quant);
  for (int64_t t = 0; t < here.numRecvTokens; ++t) CHECK(here.recvSrcIdx[t] == t);
  memcpy(q, here.recvXInt8, (size_t)(in->n * kHidden));
  memcpy(scales, here.recvScales, (size_t)(in->n * here.numScales) * sizeof(float));
  CHECK_OK(epcommEpHandleDestroy(here.handle));
  free(perExpert);
  free(self);
}

static void testPreQuantised(epcommEpBuffer_t buffer, int64_t experts, int quant) {
  Inputs in = makeInputs(21, gRank, tokensOf(gRank), experts, 0);
  const int64_t n = in.n, numScales = quant == epcommEpQuantInt8Group ? kHidden / 128 : 1;
  int8_t* q = malloc((size_t)(n * kHidden + 1));
  float* rowMajor = malloc((size_t)(n * numScales + 1) * sizeof(float));
  quantiseHere(buffer, &in, quant, q, rowMajor);
  /* Strided scales: column-major with a gap (group stride n + 3), or every other float. */
  const int64_t tokenStride = quant == epcommEpQuantInt8Group ? 1 : 2;
  const int64_t groupStride = quant == epcommEpQuantInt8Group ? n + 3 : 1;
  const size_t cells = (size_t)(numScales * (n + 3) + 2 * n + 1);
  float* strided = malloc(cells * sizeof(float));
  for (size_t i = 0; i < cells; ++i) strided[i] = -1.0f;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t g = 0; g < numScales; ++g) {
      strided[t * tokenStride + g * groupStride] = rowMajor[t * numScales + g];
    }
  }

  /* The reference: the library quantises x itself. */
  epcommEpDispatchInputs_t di = {in.x, n, kHidden, in.idx, in.w, kTopk, experts, NULL, 1, quant, 0};
  epcommEpDispatchOutputs_t want, got;
  CHECK_OK(epcommEpDispatch(buffer, &di, &want));
  epcommEpDispatchInputs_t pre = di;
  pre.x = NULL; /* not read */
  epcommEpDispatchExtras_t ex = noExtras();
  ex.xInt8 = q;
  ex.xScales = strided;
  ex.scalesTokenStride = tokenStride;
  ex.scalesGroupStride = groupStride;
  for (int layout = 0; layout < 2; ++layout) {
    if (layout == 1) { /* both strides 0: row-major */
      ex.xScales = rowMajor;
      ex.scalesTokenStride = 0;
      ex.scalesGroupStride = 0;
    }
    CHECK_OK(epcommEpDispatchEx(buffer, &pre, &ex, &got));
    CHECK(got.numRecvTokens == want.numRecvTokens && got.quant == quant);
    CHECK(got.numScales == numScales && got.recvX == NULL);
    checkSameRows(&got, &want, want.numRecvTokens);
    CHECK_OK(epcommEpHandleDestroy(got.handle));
  }
  CHECK_OK(epcommEpHandleDestroy(want.handle));
  free(strided);
  free(rowMajor);
  free(q);
  freeInputs(&in);
}

static void testWorstTokens(epcommEpBuffer_t buffer, epcommComm_t comm, int64_t experts) {
  Inputs in = makeInputs(22, gRank, tokensOf(gRank), experts, 0);
  const int quants[2] = {epcommEpQuantNone, epcommEpQuantInt8Group};
  for (int i = 0; i < 2; ++i) {
    epcommEpDispatchInputs_t di = {in.x,    in.n, kHidden, in.idx,    in.w, kTopk,
                                   experts, NULL, 1,       quants[i], 1};
    epcommEpDispatchOutputs_t plain, padded;
    CHECK_OK(epcommEpDispatch(buffer, &di, &plain));
    const int64_t n = plain.numRecvTokens, worst = allMax(comm, n) + 3;
    epcommEpDispatchExtras_t ex = noExtras();
    ex.numWorstTokens = worst;
    CHECK_OK(epcommEpDispatchEx(buffer, &di, &ex, &padded));
    CHECK(padded.numRecvTokens == n && padded.numLocalExperts == 0);
    CHECK(padded.numTopk == kTopk && padded.quant == quants[i]);
    checkSameRows(&padded, &plain, n);
    /* Rows n .. worst: padding (zeros, topk ids -1, weights 0). */
    for (int64_t r = n; r < worst; ++r) {
      for (int c = 0; c < kHidden; ++c) {
        CHECK(padded.recvX[r * kHidden + c] == 0);
        if (padded.recvXInt8) CHECK(padded.recvXInt8[r * kHidden + c] == 0);
      }
      for (int64_t g = 0; g < padded.numScales; ++g) {
        CHECK(padded.recvScales[r * padded.numScales + g] == 0.0f);
      }
      for (int k = 0; k < kTopk; ++k) {
        CHECK(padded.recvTopkIdx[r * kTopk + k] == -1);
        CHECK(padded.recvTopkWeights[r * kTopk + k] == 0.0f);
      }
    }
    CHECK_OK(epcommEpHandleDestroy(padded.handle));
    CHECK_OK(epcommEpHandleDestroy(plain.handle));
  }
  freeInputs(&in);
}

/* A bad extras field on rank `bad` only: epcommInvalidArgument on every rank, no handle; the
 * message names the problem on every rank (everywhere) or on the bad rank. */
static void expectRefused(epcommEpBuffer_t buffer, const epcommEpDispatchInputs_t* di,
                          const epcommEpDispatchExtras_t* badExtras, int bad, const char* what,
                          int everywhere) {
  const epcommEpDispatchExtras_t fine = noExtras();
  epcommEpDispatchOutputs_t out;
  const epcommResult_t rc = epcommEpDispatchEx(buffer, di, gRank == bad ? badExtras : &fine, &out);
  CHECK(rc == epcommInvalidArgument && out.handle == NULL);
  if (everywhere || gRank == bad) {
    const int named = contains(epcommGetLastError(NULL), what);
    CHECK(named);
    if (!named)
      fprintf(stderr, "rank %d: '%s' not in: %s\n", gRank, what, epcommGetLastError(NULL));
  }
}

static void testExtrasErrors(epcommEpBuffer_t buffer, epcommComm_t comm, int64_t experts) {
  Inputs in = makeInputs(23, gRank, tokensOf(gRank), experts, 0);
  epcommEpDispatchInputs_t di = {in.x, in.n, kHidden,           in.idx, in.w, kTopk, experts,
                                 NULL, 1,    epcommEpQuantNone, 0};
  epcommEpDispatchOutputs_t plain;
  CHECK_OK(epcommEpDispatch(buffer, &di, &plain));
  /* The bad rank: the last one; for too few worst rows the last one that receives rows
   * (skewed runs: not the last rank). */
  const int bad = gSize - 1;
  const int receiver = (int)allMax(comm, plain.numRecvTokens > 0 ? gRank : -1);
  char what[160];

  epcommEpDispatchExtras_t ex = noExtras();
  ex.xInt8 = (const int8_t*)in.x; /* any rows: refused before they are read */
  ex.xScales = in.w;
  expectRefused(buffer, &di, &ex, bad, "xInt8 (pre-quantised x) is given but quant is none", 1);
  ex = noExtras();
  ex.numWorstTokens = -3;
  expectRefused(buffer, &di, &ex, bad, "numWorstTokens -3 must be >= 0", 1);
  if (receiver >= 0) { /* the others pass no numWorstTokens */
    ex.numWorstTokens = allMax(comm, gRank == receiver ? plain.numRecvTokens : 0) - 1;
    snprintf(what, sizeof(what), "numWorstTokens %lld is smaller than the %lld rows",
             (long long)ex.numWorstTokens, (long long)ex.numWorstTokens + 1);
    expectRefused(buffer, &di, &ex, receiver, what, 1);
  }
  ex = noExtras();
  ex.isTokenInRank = (const uint8_t*)in.idx;
  expectRefused(buffer, &di, &ex, bad, "isTokenInRank and numTokensPerExpert go together", 1);
  ex = noExtras();
  ex.numWorstTokens = (int64_t)1 << 40;
  expectRefused(buffer, &di, &ex, bad, "extras.numWorstTokens 1099511627776 does not fit", 0);
  ex = noExtras();
  ex.structSize = 4;
  expectRefused(buffer, &di, &ex, bad, "extras.structSize 4 is not a struct size", 0);
  ex.structSize = 0;
  expectRefused(buffer, &di, &ex, bad, "extras.structSize 0 is not a struct size", 0);
  ex = noExtras();
  ex.reserved = 1;
  expectRefused(buffer, &di, &ex, bad, "extras.reserved 1 must be 0", 0);

  /* A newer caller's larger struct: accepted while the fields this library lacks are 0. */
  struct {
    epcommEpDispatchExtras_t known;
    uint64_t newer;
  } larger;
  memset(&larger, 0, sizeof(larger));
  larger.known.structSize = sizeof(larger);
  larger.newer = 5;
  expectRefused(buffer, &di, &larger.known, bad, "an option this library does not have", 0);
  larger.newer = 0;
  epcommEpDispatchOutputs_t out;
  CHECK_OK(epcommEpDispatchEx(buffer, &di, &larger.known, &out));
  CHECK(out.numRecvTokens == plain.numRecvTokens);
  CHECK_OK(epcommEpHandleDestroy(out.handle));

  /* Still usable: the same dispatch gives the same rows. */
  CHECK_OK(epcommEpDispatchEx(buffer, &di, NULL, &out));
  CHECK(out.numRecvTokens == plain.numRecvTokens);
  checkSameRows(&out, &plain, plain.numRecvTokens);
  CHECK_OK(epcommEpHandleDestroy(out.handle));
  CHECK_OK(epcommEpHandleDestroy(plain.handle));
  freeInputs(&in);
}

void testDispatchExtras(epcommEpBuffer_t buffer, epcommComm_t comm, int64_t experts) {
  testLayoutGiven(buffer, experts);
  testPreQuantised(buffer, experts, epcommEpQuantInt8Group);
  testPreQuantised(buffer, experts, epcommEpQuantInt8PerToken);
  testWorstTokens(buffer, comm, experts);
  testExtrasErrors(buffer, comm, experts);
}
