#include "comm/unique_id.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/bootstrap.h"

namespace epcomm {
namespace {

// Fills `out` from the kernel's CSPRNG; throws kSystemError if it cannot.
void fillRandom(unsigned char* out, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t got = getrandom(out + done, bytes - done, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throwError(ErrorCode::kSystemError, 0, "UniqueId::create",
                 std::string("getrandom failed: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(got);
  }
}

}  // namespace

UniqueId UniqueId::create() {
  const Config config = Config::fromEnvironment();
  RendezvousInfo wanted;
  wanted.host = defaultRendezvousHost();
  wanted.port = 0;
  fillRandom(wanted.secret, kSecretBytes);
  return encodeUniqueId(startRendezvousServer(wanted, config.connectTimeoutS));
}

}  // namespace epcomm
