// Shared secrets of a worker group: the per-launch token that the rendezvous store and the
// engine's control port ask every peer for, so that only processes the launcher started (or that
// an operator gave the secret) can join. Pure functions; no state.
#pragma once

#include <string>
#include <string_view>

namespace tessera {

// 256 random bits from the OS (std::random_device), as 64 hex characters.
std::string random_secret();
// Equality whose time depends only on the length of `presented` (which its sender knows
// anyway): every presented byte is compared with the expected secret, cycled, without an early
// exit, so neither the content of `expected` nor where a guess goes wrong shows in the timing.
bool secrets_equal(std::string_view expected, std::string_view presented);

}  // namespace tessera
