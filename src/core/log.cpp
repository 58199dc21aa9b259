#include "tessera/core/log.h"

#if defined(TESSERA_HAVE_SPDLOG)
#include <spdlog/sinks/stdout_color_sinks.h>
#endif

namespace tessera {

void set_log_level(const std::string& level) {
#if defined(TESSERA_HAVE_SPDLOG)
  spdlog::set_level(spdlog::level::from_str(level));
#else
  (void)level;
#endif
}

void log_to_stderr() {
#if defined(TESSERA_HAVE_SPDLOG)
  // stdout belongs to programs (--json, the READY line); every log line goes to stderr.
  auto logger = std::make_shared<spdlog::logger>(
      "", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  logger->set_level(spdlog::default_logger()->level());
  spdlog::set_default_logger(std::move(logger));
#endif
}

}  // namespace tessera
