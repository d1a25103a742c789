/* Built against an installed epcomm with pkg-config epcomm-ep (C11, -pedantic -Werror): one
 * normal dispatch + combine on the EP C API; every row comes back times the ranks it reached. */
#include <epcomm/ep/epcomm_ep.h>
#include <stdio.h>
#include <string.h>

enum { kTokens = 6, kHidden = 128, kTopk = 2 };

int main(void) {
  epcommComm_t comm = NULL;
  epcommEpBuffer_t buffer = NULL;
  epcommEpConfig_t config = EPCOMM_EP_CONFIG_INITIALIZER;
  config.normalBufferMiB = 16;
  if (epcommCommInitFromEnv(&comm, NULL) != epcommSuccess ||
      epcommEpBufferCreate(comm, &config, &buffer) != epcommSuccess) {
    fprintf(stderr, "init failed: %s\n", epcommGetLastError(NULL));
    return 1;
  }
  int rank = 0, size = 0;
  epcommCommUserRank(comm, &rank);
  epcommCommCount(comm, &size);
  static epcommBf16_t x[kTokens * kHidden];
  int64_t idx[kTokens * kTopk];
  for (int t = 0; t < kTokens; ++t) {
    for (int c = 0; c < kHidden; ++c) x[t * kHidden + c] = 0x3f80; /* 1.0 */
    idx[t * kTopk] = t % (2 * size);                               /* 2 experts per rank */
    idx[t * kTopk + 1] = (t + 1) % (2 * size); /* another expert, maybe another rank */
  }
  epcommEpDispatchInputs_t di;
  memset(&di, 0, sizeof(di));
  di.x = x;
  di.numTokens = kTokens;
  di.hidden = kHidden;
  di.topkIdx = idx;
  di.numTopk = kTopk;
  di.numExperts = 2 * size;
  di.quant = epcommEpQuantNone;
  epcommEpDispatchOutputs_t d;
  epcommEpCombineOutputs_t c;
  int wrong = 0;
  if (epcommEpDispatch(buffer, &di, &d) != epcommSuccess) {
    fprintf(stderr, "dispatch failed: %s\n", epcommGetLastError(comm));
    return 1;
  }
  epcommEpCombineInputs_t ci = {d.recvX, kHidden, d.handle, NULL, 0, 0, 0};
  if (epcommEpCombine(buffer, &ci, &c) != epcommSuccess) {
    fprintf(stderr, "combine failed: %s\n", epcommGetLastError(comm));
    return 1;
  }
  for (int t = 0; t < kTokens; ++t) {
    const int r0 = (int)(idx[t * kTopk] / 2), r1 = (int)(idx[t * kTopk + 1] / 2);
    const epcommBf16_t want = r0 == r1 ? 0x3f80 : 0x4000; /* 1.0 or 2.0 */
    for (int ch = 0; ch < kHidden; ++ch) wrong += c.combinedX[t * kHidden + ch] != want;
  }
  epcommEpHandleDestroy(d.handle);
  epcommEpBufferDestroy(buffer);
  epcommCommDestroy(comm);
  printf("ep c consumer: rank %d of %d %s\n", rank, size, wrong ? "WRONG" : "ok");
  return wrong ? 1 : 0;
}
