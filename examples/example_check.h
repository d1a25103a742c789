/* EXAMPLE_CHECK(call): the examples' error handling. A failed epcomm call prints the call,
 * the result's name and the library's message (which names the rank and what was wrong),
 * and returns 1 from the enclosing function. */
#ifndef EPCOMM_EXAMPLE_CHECK_H
#define EPCOMM_EXAMPLE_CHECK_H

#include <stdio.h>

#include <epcomm/comm/epcomm.h>

#define EXAMPLE_CHECK(call)                                                    \
  do {                                                                         \
    epcommResult_t rc_ = (call);                                               \
    if (rc_ != epcommSuccess) {                                                \
      fprintf(stderr, "%s failed: %s: %s\n", #call, epcommGetErrorString(rc_), \
              epcommGetLastError(NULL));                                       \
      return 1;                                                                \
    }                                                                          \
  } while (0)

/* Makes *comm from the environment (mpirun, or EPCOMM_INIT_ADDR + EPCOMM_RANK + EPCOMM_SIZE)
 * and reads this rank and the rank count. Returns 0 on success. */
static inline int exampleInit(epcommComm_t* comm, int* rank, int* size) {
  epcommConfig_t config = EPCOMM_CONFIG_INITIALIZER;
  EXAMPLE_CHECK(epcommCommInitFromEnv(comm, &config));
  EXAMPLE_CHECK(epcommCommUserRank(*comm, rank));
  EXAMPLE_CHECK(epcommCommCount(*comm, size));
  return 0;
}

#endif
