/* Built against an installed epcomm with pkg-config: one all-reduce on the C API. */
#include <epcomm/comm/epcomm.h>
#include <stdio.h>

int main(void) {
  epcommComm_t comm = NULL;
  if (epcommCommInitFromEnv(&comm, NULL) != epcommSuccess) {
    fprintf(stderr, "init failed: %s\n", epcommGetLastError(NULL));
    return 1;
  }
  int size = 0;
  epcommCommCount(comm, &size);
  long long v[3] = {1, 2, 3};
  if (epcommAllReduce(v, v, 3, epcommInt64, epcommSum, comm) != epcommSuccess) {
    fprintf(stderr, "allreduce failed: %s\n", epcommGetLastError(comm));
    return 1;
  }
  epcommCommDestroy(comm);
  const int ok = v[0] == size && v[1] == 2LL * size && v[2] == 3LL * size;
  printf("c consumer: size %d %s\n", size, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
