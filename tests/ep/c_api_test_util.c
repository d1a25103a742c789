/* Helpers of the EP C API test (see c_api_test_util.h). */
#include "tests/ep/c_api_test_util.h"

#include <string.h>

int gRank = 0, gSize = 1;
int gSkewed = 0;
int64_t gFailed = 0, gChecks = 0;

epcommBf16_t toBf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);
  return (epcommBf16_t)(u >> 16);
}
float fromBf16(epcommBf16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

static uint32_t nextRandom(uint64_t* s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

Inputs makeInputs(int seed, int rank, int64_t n, int64_t experts, int rankRows) {
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
void freeInputs(Inputs* in) {
  free(in->x);
  free(in->idx);
  free(in->w);
}
int tokenOfRow(const epcommBf16_t* row) {
  return (int)fromBf16(row[kHidden - 1]) + 256 * (int)fromBf16(row[kHidden - 2]);
}
int64_t tokensOf(int rank) {
  return 40 + 5 * rank;
}
int64_t llTokensOf(int rank) {
  return 17 + 4 * rank < kCapacity ? 17 + 4 * rank : kCapacity;
}
int reached(const Inputs* in, int64_t t, int rank, int64_t local) {
  for (int k = 0; k < kTopk; ++k) {
    const int64_t e = in->idx[t * kTopk + k];
    if (e >= 0 && e / local == rank) return 1;
  }
  return 0;
}
int numReached(const Inputs* in, int64_t t, int64_t local) {
  int n = 0;
  for (int r = 0; r < gSize; ++r) n += reached(in, t, r, local);
  return n;
}
int contains(const char* haystack, const char* needle) {
  return strstr(haystack, needle) != NULL;
}
double calcDiff(const float* x, const float* y, int64_t n) {
  double xy = 0, xx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = x[i] + 1.0, b = y[i] + 1.0;
    xy += a * b;
    xx += a * a + b * b;
  }
  return xx == 0 ? 0 : 1 - 2 * xy / xx;
}
