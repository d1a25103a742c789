// Per-peer MPI datatypes over absolute addresses (MPI_BOTTOM), so one MPI_Alltoallw sends
// rows straight from where they are and receives them straight into where they go: no
// packing or unpacking copy (what a careful plain-MPI EP does). Byte blocks, in order.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <vector>

namespace epcomm::bench {

class MpiPlacement {
 public:
  explicit MpiPlacement(int ranks)
      : blocks_(static_cast<std::size_t>(ranks)),
        types_(static_cast<std::size_t>(ranks), MPI_DATATYPE_NULL),
        ones_(static_cast<std::size_t>(ranks), 1),
        zeros_(static_cast<std::size_t>(ranks), 0) {}
  ~MpiPlacement() { release(); }
  MpiPlacement(const MpiPlacement&) = delete;
  MpiPlacement& operator=(const MpiPlacement&) = delete;

  // Starts a new exchange (frees the previous types).
  void clear() {
    release();
    for (auto& b : blocks_) b.clear();
  }
  // Appends `bytes` at `p` to what goes to / comes from `peer` (adjacent blocks merge).
  // Blocks stay below MPI's int counts: a larger run is split.
  void add(int peer, const void* p, std::size_t bytes) {
    MPI_Aint a;
    MPI_Get_address(p, &a);
    std::vector<Block>& b = blocks_[static_cast<std::size_t>(peer)];
    while (bytes > 0) {
      if (!b.empty() && b.back().address + b.back().bytes == a && b.back().bytes < kMaxBlock) {
        const std::size_t room = static_cast<std::size_t>(kMaxBlock - b.back().bytes);
        const std::size_t n = bytes < room ? bytes : room;
        b.back().bytes += static_cast<int>(n);
        a += static_cast<MPI_Aint>(n);
        bytes -= n;
        continue;
      }
      const std::size_t n = bytes < static_cast<std::size_t>(kMaxBlock) ? bytes : kMaxBlock;
      b.push_back({a, static_cast<int>(n)});
      a += static_cast<MPI_Aint>(n);
      bytes -= n;
    }
  }
  // One committed type per peer (count 1 each; a peer with nothing: zero bytes).
  MPI_Datatype* types() {
    release();
    for (std::size_t r = 0; r < blocks_.size(); ++r) {
      const std::vector<Block>& b = blocks_[r];
      lengths_.resize(b.size());
      displs_.resize(b.size());
      for (std::size_t i = 0; i < b.size(); ++i) {
        lengths_[i] = b[i].bytes;
        displs_[i] = b[i].address;
      }
      MPI_Type_create_hindexed(static_cast<int>(b.size()), lengths_.data(), displs_.data(),
                               MPI_BYTE, &types_[r]);
      MPI_Type_commit(&types_[r]);
    }
    return types_.data();
  }
  // Counts (1) and displacements (0) of every peer, for MPI_Alltoallw over MPI_BOTTOM.
  const int* ones() const { return ones_.data(); }
  const int* zeros() const { return zeros_.data(); }

 private:
  static constexpr int kMaxBlock = 1 << 30;
  struct Block {
    MPI_Aint address;
    int bytes;
  };
  void release() {
    for (MPI_Datatype& t : types_) {
      if (t != MPI_DATATYPE_NULL) MPI_Type_free(&t);
    }
  }
  std::vector<std::vector<Block>> blocks_;
  std::vector<MPI_Datatype> types_;
  std::vector<int> lengths_;  // scratch of types(), kept across calls
  std::vector<MPI_Aint> displs_;
  std::vector<int> ones_, zeros_;
};

// MPI_Alltoallw over MPI_BOTTOM with one type per peer on each side.
inline void alltoallPlaced(MpiPlacement& send, MpiPlacement& recv, MPI_Comm comm) {
  MPI_Alltoallw(MPI_BOTTOM, send.ones(), send.zeros(), send.types(), MPI_BOTTOM, recv.ones(),
                recv.zeros(), recv.types(), comm);
}

}  // namespace epcomm::bench
