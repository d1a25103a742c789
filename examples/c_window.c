/* Windows and registered memory through the C API: every rank puts a message into the next
 * rank's window and signals it, waits for the one from the previous rank, then all-reduces
 * inside memory from epcommMemAlloc. Exit 0 on success. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <epcomm/comm/epcomm.h>

#include "example_check.h"

int main(void) {
  epcommComm_t comm = NULL;
  int rank = 0, size = 0;
  if (exampleInit(&comm, &rank, &size) != 0) return 1;
  const int next = (rank + 1) % size;
  const int prev = (rank + size - 1) % size;
  int wrong = 0;

  /* Window: 64 bytes per rank for the message, one signal slot. */
  epcommWindow_t win = NULL;
  void* base = NULL;
  EXAMPLE_CHECK(epcommWindowCreate(comm, 64, 1, &win, &base));
  char message[64];
  snprintf(message, sizeof(message), "hello from rank %d", rank);
  EXAMPLE_CHECK(epcommWindowPut(win, next, 0, message, sizeof(message)));
  EXAMPLE_CHECK(epcommWindowSignal(win, next, 0, 1, epcommSignalAdd));
  EXAMPLE_CHECK(epcommWindowWaitSignal(win, 0, 1));
  char want[64];
  snprintf(want, sizeof(want), "hello from rank %d", prev);
  char got[64];
  memcpy(got, base, sizeof(got)); /* the window's memory goes with the window */
  got[63] = '\0';
  wrong += strcmp(got, want) != 0;
  uint64_t slot = 0;
  EXAMPLE_CHECK(epcommWindowReadSignal(win, 0, &slot));
  wrong += slot != 1;
  /* A put to a rank that does not exist is an error with a message, not a crash. */
  if (epcommWindowPut(win, size, 0, message, 1) != epcommInvalidArgument) ++wrong;
  EXAMPLE_CHECK(epcommWindowDestroy(win));

  /* Registered memory: collectives use it like any buffer. */
  int* data = NULL;
  EXAMPLE_CHECK(epcommMemAlloc(comm, 1000 * sizeof(int), (void**)&data));
  for (int i = 0; i < 1000; ++i) data[i] = rank + i;
  EXAMPLE_CHECK(epcommAllReduce(data, data, 1000, epcommInt32, epcommSum, comm));
  for (int i = 0; i < 1000; ++i) wrong += data[i] != size * (size - 1) / 2 + size * i;
  EXAMPLE_CHECK(epcommMemFree(comm, data));

  printf("c_window rank %d of %d: got \"%s\", %d wrong\n", rank, size, got, wrong);
  EXAMPLE_CHECK(epcommCommDestroy(comm));
  return wrong == 0 ? 0 : 1;
}
