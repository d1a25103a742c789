// Symbol visibility: libepcomm is built with hidden visibility; EPCOMM_API marks what it
// exports (the public API, and the few internals the tests link against).
#pragma once

#define EPCOMM_API __attribute__((visibility("default")))
