// EnvGuard: sets environment variables for one test and unsets them when it goes out of
// scope (tests that read knobs from the environment).
#pragma once

#include <stdlib.h>

#include <string>
#include <vector>

namespace epcomm::test {

class EnvGuard {
 public:
  EnvGuard() = default;
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  ~EnvGuard() {
    for (const std::string& n : names_) unsetenv(n.c_str());
  }
  void set(const std::string& name, const std::string& value) {
    names_.push_back(name);
    setenv(name.c_str(), value.c_str(), 1);
  }

 private:
  std::vector<std::string> names_;
};

}  // namespace epcomm::test
