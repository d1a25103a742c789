// The knob registry: rows registered by every layer, stored with their strings (a plugin's
// table may go away), and the one resolver every value goes through.
#include <fmt/format.h>

#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/knob_registry.h"

namespace epcomm {
namespace {

struct Registry {
  std::mutex mutex;
  std::deque<std::string> strings;  // owns every view in rows (a deque never moves them)
  std::vector<KnobInfo> rows;

  std::string_view keep(std::string_view s) { return strings.emplace_back(s); }
};

Registry& registry() {
  static Registry r;
  return r;
}

int layerOrder(std::string_view layer) {
  if (layer == "comm") return 0;
  if (layer == "topology") return 1;
  if (layer == "ep") return 2;
  return 3;  // backends
}

[[noreturn]] void badValue(std::string_view name, std::string_view value, std::string_view what) {
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("epcomm config: {}=\"{}\" is invalid: {}", name, value, what));
}

std::string join(const std::vector<std::string_view>& items, std::string_view last) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? std::string(last) : std::string(", ");
    out += items[i];
  }
  return out;
}

void validate(const KnobInfo& knob, const KnobValue& v) {
  switch (knob.type) {
    case KnobType::kString:
      if (knob.check) {
        if (const std::string what = knob.check(v.value); !what.empty()) {
          badValue(v.source, v.value, what);
        }
      }
      return;
    case KnobType::kInteger: {
      if (v.value.empty() && knob.defaultValue.empty()) return;  // unset
      const std::optional<std::int64_t> n = parseInteger(v.value);
      if (!n || *n < knob.min || *n > knob.max) {
        badValue(
            v.source, v.value,
            knob.unit.empty()
                ? fmt::format("expected an integer in {}..{}", knob.min, knob.max)
                : fmt::format("expected an integer in {}..{} ({})", knob.min, knob.max, knob.unit));
      }
      return;
    }
    case KnobType::kBoolean:
      if (!parseBoolean(v.value))
        badValue(v.source, v.value, "expected 1, 0, true or false (any case)");
      return;
    case KnobType::kChoice:
      for (std::string_view c : knob.choices) {
        if (v.value == c) return;
      }
      badValue(v.source, v.value, "expected " + join(knob.choices, " or "));
  }
}

}  // namespace

void registerKnobs(const std::vector<KnobInfo>& rows) {
  Registry& r = registry();
  const std::lock_guard<std::mutex> lock(r.mutex);
  for (const KnobInfo& row : rows) {
    bool known = false;
    for (const KnobInfo& have : r.rows) known = known || have.name == row.name;
    if (known) continue;
    KnobInfo copy = row;
    copy.name = r.keep(row.name);
    copy.defaultValue = r.keep(row.defaultValue);
    copy.meaning = r.keep(row.meaning);
    copy.unit = r.keep(row.unit);
    copy.layer = r.keep(row.layer);
    for (KnobAlias& a : copy.aliases) a.name = r.keep(a.name);
    for (std::string_view& c : copy.choices) c = r.keep(c);
    // Layer by layer, each in its own registration order.
    auto at = r.rows.end();
    while (at != r.rows.begin() && layerOrder((at - 1)->layer) > layerOrder(copy.layer)) --at;
    r.rows.insert(at, std::move(copy));
  }
}

std::vector<KnobInfo> knobRegistry() {
  registerCommKnobs();
  Registry& r = registry();
  const std::lock_guard<std::mutex> lock(r.mutex);
  return r.rows;
}

std::optional<KnobInfo> findKnob(std::string_view name) {
  registerCommKnobs();
  Registry& r = registry();
  const std::lock_guard<std::mutex> lock(r.mutex);
  for (const KnobInfo& row : r.rows) {
    if (row.name == name) return row;
  }
  return std::nullopt;
}

std::optional<std::string> environmentValue(std::string_view name) {
  const char* v = std::getenv(std::string(name).c_str());
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

KnobValue resolveKnob(const KnobInfo& knob, bool readEnvironment) {
  KnobValue v{std::string(knob.name), std::string(knob.defaultValue), "default"};
  if (readEnvironment) {
    if (const std::optional<std::string> own = environmentValue(knob.name)) {
      v.value = *own;
      v.source = knob.name;
    } else {
      for (const KnobAlias& alias : knob.aliases) {
        const std::optional<std::string> raw = environmentValue(alias.name);
        if (!raw) continue;
        v.value = *raw;
        v.source = alias.name;
        if (alias.scale != 1) {
          const std::optional<std::int64_t> n = parseInteger(*raw);
          if (!n || *n < 0 || *n > knob.max / alias.scale) {
            badValue(alias.name, *raw,
                     fmt::format("expected an integer in 0..{}", knob.max / alias.scale));
          }
          v.value = std::to_string(*n * alias.scale);
        }
        break;
      }
    }
  }
  validate(knob, v);
  return v;
}

}  // namespace epcomm
