#include "comm/src/rendezvous_admission.h"

#include <fmt/format.h>

namespace epcomm::rendezvous {

std::uint64_t Admission::admit(std::uint64_t id, const std::string& source) {
  order_.push_back({id, source});
  byId_[id] = std::prev(order_.end());
  const std::size_t fromSource = ++perSource_[source];
  if (fromSource > maxPerSource_) {
    for (const Entry& e : order_) {
      if (e.source == source) return e.id;  // the oldest of this source
    }
  }
  if (order_.size() > maxPending_) return order_.front().id;
  return 0;
}

void Admission::leave(std::uint64_t id) {
  const auto it = byId_.find(id);
  if (it == byId_.end()) return;
  const auto source = perSource_.find(it->second->source);
  if (source != perSource_.end() && --source->second == 0) perSource_.erase(source);
  order_.erase(it->second);
  byId_.erase(it);
}

std::string LogLimiter::next(const std::string& line, std::chrono::steady_clock::time_point now) {
  if (logged_ && now - last_ < std::chrono::seconds(1)) {
    ++held_;
    return "";
  }
  std::string out = line;
  if (held_ > 0) out += fmt::format(" (and {} more such in the last second)", held_);
  logged_ = true;
  last_ = now;
  held_ = 0;
  return out;
}

}  // namespace epcomm::rendezvous
