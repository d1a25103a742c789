#include "comm/two_level/host_layout.h"

#include <algorithm>
#include <utility>

namespace epcomm::two_level {

HostLayout::HostLayout(std::vector<int> hostOfRank) : hostOf_(std::move(hostOfRank)) {
  localOf_.resize(hostOf_.size());
  for (std::size_t r = 0; r < hostOf_.size(); ++r) {
    const auto h = static_cast<std::size_t>(hostOf_[r]);
    if (members_.size() <= h) members_.resize(h + 1);
    localOf_[r] = static_cast<int>(members_[h].size());
    members_[h].push_back(static_cast<int>(r));
  }
  minLocalSize_ = members_.empty() ? 0 : static_cast<int>(members_[0].size());
  for (const auto& m : members_) {
    minLocalSize_ = std::min(minLocalSize_, static_cast<int>(m.size()));
    maxLocalSize_ = std::max(maxLocalSize_, static_cast<int>(m.size()));
  }
  rails_.resize(static_cast<std::size_t>(maxLocalSize_));
  for (const auto& m : members_) {
    for (std::size_t l = 0; l < m.size(); ++l) rails_[l].push_back(m[l]);
  }
}

}  // namespace epcomm::two_level
