// How the mpi backend carries epcomm's data types and reductions over MPI: bf16/f16 travel
// as f32 in reductions (accumulating in f32 like every backend), avg is sum / size.
#pragma once

#include <mpi.h>

#include <cstddef>

#include "comm/types.h"

namespace epcomm::mpi {

inline DataType dt(int dtype) {
  return static_cast<DataType>(dtype);
}
inline bool isHalf(int dtype) {
  return dt(dtype) == DataType::kBf16 || dt(dtype) == DataType::kF16;
}

// Throws kSystemError naming op and MPI's text when rc is not MPI_SUCCESS (every MPI call
// of the backend goes through it).
void checkMpi(int rc, int rank, const char* op);

// The MPI type that carries `dtype`'s bytes; for bf16/f16 only good for moving data.
MPI_Datatype mpiType(int dtype);
MPI_Op mpiOp(int op);

// bf16/f16 <-> f32.
void toF32(const void* src, float* dst, std::size_t n, int dtype);
void fromF32(const float* src, void* dst, std::size_t n, int dtype);

// avg = sum / size, in the buffer's type (integers in int64, truncating toward zero).
void divideBySize(void* buf, std::size_t n, int dtype, int size);

// inout[i] = in[i] op inout[i] for the types MPI reduces natively here (not bf16/f16);
// integer sums and products wrap as MPI's do.
void reduceInto(const void* in, void* inout, std::size_t n, int dtype, int op);

}  // namespace epcomm::mpi
