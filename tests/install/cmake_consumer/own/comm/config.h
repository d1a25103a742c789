// The consumer's own comm/config.h: a header of the same relative path as one of epcomm's.
// epcomm's installed headers include each other relatively, so they never pick this up.
#pragma once

namespace consumer {
struct Config {
  int threads = 3;
};
}  // namespace consumer
