// peer_logits: llama.cpp's logits for a given token sequence, the peer's side of
// benchmarks/int8_accuracy.py. Not part of Tessera's build: benchmarks/peer/build_llama_cpp.sh
// compiles it against the libllama it builds under ~/.cache/tessera-peer, and nothing in CI runs
// it. It mirrors `tessera logits --ids ... --out F`: the ids are fed as one sequence from position
// 0 in a single llama_decode (one physical batch, as a prompt is), every position's logits are
// requested, and F gets them as float32 [n_ids][n_vocab], row-major. llama.cpp's defaults are
// kept for everything that shapes the arithmetic (KV cache type f16, flash attention auto) since
// that is what a llama.cpp user gets; stderr says which were in force. It owns no state beyond
// main's locals.
//   peer_logits --model GGUF --ids 1,2,3 --out FILE [--threads N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llama.h"

namespace {

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

std::vector<llama_token> parse_ids(const char* s) {
  std::vector<llama_token> ids;
  while (*s) {
    char* end = nullptr;
    long v = std::strtol(s, &end, 10);
    if (end == s) {
      std::fprintf(stderr, "--ids: not a list of integers near '%s'\n", s);
      std::exit(2);
    }
    ids.push_back(static_cast<llama_token>(v));
    s = *end == ',' ? end + 1 : end;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  const char *model_path = nullptr, *ids_arg = nullptr, *out_path = nullptr;
  int threads = 1;
  bool repack = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--model")) model_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--ids")) ids_arg = argv[i + 1];
    else if (!std::strcmp(argv[i], "--out")) out_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    // --repack 0: no repacked / AMX weight buffers (their AMX matmul crashes on batches on some
    // AMX machines at build 11434).
    else if (!std::strcmp(argv[i], "--repack")) repack = std::atoi(argv[i + 1]) != 0;
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (!model_path || !ids_arg || !out_path || threads < 1) {
    std::fprintf(stderr, "usage: peer_logits --model GGUF --ids 1,2,3 --out FILE [--threads N] [--repack 0|1]\n");
    return 2;
  }
  const std::vector<llama_token> ids = parse_ids(ids_arg);
  if (ids.empty()) {
    std::fprintf(stderr, "--ids: empty\n");
    return 2;
  }

  llama_log_set(quiet_log, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.use_extra_bufts = repack;
  llama_model* model = llama_model_load_from_file(model_path, mp);
  if (!model) {
    std::fprintf(stderr, "cannot load %s\n", model_path);
    return 1;
  }
  const int n = static_cast<int>(ids.size());
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n);
  cp.n_batch = static_cast<uint32_t>(n);
  cp.n_ubatch = static_cast<uint32_t>(n);
  cp.n_seq_max = 1;
  cp.n_threads = threads;
  cp.n_threads_batch = threads;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "cannot create a context of %d tokens\n", n);
    return 1;
  }
  std::fprintf(stderr, "peer_logits: %d ids, KV cache %s, flash attention %s, %d threads\n", n,
               ggml_type_name(cp.type_k), llama_flash_attn_type_name(cp.flash_attn_type),
               threads);

  llama_batch batch = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; ++i) {
    batch.token[i] = ids[i];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = n;
  if (int rc = llama_decode(ctx, batch); rc != 0) {
    std::fprintf(stderr, "llama_decode failed: %d\n", rc);
    return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  FILE* f = std::fopen(out_path, "wb");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", out_path);
    return 1;
  }
  for (int i = 0; i < n; ++i) {
    const float* row = llama_get_logits_ith(ctx, i);
    if (std::fwrite(row, sizeof(float), n_vocab, f) != static_cast<size_t>(n_vocab)) {
      std::fprintf(stderr, "short write to %s\n", out_path);
      return 1;
    }
  }
  std::fclose(f);
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
