// Logging: spdlog where it is built in (the server build), plain stderr otherwise (the engine-only
// build on a bare GPU box). Call sites use fmt-style format strings either way.
#pragma once

#include <string>

#if defined(TESSERA_HAVE_SPDLOG)
#include <spdlog/spdlog.h>
#define TESSERA_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define TESSERA_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define TESSERA_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
#define TESSERA_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#else
#include <cstdio>
#define TESSERA_LOG_INFO(fmt_str, ...) std::fprintf(stderr, "[info] %s\n", fmt_str)
#define TESSERA_LOG_WARN(fmt_str, ...) std::fprintf(stderr, "[warn] %s\n", fmt_str)
#define TESSERA_LOG_ERROR(fmt_str, ...) std::fprintf(stderr, "[error] %s\n", fmt_str)
#define TESSERA_LOG_DEBUG(fmt_str, ...) ((void)0)
#endif

namespace tessera {
// Sets the global log level by name (trace, debug, info, warn, error, off); main() calls it once.
void set_log_level(const std::string& level);
// Sends the default logger to stderr (stdout is for program output); main() calls it once, first.
void log_to_stderr();
}  // namespace tessera
