// Interface selection on real interfaces: a private network namespace (unique per run) with
// interfaces dum0, dum1, dum2, ib0 (up, addressed), eth9 (down) and lo, made as veth pairs
// whose peers sit in a second namespace, where `epcomm-topo --json` must select what each
// setting names, and where a UniqueId's rendezvous listens on the selected address only. Needs root
// (CAP_NET_ADMIN, CAP_SYS_ADMIN): skipped otherwise. The namespace is deleted when the suite ends;
// a crashed run's is removed by the topology_netns_cleanup test (ctest fixture).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/error.h"
#include "comm/src/bootstrap.h"
#include "comm/unique_id.h"
#include "tests/topology/run_command.h"
#include "tests/topology/topo_json.h"

namespace epcomm::test {
namespace {

using nlohmann::json;

constexpr const char* kDum0 = "198.51.100.1";
constexpr const char* kDum1 = "198.51.100.17";
constexpr const char* kDum2 = "198.51.100.33";
constexpr const char* kDum2V6 = "2001:db8::2";
constexpr const char* kIb0 = "203.0.113.1";

// One network namespace, deleted with the object.
class NetworkNamespace {
 public:
  NetworkNamespace() : name_("epcomm-topo-" + std::to_string(getpid())), peer_(name_ + "-peer") {
    for (const std::string& ns : {name_, peer_}) {
      runCommand({"ip", "netns", "del", ns}, {}, 10);  // a leftover of a reused pid
      const RunResult r = runCommand({"ip", "netns", "add", ns}, {}, 10);
      if (r.exitCode != 0) {
        error_ = "ip netns add " + ns + " failed: " + r.err;
        return;
      }
      created_.push_back(ns);
    }
    ip({"link", "set", "lo", "up"});
  }
  ~NetworkNamespace() {
    for (const std::string& ns : created_) runCommand({"ip", "netns", "del", ns}, {}, 10);
  }
  NetworkNamespace(const NetworkNamespace&) = delete;
  NetworkNamespace& operator=(const NetworkNamespace&) = delete;

  const std::string& name() const { return name_; }
  const std::string& error() const { return error_; }

  // `ip -n NS args...`; failures are recorded in error().
  void ip(std::vector<std::string> args) {
    args.insert(args.begin(), {"ip", "-n", name_});
    const RunResult r = runCommand(args, {}, 10);
    if (r.exitCode != 0 && error_.empty()) {
      std::string line;
      for (const std::string& a : args) line += a + " ";
      error_ = line + "failed: " + r.err;
    }
  }

  // A veth pair: `ifname` here, its peer in the peer namespace (so that only the interfaces
  // the test names are in this one). Works where the dummy driver is not available.
  void addInterface(const std::string& ifname, const std::string& cidr, bool up = true) {
    ip({"link", "add", ifname, "type", "veth", "peer", "name", "p-" + ifname, "netns", peer_});
    ip({"addr", "add", cidr, "dev", ifname});
    if (up) ip({"link", "set", ifname, "up"});
    const RunResult r = runCommand({"ip", "-n", peer_, "link", "set", "p-" + ifname, "up"}, {}, 10);
    if (r.exitCode != 0 && error_.empty()) error_ = "peer of " + ifname + ": " + r.err;
  }

  RunResult exec(std::vector<std::string> args, const std::vector<std::string>& env) {
    args.insert(args.begin(), {"ip", "netns", "exec", name_});
    return runCommand(args, env, 30);
  }

 private:
  std::string name_;
  std::string peer_;
  std::string error_;
  std::vector<std::string> created_;
};

class NetnsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    ns_ = std::make_unique<NetworkNamespace>();
    if (!ns_->error().empty()) return;
    ns_->addInterface("dum0", std::string(kDum0) + "/28");
    ns_->addInterface("dum1", std::string(kDum1) + "/28");
    ns_->addInterface("dum2", std::string(kDum2) + "/28");
    ns_->ip({"addr", "add", std::string(kDum2V6) + "/64", "dev", "dum2", "nodad"});
    ns_->addInterface("ib0", std::string(kIb0) + "/24");
    ns_->addInterface("eth9", "198.51.100.49/28", false);
  }
  static void TearDownTestSuite() { ns_.reset(); }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for ip netns";
    if (!ns_ || !ns_->error().empty()) {
      GTEST_SKIP() << "no network namespace: " << (ns_ ? ns_->error() : "");
    }
  }

  // epcomm-topo --json in the namespace under `env`; the interface it selects.
  static json topoJson(const std::vector<std::string>& env) {
    const RunResult r = ns_->exec({EPCOMM_TOPO_EXE, "--json"}, env);
    EXPECT_EQ(r.exitCode, 0) << r.err;
    if (r.exitCode != 0) return json();
    return json::parse(r.out);
  }
  static std::string selected(const std::vector<std::string>& env) {
    const json j = topoJson(env);
    if (j.is_null()) return "(failed)";
    std::string name = "(none)";
    int count = 0;
    for (const json& n : j["interfaces"]) {
      if (!n["selected"].get<bool>()) continue;
      name = n["name"];
      ++count;
    }
    EXPECT_EQ(count, 1);
    EXPECT_EQ(j["selection"]["interface"], name);
    return name;
  }

  static std::unique_ptr<NetworkNamespace> ns_;
};

