/* A C engine's view of epcomm: init from the environment (mpirun, or EPCOMM_INIT_ADDR),
 * all-reduce a vector, check it, all-gather the ranks, and clean up. Exit 0 on success. */
#include <stdio.h>
#include <stdlib.h>

#include <epcomm/comm/epcomm.h>

#include "example_check.h"

int main(void) {
  int version = 0;
  EXAMPLE_CHECK(epcommGetVersion(&version));

  epcommComm_t comm = NULL;
  int rank = 0, size = 0;
  if (exampleInit(&comm, &rank, &size) != 0) return 1;

  enum { kCount = 1001 };
  float* data = malloc(kCount * sizeof(float));
  for (int i = 0; i < kCount; ++i) data[i] = (float)(rank + 1) * (float)(i % 13);
  EXAMPLE_CHECK(epcommAllReduce(data, data, kCount, epcommFloat32, epcommSum, comm));
  const float ranksSum = (float)size * (float)(size + 1) / 2.0f;
  int wrong = 0;
  for (int i = 0; i < kCount; ++i) wrong += data[i] != ranksSum * (float)(i % 13);

  int* ranks = malloc((size_t)size * sizeof(int));
  EXAMPLE_CHECK(epcommAllGather(&rank, ranks, 1, epcommInt32, comm));
  for (int r = 0; r < size; ++r) wrong += ranks[r] != r;

  /* A bad call is an error with a message, not a crash. */
  epcommResult_t bad = epcommAllReduce(NULL, data, 4, epcommFloat32, epcommSum, comm);
  if (bad != epcommInvalidArgument) ++wrong;

  printf("c_allreduce rank %d of %d: epcomm %d, %d wrong\n", rank, size, version, wrong);
  free(ranks);
  free(data);
  EXAMPLE_CHECK(epcommCommDestroy(comm));
  return wrong == 0 ? 0 : 1;
}
