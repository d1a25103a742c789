/* The memory-bandwidth floor of a host all-reduce: P processes at once each memcpy (and
 * memset) an N MiB buffer 20 times and print their best time. Usage: memcpy_probe N P.
 *   gcc -O2 scripts/memcpy_probe.c -o /tmp/memcpy_probe && /tmp/memcpy_probe 64 2 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: memcpy_probe MiB processes\n");
    return 2;
  }
  const size_t n = (size_t)atol(argv[1]) << 20;
  const int procs = atoi(argv[2]);
  int p = 0;
  for (; p + 1 < procs; ++p) {
    if (fork() == 0) break; /* children measure as p; the parent measures last */
  }
  char* a = malloc(n);
  char* b = malloc(n);
  if (!a || !b) return 1;
  memset(a, 1, n);
  memset(b, 2, n);
  double copy = 1e9, set = 1e9;
  for (int r = 0; r < 20; ++r) {
    double t = now();
    memcpy(b, a, n);
    t = now() - t;
    if (t < copy) copy = t;
    t = now();
    memset(b, r, n);
    t = now() - t;
    if (t < set) set = t;
  }
  printf("process %d: memcpy %zu MiB best %.3f ms (%.1f GB/s), memset %.3f ms\n", p, n >> 20,
         copy * 1e3, (double)n / copy / 1e9, set * 1e3);
  if (p + 1 == procs) {
    while (wait(NULL) > 0) {
    }
  }
  return 0;
}
