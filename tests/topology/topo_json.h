// Helpers for checking epcomm-topo's JSON against docs/topology.md (tests that run the
// program get its path as EPCOMM_TOPO_EXE from CMake).
#pragma once

#ifndef EPCOMM_TOPO_EXE
#error "EPCOMM_TOPO_EXE must name the epcomm-topo program"
#endif

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace epcomm::test {

// Key paths of a JSON value: "a.b" through objects, "a[].b" through arrays of objects;
// anything else is a leaf.
inline void collectPaths(const nlohmann::json& j, const std::string& prefix,
                         std::set<std::string>& out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) {
      collectPaths(value, prefix.empty() ? key : prefix + "." + key, out);
    }
    return;
  }
  if (j.is_array()) {
    bool objects = false;
    for (const auto& e : j) {
      if (!e.is_object()) continue;
      objects = true;
      collectPaths(e, prefix + "[]", out);
    }
    if (!objects && !prefix.empty()) out.insert(prefix);
    return;
  }
  if (!prefix.empty()) out.insert(prefix);
}

// The keys of the table under "### JSON keys" in docs/topology.md.
inline std::set<std::string> documentedKeys(const std::string& docPath) {
  std::ifstream in(docPath);
  std::set<std::string> keys;
  std::string line;
  bool inTable = false;
  while (std::getline(in, line)) {
    if (line.rfind("### JSON keys", 0) == 0) inTable = true;
    if (!inTable || line.rfind("| `", 0) != 0) continue;
    const std::size_t end = line.find('`', 3);
    if (end != std::string::npos) keys.insert(line.substr(3, end - 3));
  }
  return keys;
}

// True when `path` ("a.b[].c") runs through an array that is empty in `j` (so its keys
// cannot appear).
inline bool underEmptyArray(const nlohmann::json& j, const std::string& path) {
  const std::size_t bracket = path.find("[]");
  if (bracket == std::string::npos) return false;
  const nlohmann::json* at = &j;
  std::stringstream parts(path.substr(0, bracket));
  std::string key;
  while (std::getline(parts, key, '.')) {
    if (!at->is_object() || !at->contains(key)) return false;
    at = &(*at)[key];
  }
  return at->is_array() && at->empty();
}

}  // namespace epcomm::test
