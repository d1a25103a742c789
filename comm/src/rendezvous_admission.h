// What the rendezvous server holds before a connection has said hello, so that a flood of
// idle or hostile connections cannot use up its descriptors or keep the legit ranks out:
// pending connections are bounded in total and per source address, and a new one beyond a
// bound sheds the oldest pending one (of its source, else of all). A legit rank sends its
// hello as soon as it connects, so the oldest pending connections are the idle ones; a legit
// connection shed anyway connects again (rendezvous_client.cpp). Problems with pending
// connections are logged at most once a second, with a count of the rest.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

namespace epcomm::rendezvous {

inline constexpr std::size_t kMaxPending = 256;
inline constexpr std::size_t kMaxPendingPerSource = 64;

class Admission {
 public:
  Admission(std::size_t maxPending = kMaxPending, std::size_t maxPerSource = kMaxPendingPerSource)
      : maxPending_(maxPending), maxPerSource_(maxPerSource) {}

  // Records pending connection `id` from `source` (an address); returns the id of a pending
  // connection to shed now to stay within the bounds, or 0.
  std::uint64_t admit(std::uint64_t id, const std::string& source);
  // `id` is no longer pending (its hello was read, or it closed). Unknown ids are ignored.
  void leave(std::uint64_t id);
  std::size_t pending() const { return order_.size(); }

 private:
  struct Entry {
    std::uint64_t id;
    std::string source;
  };
  std::size_t maxPending_;
  std::size_t maxPerSource_;
  std::list<Entry> order_;  // oldest first
  std::unordered_map<std::uint64_t, std::list<Entry>::iterator> byId_;
  std::map<std::string, std::size_t, std::less<>> perSource_;
};

// At most one line a second; what it held back is counted into the next line.
class LogLimiter {
 public:
  // The line to log now ("" to stay quiet), given the one that just happened.
  std::string next(const std::string& line, std::chrono::steady_clock::time_point now);

 private:
  std::chrono::steady_clock::time_point last_{};
  bool logged_ = false;
  std::size_t held_ = 0;
};

}  // namespace epcomm::rendezvous
