// Where each rank of a two-level communicator lives: its host, its local index there, and the
// groups the levels run over (the ranks of one host; a "rail": the ranks with one local index,
// one per host). Rank arithmetic only.
#pragma once

#include <cstddef>
#include <vector>

namespace epcomm::two_level {

class HostLayout {
 public:
  HostLayout() = default;
  // hostOfRank[r]: rank r's host, numbered 0 .. H-1 in the order of each host's lowest rank.
  explicit HostLayout(std::vector<int> hostOfRank);

  int size() const { return static_cast<int>(hostOf_.size()); }
  int numHosts() const { return static_cast<int>(members_.size()); }
  int hostOf(int rank) const { return hostOf_[static_cast<std::size_t>(rank)]; }
  int localOf(int rank) const { return localOf_[static_cast<std::size_t>(rank)]; }
  // The ranks of host h, in rank order (index = local index).
  const std::vector<int>& members(int host) const {
    return members_[static_cast<std::size_t>(host)];
  }
  int localSize(int host) const { return static_cast<int>(members(host).size()); }
  // Every host holds the same number of ranks.
  bool uniform() const { return minLocalSize_ == maxLocalSize_; }
  // The fewest ranks any host holds: rails 0 .. minLocalSize()-1 span every host.
  int minLocalSize() const { return minLocalSize_; }
  int maxLocalSize() const { return maxLocalSize_; }
  // The ranks with local index l, in host order (index = rank in the rail).
  const std::vector<int>& rail(int l) const { return rails_[static_cast<std::size_t>(l)]; }

 private:
  std::vector<int> hostOf_;
  std::vector<int> localOf_;
  std::vector<std::vector<int>> members_;
  std::vector<std::vector<int>> rails_;
  int minLocalSize_ = 0;
  int maxLocalSize_ = 0;
};

}  // namespace epcomm::two_level
