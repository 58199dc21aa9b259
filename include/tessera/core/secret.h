// Shared secrets of a worker group: the per-launch token that the rendezvous store and the
// engine's control port ask every peer for, so that only processes the launcher started (or that
// an operator gave the secret) can join. Pure functions; no state.
#pragma once

#include <string>
#include <string_view>

namespace tessera {

// 256 random bits from the OS (std::random_device), as 64 hex characters.
std::string random_secret();
// Equality that takes the same time whatever the inputs hold (both are hashed first, so neither
// their content nor their length shows in the timing).
bool secrets_equal(std::string_view a, std::string_view b);

}  // namespace tessera
