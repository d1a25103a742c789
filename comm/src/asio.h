// The one way epcomm includes Boost.Asio. Boost 1.74's awaitable.hpp uses std::exchange
// without including <utility>, which breaks C++20 builds with GCC 12; include it first.
#pragma once

// clang-format off
#include <utility>
#include <boost/asio.hpp>
// clang-format on
