// A plugin whose table is shorter than this library's: the loader must refuse it.
#include <cstdint>

struct ShortTable {
  std::uint32_t abiVersion;
  std::uint32_t structSize;
};

extern "C" __attribute__((visibility("default"))) const ShortTable epcommBackend_v1 = {1u, 8u};
