#include "topology/interface_selection.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <optional>

#include "topology/error.h"

namespace epcomm::topology {
namespace {

constexpr const char* kOp = "select interface";

bool hasPrefix(std::string_view name, std::string_view prefix) {
  return name.substr(0, prefix.size()) == prefix;
}

// The address in a family-tagged form for comparison; nullopt when not numeric.
std::optional<std::array<unsigned char, 17>> parseAddress(const std::string& text) {
  std::array<unsigned char, 17> out{};
  if (inet_pton(AF_INET, text.c_str(), out.data() + 1) == 1) {
    out[0] = 4;
    return out;
  }
  if (inet_pton(AF_INET6, text.c_str(), out.data() + 1) == 1) {
    out[0] = 6;
    return out;
  }
  return std::nullopt;
}

std::string listForMessage(const std::vector<NetInterface>& interfaces) {
  if (interfaces.empty()) return "none";
  std::string out;
  for (const NetInterface& nic : interfaces) {
    if (!out.empty()) out += ", ";
    out += nic.name + " (" + (nic.up ? "up" : "down");
    if (nic.loopback) out += ", loopback";
    if (nic.addresses.empty()) out += ", no address";
    for (const std::string& a : nic.addresses) out += ", " + a;
    out += ")";
  }
  return out;
}

bool usable(const NetInterface& nic) {
  return nic.up && !usableAddress(nic).empty();
}

InterfaceSelection pick(const std::vector<NetInterface>& interfaces, std::size_t i,
                        std::string reason) {
  return {i, interfaces[i].name, usableAddress(interfaces[i]), std::move(reason)};
}

InterfaceSelection selectByAddress(const std::vector<NetInterface>& interfaces,
                                   const SelectionRequest& request) {
  const std::string setting = request.ifIpSource + "=" + request.ifIp;
  const auto wanted = parseAddress(request.ifIp);
  if (!wanted) {
    fail(ErrorKind::kInvalidArgument, kOp, setting + " is not a numeric IPv4 or IPv6 address");
  }
  for (std::size_t i = 0; i < interfaces.size(); ++i) {
    for (const std::string& a : interfaces[i].addresses) {
      if (parseAddress(a) != wanted) continue;
      std::string reason = setting + " is an address of " + interfaces[i].name;
      if (!request.ifname.empty()) reason += " (it wins over " + request.ifnameSource + ")";
      if (!interfaces[i].up) reason += "; the interface is down";
      return {i, interfaces[i].name, a, reason};
    }
  }
  fail(ErrorKind::kInvalidArgument, kOp,
       setting + " is the address of no interface of this host; interfaces: " +
           listForMessage(interfaces));
}

InterfaceSelection selectByName(const std::vector<NetInterface>& interfaces,
                                const SelectionRequest& request) {
  const InterfaceSpec spec = InterfaceSpec::parse(request.ifname, request.ifnameSource);
  const std::string setting = request.ifnameSource + "=\"" + request.ifname + "\"";
  for (std::size_t i = 0; i < interfaces.size(); ++i) {
    if (spec.matches(interfaces[i].name) && usable(interfaces[i])) {
      return pick(interfaces, i,
                  setting +
                      ": the first interface by name that matches and is up with an "
                      "address");
    }
  }
  fail(ErrorKind::kInvalidArgument, kOp,
       setting + " matches no interface that is up with an address; interfaces: " +
           listForMessage(interfaces));
}

InterfaceSelection selectByDefault(const std::vector<NetInterface>& interfaces) {
  // NCCL's order: everything but docker*, lo* and virbr*; then docker*; then loopback.
  auto firstWhere = [&](auto&& accept) -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < interfaces.size(); ++i) {
      if (usable(interfaces[i]) && accept(interfaces[i])) return i;
    }
    return std::nullopt;
  };
  auto isLoopback = [](const NetInterface& n) { return n.loopback || hasPrefix(n.name, "lo"); };
  if (auto i = firstWhere([&](const NetInterface& n) {
        return !isLoopback(n) && !hasPrefix(n.name, "docker") && !hasPrefix(n.name, "virbr");
      })) {
    return pick(interfaces, *i,
                "default (EPCOMM_SOCKET_IFNAME and EPCOMM_IF_IP unset): the first interface by "
                "name, other than docker*, lo* and virbr*, that is up with an address");
  }
  if (auto i = firstWhere([](const NetInterface& n) { return hasPrefix(n.name, "docker"); })) {
    return pick(interfaces, *i,
                "default: no interface other than docker*, lo* and virbr* is up with an "
                "address; the first docker* one");
  }
  if (auto i = firstWhere(isLoopback)) {
    return pick(interfaces, *i, "default: no interface other than loopback is up with an address");
  }
  fail(ErrorKind::kInvalidArgument, kOp,
       "no interface is up with an address (not even loopback); interfaces: " +
           listForMessage(interfaces));
}

}  // namespace

InterfaceSpec InterfaceSpec::parse(std::string_view text, std::string_view knob) {
  InterfaceSpec spec;
  std::string_view rest = text;
  if (!rest.empty() && rest.front() == '^') {
    spec.exclude = true;
    rest.remove_prefix(1);
  }
  if (!rest.empty() && rest.front() == '=') {
    spec.exact = true;
    rest.remove_prefix(1);
  }
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    if (!item.empty()) spec.names.emplace_back(item);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  if (spec.names.empty()) {
    fail(ErrorKind::kInvalidArgument, kOp,
         std::string(knob) + "=\"" + std::string(text) +
             "\" names no interface; expected NCCL's syntax: prefixes \"eth,ib\", "
             "exclusions \"^docker,lo\", exact names \"=eth0\" or \"^=eth1\"");
  }
  return spec;
}

bool InterfaceSpec::matches(std::string_view ifname) const {
  bool listed = false;
  for (const std::string& n : names) {
    if (exact ? ifname == n : hasPrefix(ifname, n)) {
      listed = true;
      break;
    }
  }
  return listed != exclude;
}

InterfaceSelection selectInterface(const std::vector<NetInterface>& interfaces,
                                   const SelectionRequest& request) {
  if (!request.ifIp.empty()) return selectByAddress(interfaces, request);
  if (!request.ifname.empty()) return selectByName(interfaces, request);
  return selectByDefault(interfaces);
}

}  // namespace epcomm::topology