std::unique_ptr<NetworkNamespace> NetnsTest::ns_;

TEST_F(NetnsTest, TheNamespaceHasTheInterfaces) {
  const json j = topoJson({});
  std::set<std::string> names;
  for (const json& n : j["interfaces"]) names.insert(n["name"].get<std::string>());
  EXPECT_EQ(names, (std::set<std::string>{"dum0", "dum1", "dum2", "eth9", "ib0", "lo"}));
  for (const json& n : j["interfaces"]) {
    if (n["name"] == "eth9") {
      EXPECT_FALSE(n["up"].get<bool>());
    }
    if (n["name"] == "lo") {
      EXPECT_TRUE(n["loopback"].get<bool>());
    }
    if (n["name"] == "ib0") {
      EXPECT_EQ(n["addresses"][0], kIb0);  // IPv4 first (then its link-local IPv6)
    }
    if (n["name"] == "dum0") {
      EXPECT_TRUE(n["pci"].is_null());  // virtual: no PCI locality
      EXPECT_TRUE(n["numa"].is_null());
    }
  }
  std::set<std::string> emitted;
  collectPaths(j, "", emitted);
  const std::set<std::string> documented =
      documentedKeys(std::string(EPCOMM_SOURCE_DIR) + "/docs/topology.md");
  for (const std::string& key : emitted) EXPECT_TRUE(documented.count(key)) << key;
}

// The "Done when" list of issue 5, then the other forms.
TEST_F(NetnsTest, EachSettingSelectsWhatItNames) {
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"EPCOMM_SOCKET_IFNAME==dum1"}, "dum1"},
      {{"EPCOMM_SOCKET_IFNAME=ib"}, "ib0"},
      {{"EPCOMM_SOCKET_IFNAME=^dum0,dum1,ib0,lo"}, "dum2"},
      {{"HCCL_SOCKET_IFNAME=dum2"}, "dum2"},
      {{"GLOO_SOCKET_IFNAME==dum0"}, "dum0"},
      {{std::string("EPCOMM_IF_IP=") + kIb0}, "ib0"},
      {{std::string("HCCL_IF_IP=") + kDum1}, "dum1"},
      {{}, "dum0"},  // default: first by name, not lo, up with an address
      {{"EPCOMM_SOCKET_IFNAME=^=dum0"}, "dum1"},
      {{"EPCOMM_SOCKET_IFNAME=^=dum0,dum1"}, "dum2"},
      {{"EPCOMM_SOCKET_IFNAME=dum"}, "dum0"},
      {{"EPCOMM_SOCKET_IFNAME=xx,dum2"}, "dum2"},
      {{"EPCOMM_SOCKET_IFNAME==lo"}, "lo"},
      {{"EPCOMM_SOCKET_IFNAME=^dum,ib,lo"}, "(failed)"},  // only eth9, which is down
      {{std::string("EPCOMM_IF_IP=") + kDum2V6}, "dum2"},
      {{"EPCOMM_SOCKET_IFNAME=ib", "HCCL_SOCKET_IFNAME=dum2"}, "ib0"},  // own name wins
      {{"EPCOMM_SOCKET_IFNAME==dum0", std::string("HCCL_IF_IP=") + kDum2}, "dum2"},  // IP wins
  };
  for (const auto& [env, expected] : cases) {
    std::string setting;
    for (const std::string& e : env) setting += e + " ";
    if (expected == "(failed)") {
      const RunResult r = ns_->exec({EPCOMM_TOPO_EXE, "--json"}, env);
      EXPECT_NE(r.exitCode, 0) << setting;
      EXPECT_NE(r.err.find("eth9 (down"), std::string::npos) << r.err;
      continue;
    }
    EXPECT_EQ(selected(env), expected) << setting;
  }
}

TEST_F(NetnsTest, TheAddressAndTheSourceAreReported) {
  json j = topoJson({"HCCL_SOCKET_IFNAME=dum2"});
  EXPECT_EQ(j["selection"]["address"], kDum2);  // IPv4 first
  EXPECT_NE(j["selection"]["reason"].get<std::string>().find("HCCL_SOCKET_IFNAME=\"dum2\""),
            std::string::npos);
  for (const json& e : j["env"]) {
    if (e["name"] == "EPCOMM_SOCKET_IFNAME") {
      EXPECT_EQ(e["value"], "dum2");
      EXPECT_EQ(e["source"], "HCCL_SOCKET_IFNAME");
    }
  }
  j = topoJson({std::string("EPCOMM_IF_IP=") + kDum2V6});
  EXPECT_EQ(j["selection"]["address"], kDum2V6);
}

