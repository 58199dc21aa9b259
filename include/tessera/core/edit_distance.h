// Levenshtein distance, for "did you mean" hints (topology keys, command-line options). No state.
#pragma once

#include <cstddef>
#include <string_view>

namespace tessera {

size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace tessera
