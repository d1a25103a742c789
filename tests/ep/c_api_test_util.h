/* Shared by the EP C API test's files (tests/ep/c_api_test.c: main, Buffer, low-latency,
 * errors; c_api_normal_test.c: layout and normal mode; c_api_dispatch_ex_test.c:
 * epcommEpDispatchEx's extras): the rank globals, CHECK
 * macros, bf16 conversion and DeepEP-style inputs that every rank can regenerate. */
#ifndef EPCOMM_TESTS_EP_C_API_TEST_UTIL_H_
#define EPCOMM_TESTS_EP_C_API_TEST_UTIL_H_

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ep/epcomm_ep.h"

extern int gRank, gSize;
/* --skewed: rank 0 has no tokens (sends nothing) and no token goes to the last rank's
 * experts (it receives nothing), so every check also covers empty arrays. */
extern int gSkewed;
extern int64_t gFailed, gChecks;

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

typedef struct {
  int64_t n, experts;
  epcommBf16_t* x; /* [n, kHidden] */
  int64_t* idx;    /* [n, kTopk] */
  float* w;        /* [n, kTopk] */
} Inputs;

epcommBf16_t toBf16(float f);
float fromBf16(epcommBf16_t b);
/* Every rank can regenerate every rank's inputs. rankRows: every channel = the source rank
 * but the last two = token index (lo, hi); else values in [-2, 2). Distinct experts per
 * token, ~10% of slots -1, every 17th token routed nowhere. */
Inputs makeInputs(int seed, int rank, int64_t n, int64_t experts, int rankRows);
void freeInputs(Inputs* in);
int tokenOfRow(const epcommBf16_t* row);
int64_t tokensOf(int rank);   /* normal-mode tokens of a rank */
int64_t llTokensOf(int rank); /* low-latency tokens of a rank (<= kCapacity) */
/* Whether token t of in goes to rank (local experts per rank), and to how many ranks. */
int reached(const Inputs* in, int64_t t, int rank, int64_t local);
int numReached(const Inputs* in, int64_t t, int64_t local);
int contains(const char* haystack, const char* needle);
/* DeepEP's calc_diff on x + 1, y + 1. */
double calcDiff(const float* x, const float* y, int64_t n);

/* The normal-mode groups (c_api_normal_test.c). */
void testLayout(epcommEpBuffer_t buffer, int64_t experts);
void testNormal(epcommEpBuffer_t buffer, int64_t experts);
void testInt8(epcommEpBuffer_t buffer, int64_t experts, int quant);
/* epcommEpDispatchEx's extras (c_api_dispatch_ex_test.c). */
void testDispatchExtras(epcommEpBuffer_t buffer, epcommComm_t comm, int64_t experts);

#endif /* EPCOMM_TESTS_EP_C_API_TEST_UTIL_H_ */
