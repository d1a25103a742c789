// Shared by the shm multi-rank suites (shm_suite_main.cpp runs them).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

#include "comm/communicator.h"

namespace epcomm::test {

// The communicator every test of the suite uses (set by main for the whole run).
extern Communicator* gShmComm;

// Captures what this process writes to stderr while alive, where the library logs (main
// sets EPCOMM_LOG_LEVEL=debug, so the backend's path notes are among it); the captured
// text is copied back to stderr at the end.
class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    file_ = std::tmpfile();
    saved_ = dup(2);
    if (file_ && saved_ >= 0) dup2(fileno(file_), 2);
  }
  ~StderrCapture() {
    const std::string text = this->text();
    if (saved_ >= 0) {
      dup2(saved_, 2);
      ::close(saved_);
    }
    if (file_) std::fclose(file_);
    std::fputs(text.c_str(), stderr);
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  std::string text() const {
    std::fflush(stderr);
    std::string all;
    if (!file_) return all;
    char buf[4096];
    for (off_t at = 0;;) {
      const ssize_t n = pread(fileno(file_), buf, sizeof buf, at);
      if (n <= 0) break;
      all.append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    return all;
  }
  bool contains(const std::string& needle) const {
    return text().find(needle) != std::string::npos;
  }

 private:
  std::FILE* file_ = nullptr;
  int saved_ = -1;
};

}  // namespace epcomm::test
