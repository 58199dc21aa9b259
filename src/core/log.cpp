#include "tessera/core/log.h"

namespace tessera {
void set_log_level(const std::string& level) {
#if defined(TESSERA_HAVE_SPDLOG)
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(spdlog::default_logger());
#else
  (void)level;
#endif
}
}  // namespace tessera
