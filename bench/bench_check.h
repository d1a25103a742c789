// Shapes and verifiable data for coll-bench. Sizes and bandwidth factors follow nccl-tests.
// Every rank fills its input from (rank, index) with small integers that are exact in every
// data type, and computes on its own what the collective must produce, so #wrong needs no
// reference run.
//
// Reductions (allreduce, reducescatter) take values 0..m-1, m = clamp(128 / ranks, 2, 5), so a
// sum over every rank stays below 128 (fits i8, exact in bf16 up to 64 ranks); prod takes
// values in {1, 2} with at most 6 twos per element (2^6 fits i8). Data movement (allgather,
// broadcast, alltoall, sendrecv) takes values 0..100 that encode rank and index. Expected
// values are non-negative, so buffers are poisoned with -1 (255 for u8) before a checked run.
// avg: integer types truncate the sum / ranks (toward zero), float types compare with a
// relative tolerance of the type (2^-7 bf16, 2^-10 f16, 1e-5 f32).
#pragma once

#include <cstddef>

#include "bench/bench_options.h"
#include "comm/types.h"

namespace epcomm::bench {

// One run of a collective as seen by one rank. `count` is the count argument of the call:
// per rank block for allgather, reducescatter and alltoall, the whole buffer otherwise.
struct RunShape {
  Collective collective = Collective::kAllReduce;
  DataType dtype = DataType::kF32;
  ReduceOp redop = ReduceOp::kSum;
  int root = 0;
  int rank = 0;
  int ranks = 1;
  std::size_t count = 0;
};

// Elements of the rank's input and of its result.
std::size_t inputCount(const RunShape& shape);
std::size_t resultCount(const RunShape& shape);

// nccl-tests' size column: bytes of the whole operation (allgather, reducescatter, alltoall:
// count * ranks * typesize).
std::size_t operationBytes(const RunShape& shape);
// busbw / algbw (nccl-tests): 2(n-1)/n allreduce; (n-1)/n allgather, reducescatter, alltoall;
// 1 broadcast, sendrecv.
double busFactor(Collective coll, int ranks);
// The count argument of the call for a size of `bytes` (0: less than one element per rank).
std::size_t callCount(Collective coll, std::size_t bytes, DataType dtype, int ranks);

// Writes the rank's input (inputCount elements) at `input`.
void fillInput(const RunShape& shape, void* input);
// Writes `count` poison elements (a value no check expects) at `buffer`.
void poison(DataType dtype, void* buffer, std::size_t count);
// How many of the resultCount elements at `result` differ from what the collective must
// produce on this rank.
std::size_t countWrong(const RunShape& shape, const void* result);

}  // namespace epcomm::bench
