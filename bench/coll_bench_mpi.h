// coll-bench --compare mpi: the MPI library's own collective for each of coll-bench's, on a
// duplicate of MPI_COMM_WORLD, which must be epcomm's world (bench_ranks.h: openMpiWorld).
// MPI has no bf16/f16: they travel as MPI_Type_contiguous(2, MPI_BYTE) with commutative user
// ops that compute in f32 and round back. MPI has no avg: MPI_SUM, then each rank divides its
// result. Out-of-place broadcast copies send to recv on the root, then MPI_Bcast (NCCL
// semantics).
#pragma once

#include <mpi.h>

#include "bench/bench_check.h"

namespace epcomm::bench {

class MpiPeer {
 public:
  MpiPeer();
  ~MpiPeer();
  MpiPeer(const MpiPeer&) = delete;
  MpiPeer& operator=(const MpiPeer&) = delete;

  // One call of the collective; in place per MPI (MPI_IN_PLACE) when inPlace.
  void run(const RunShape& s, void* send, void* recv, bool inPlace);

 private:
  MPI_Datatype type(DataType d) const;
  MPI_Op op(const RunShape& s) const;
  void divide(DataType d, void* data, std::size_t count) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int ranks_ = 1;
  MPI_Datatype half_ = MPI_DATATYPE_NULL;
  MPI_Op ops_[8] = {};
};

}  // namespace epcomm::bench