TEST_F(NetnsTest, SettingsThatMatchNothingFailNamingThem) {
  const std::pair<std::string, std::string> cases[] = {
      {"EPCOMM_SOCKET_IFNAME==nosuch", "EPCOMM_SOCKET_IFNAME=\"=nosuch\" matches no interface"},
      {"GLOO_SOCKET_IFNAME=eth", "GLOO_SOCKET_IFNAME=\"eth\" matches no interface"},
      {"EPCOMM_SOCKET_IFNAME==dum", "EPCOMM_SOCKET_IFNAME=\"=dum\" matches no interface"},
      {"HCCL_IF_IP=203.0.113.99", "HCCL_IF_IP=203.0.113.99 is the address of no interface"},
      {"EPCOMM_IF_IP=dum0", "EPCOMM_IF_IP=\"dum0\" is invalid"},
      {"HCCL_SOCKET_IFNAME=^", "HCCL_SOCKET_IFNAME=\"^\" is invalid"},
  };
  for (const auto& [setting, message] : cases) {
    const RunResult r = ns_->exec({EPCOMM_TOPO_EXE, "--json"}, {setting});
    EXPECT_EQ(r.exitCode, 1) << setting;
    EXPECT_TRUE(r.out.empty()) << setting << ": " << r.out;
    EXPECT_NE(r.err.find(message), std::string::npos) << setting << ": " << r.err;
    if (message.find("matches no") != std::string::npos) {
      for (const char* listed :
           {"dum0 (up, 198.51.100.1,", "dum1 (up", "ib0 (up, 203.0.113.1,", "eth9 (down"}) {
        EXPECT_NE(r.err.find(listed), std::string::npos) << listed << " not in " << r.err;
      }
    }
  }
}

// In a child that entered the namespace: UniqueId::create under `setting` must carry
// `expected` and listen there only (a connect to dum0's address on the same port is
// refused), and a one-rank rendezvous through it must work. Returns "" or what failed.
std::string uniqueIdInNamespace(const std::string& ns, const std::string& setting,
                                const std::string& expected) {
  int pipeFds[2];
  if (pipe(pipeFds) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    close(pipeFds[0]);
    std::string problem;
    try {
      const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error("setns failed");
      close(fd);
      const std::size_t eq = setting.find('=');
      setenv(setting.substr(0, eq).c_str(), setting.substr(eq + 1).c_str(), 1);
      const RendezvousInfo info = decodeUniqueId(UniqueId::create(), 0);
      if (info.host != expected) problem = "the UniqueId carries " + info.host;
      if (problem.empty()) {
        const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in other{};
        other.sin_family = AF_INET;
        other.sin_port = htons(info.port);
        inet_pton(AF_INET, kDum0, &other.sin_addr);
        if (connect(s, reinterpret_cast<sockaddr*>(&other), sizeof(other)) == 0) {
          problem = "something listens on dum0's address too (0.0.0.0?)";
        }
        close(s);
      }
      if (problem.empty()) {
        auto boot = connectRendezvous(info, 0, 1, 10);
        int mine = 42;
        int all = 0;
        boot->allGather(&mine, &all, sizeof(mine));
        if (all != 42) problem = "the rendezvous all-gather returned garbage";
      }
    } catch (const std::exception& e) {
      problem = e.what();
    }
    if (!problem.empty()) (void)!write(pipeFds[1], problem.data(), problem.size());
    close(pipeFds[1]);
    _exit(problem.empty() ? 0 : 1);
  }
  close(pipeFds[1]);
  std::string problem;
  char buf[512];
  // Bounded: the child's rendezvous is local; give it 30 s before killing it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      problem = "the child timed out";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ssize_t n = 0;
  while ((n = read(pipeFds[0], buf, sizeof(buf))) > 0)
    problem.append(buf, static_cast<std::size_t>(n));
  close(pipeFds[0]);
  if (problem.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) problem = "child failed";
  return problem;
}

TEST_F(NetnsTest, UniqueIdListensOnTheSelectedAddressOnly) {
  EXPECT_EQ(uniqueIdInNamespace(ns_->name(), "EPCOMM_SOCKET_IFNAME==dum1", kDum1), "");
  EXPECT_EQ(uniqueIdInNamespace(ns_->name(), "HCCL_IF_IP=203.0.113.1", kIb0), "");
  EXPECT_EQ(uniqueIdInNamespace(ns_->name(), std::string("EPCOMM_IF_IP=") + kDum2V6, kDum2V6), "");
  const std::string failed = uniqueIdInNamespace(ns_->name(), "EPCOMM_SOCKET_IFNAME==nosuch", "");
  EXPECT_NE(failed.find("EPCOMM_SOCKET_IFNAME=\"=nosuch\""), std::string::npos) << failed;
}

}  // namespace
}  // namespace epcomm::test
