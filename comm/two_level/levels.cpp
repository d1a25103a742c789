#include "comm/two_level/levels.h"

#include "comm/call_check_message.h"
#include "comm/types.h"

#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

namespace epcomm::two_level {
namespace {

std::vector<int> identity(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

const char* levelName(Level level) {
  switch (level) {
    case Level::kInHost: return "in-host level";
    case Level::kRail: return "network level (the ranks with this local index)";
    case Level::kWorld: return "network level";
  }
  return "";
}

}  // namespace

unsigned char* Scratch::get(int which, std::size_t bytes) {
  std::vector<unsigned char>& b = buffers_[which];
  if (b.size() < bytes) b.resize(bytes);
  return b.data();
}

std::string translateRanks(const std::string& full, const std::vector<int>& members) {
  // A peer's abort reason (after the mark) already names the communicator's ranks.
  const std::size_t mark = full.find(EPCOMM_ABORT_REASON_MARK);
  const std::string message = full.substr(0, mark);
  std::string out;
  out.reserve(full.size() + 16);
  std::size_t i = 0;
  const auto isDigit = [&](std::size_t k) {
    return k < message.size() && std::isdigit(static_cast<unsigned char>(message[k]));
  };
  while (i < message.size()) {
    const bool word = message.compare(i, 4, "rank") == 0 &&
                      (i == 0 || !std::isalpha(static_cast<unsigned char>(message[i - 1])));
    if (!word) {
      out += message[i++];
      continue;
    }
    std::size_t k = i + 4;
    if (k < message.size() && message[k] == 's') ++k;
    if (k < message.size() && message[k] == ':') ++k;
    if (k >= message.size() || message[k] != ' ' || !isDigit(k + 1)) {
      out.append(message, i, k - i);
      i = k;
      continue;
    }
    out.append(message, i, k + 1 - i);
    k += 1;
    // A list: N, N, N (each mapped).
    while (isDigit(k)) {
      std::size_t end = k;
      while (isDigit(end)) ++end;
      const long n = std::strtol(message.c_str() + k, nullptr, 10);
      if (n >= 0 && static_cast<std::size_t>(n) < members.size()) {
        out += std::to_string(members[static_cast<std::size_t>(n)]);
      } else {
        out.append(message, k, end - k);
      }
      k = end;
      if (message.compare(k, 2, ", ") == 0 && isDigit(k + 2)) {
        out += ", ";
        k += 2;
      } else {
        break;
      }
    }
    i = k;
  }
  if (mark != std::string::npos) out += full.substr(mark);
  return out;
}

std::string levelText(const Levels& levels, Level level, const std::string& message) {
  const std::vector<int>& members = level == Level::kInHost ? levels.layout.members(levels.host)
                                    : level == Level::kRail ? levels.layout.rail(levels.local)
                                                            : identity(levels.size);
  std::string what = translateRanks(message, members);
  what += " [";
  what += levelName(level);
  what += "]";
  return what;
}

Error levelError(const Levels& levels, Level level, const Error& e) {
  return Error(e.code(), levelText(levels, level, e.what()));
}

std::string LevelLog::rewrite(const std::string& message, const void* self) {
  const auto* log = static_cast<const LevelLog*>(self);
  return levelText(log->levels_, log->level_, message);
}

Steps::Steps(const Levels& levels, const char* op, const std::optional<epcommCallCheck>& check)
    : levels_(levels), op_(op), check_(check), valid_(!check || check->valid != 0) {}

bool Steps::arm(Level level) {
  if (!check_) return true;
  BackendHandle* b = level == Level::kInHost ? levels_.inHost
                     : level == Level::kRail ? levels_.rail
                                             : levels_.world;
  if (!ok() && b->size() == 1) {
    if (!failure_) {
      failure_ = Error(ErrorCode::kInvalidArgument,
                       "epcomm rank " + std::to_string(levels_.rank) + ": " + op_ +
                           ": this rank passed invalid arguments; no data was moved");
    }
    return false;
  }
  epcommCallCheck c = *check_;
  c.valid = ok() ? 1 : 0;
  b->setCallCheck(c);
  return true;
}

void Steps::failed(Level level, const Error& e) {
  Error translated = levelError(levels_, level, e);
  if (e.code() != ErrorCode::kInvalidArgument || !check_) throw translated;
  if (!failure_) failure_ = std::move(translated);
}

void Steps::finish() const {
  if (!failure_) return;
  CallCheckMessage message(0);
  message.setRank(levels_.rank);
  message.arm(&*check_);
  message.prepare();
  try {
    levels_.world->allReduce(message.data(), message.data(), message.slots(),
                             static_cast<int>(DataType::kI64), static_cast<int>(ReduceOp::kMax));
  } catch (const Error& e) {
    throw levelError(levels_, Level::kWorld, e);
  }
  message.judge(levels_.rank, op_);
  throw *failure_;  // the records agree: the levels' own problem
}

}  // namespace epcomm::two_level
