/* The floor of a small 2-rank all-reduce on this machine: the one-shot with nothing around
 * it (no library, no call check, no error path). Two processes pinned to cpus 0 and 1 share
 * an anonymous mapping; per call each copies its f32 input into its slot (two slots by
 * parity), release-stores the call's number in its flag line, spins on the peer's, asks for
 * every line of the peer's slot at once, then sums rank 0's and rank 1's values into its
 * output. "sync" runs the flags alone; "bf16" sums bf16 values instead (in f32, rounded to
 * nearest even, no NaN handling). Prints the median and best of 7 runs of 20000 calls.
 * Usage: allreduce_floor BYTES [sync|bf16]
 *   gcc -O3 -march=native scripts/allreduce_floor.c -o /tmp/allreduce_floor
 *   /tmp/allreduce_floor 2048 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kSlotBytes = 64 << 10, kCalls = 20000, kRuns = 7 };

struct Shared {
  _Alignas(64) uint64_t flag[2][2][8]; /* [rank][parity], one line each */
  _Alignas(64) float slot[2][2][kSlotBytes / 4];
};

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* out[i] = bf16(float(a[i]) + float(b[i])), round to nearest even. */
static void sumBf16(uint16_t* out, const uint16_t* a, const uint16_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const uint32_t ua = (uint32_t)a[i] << 16, ub = (uint32_t)b[i] << 16;
    float fa, fb;
    memcpy(&fa, &ua, 4);
    memcpy(&fb, &ub, 4);
    const float sum = fa + fb;
    uint32_t bits;
    memcpy(&bits, &sum, 4);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    out[i] = (uint16_t)(bits >> 16);
  }
}

static int cmp(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: allreduce_floor BYTES [sync]\n");
    return 2;
  }
  const size_t bytes = (size_t)atol(argv[1]);
  const int syncOnly = argc > 2 && strcmp(argv[2], "sync") == 0;
  const int bf16 = argc > 2 && strcmp(argv[2], "bf16") == 0;
  if (bytes == 0 || bytes > kSlotBytes || bytes % 64) {
    fprintf(stderr, "BYTES: a multiple of 64 up to %d\n", kSlotBytes);
    return 2;
  }
  struct Shared* sh =
      mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (sh == MAP_FAILED) return 1;
  memset(sh, 0, sizeof *sh);
  const pid_t child = fork();
  const int me = child == 0 ? 1 : 0, peer = 1 - me;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(me, &set);
  sched_setaffinity(0, sizeof set, &set);
  const size_t n = bytes / 4;
  float* in = aligned_alloc(64, bytes);
  float* out = aligned_alloc(64, bytes);
  for (size_t i = 0; i < n; ++i) in[i] = (float)me + (float)i * 0.5f;
  if (bf16) { /* normal bf16 values in [1, 2): no denormal or NaN in the sums */
    for (size_t i = 0; i < 2 * n; ++i) ((uint16_t*)in)[i] = (uint16_t)(0x3f80u + (i + me) % 64);
  }
  double us[kRuns];
  uint64_t call = 0;
  for (int run = 0; run < kRuns; ++run) {
    const double t0 = now();
    for (int c = 0; c < kCalls; ++c) {
      const int par = (int)(++call & 1);
      if (!syncOnly) memcpy(sh->slot[me][par], in, bytes);
      __atomic_store_n(&sh->flag[me][par][0], call, __ATOMIC_RELEASE);
      /* Bounded: a peer gone for about a minute ends the probe. */
      for (long spin = 0; __atomic_load_n(&sh->flag[peer][par][0], __ATOMIC_ACQUIRE) < call;
           ++spin) {
        if (spin > 20000000000L) return 3;
        __builtin_ia32_pause();
      }
      if (syncOnly) continue;
      const char* p = (const char*)sh->slot[peer][par];
      for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
      const float* a = sh->slot[0][par];
      const float* b = sh->slot[1][par];
      if (bf16) {
        sumBf16((uint16_t*)out, (const uint16_t*)a, (const uint16_t*)b, 2 * n);
      } else {
        for (size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
      }
    }
    us[run] = (now() - t0) * 1e6 / kCalls;
  }
  int wrong = 0;
  for (size_t i = 0; i < n && !syncOnly && !bf16; ++i) wrong += out[i] != 1.0f + (float)i;
  if (me == 1) return wrong != 0;
  int status = 0;
  waitpid(child, &status, 0);
  qsort(us, kRuns, sizeof us[0], cmp);
  printf("%zu B %s: median %.3f us, best %.3f us%s\n", bytes,
         syncOnly ? "sync only"
         : bf16   ? "one-shot bf16"
                  : "one-shot f32",
         us[kRuns / 2], us[0], wrong || status ? " WRONG" : "");
  munmap(sh, sizeof *sh);
  return wrong != 0;
}
