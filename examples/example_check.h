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

#endif
