#include "commands.h"

#include <omp.h>

#include <cstdio>
#include <fstream>
#include <chrono>
#include <functional>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "args.h"
#include "loaded_model.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/engine/llm_engine.h"
#include "tessera/model/local_runner.h"
#include "tessera/tokenizer/chat_template.h"
#include "topology_launch.h"

namespace tessera::cli {
namespace {

const std::set<std::string> kSamplingOptions = {"max-tokens",
                                                "temperature",
                                                "top-k",
                                                "top-p",
                                                "min-p",
                                                "seed",
                                                "repetition-penalty",
                                                "presence-penalty",
                                                "frequency-penalty",
                                                "threads",
                                                "model",
                                                "prompt",
                                                "system"};

void apply_threads(const Args& a) {
  const int t = a.get_int("threads", 0);
  if (t < 0) fail(ErrorCode::kInvalidArgument, "--threads must be >= 0");
  if (t > 0) omp_set_num_threads(t);
}

// --backend cpu|guarded|cuda: the device one in-process model runs on (device 0).
Device backend_device(const Args& a) { return {parse_device_type(a.get_or("backend", "cpu")), 0}; }

sampling::SamplingParams sampling_from(const Args& a) {
  sampling::SamplingParams s;
  s.temperature = static_cast<float>(a.get_double("temperature", 0.0));
  s.top_k = a.get_int("top-k", 0);
  s.top_p = static_cast<float>(a.get_double("top-p", 1.0));
  s.min_p = static_cast<float>(a.get_double("min-p", 0.0));
  s.repetition_penalty = static_cast<float>(a.get_double("repetition-penalty", 1.0));
  s.presence_penalty = static_cast<float>(a.get_double("presence-penalty", 0.0));
  s.frequency_penalty = static_cast<float>(a.get_double("frequency-penalty", 0.0));
  if (auto seed = a.get("seed")) s.seed = static_cast<uint64_t>(std::stoull(*seed));
  return s;
}

std::string render_chat(const tokenizer::Tokenizer& tok, const std::string& source,
                        const nlohmann::ordered_json& messages) {
  const auto& src = tok.chat_template();
  if (src.empty()) fail(ErrorCode::kNotFound, source, " has no chat template");
  tokenizer::ChatTemplate tmpl(src, tok.bos_token(), tok.eos_token());
  return tmpl.render(messages, nullptr, /*add_generation_prompt=*/true);
}
std::string render_chat(const LoadedModel& m, const nlohmann::ordered_json& messages) {
  return render_chat(*m.tokenizer, m.path, messages);
}
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) ids.push_back(static_cast<int32_t>(std::stol(item)));
  return ids;
}

// The prompt of `generate`: --prompt-ids, or --prompt TEXT (with --chat: through the chat
// template, after an optional --system message).
std::vector<int32_t> prompt_from(const Args& a, const tokenizer::Tokenizer& tok,
                                 const std::string& source) {
  if (auto ids = a.get("prompt-ids")) return parse_ids(*ids);
  auto text = a.get("prompt");
  if (!text) fail(ErrorCode::kInvalidArgument, "generate needs --prompt TEXT (or --prompt-ids)");
  if (!a.flag("chat")) return tok.encode(*text);
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  if (auto sys = a.get("system")) msgs.push_back({{"role", "system"}, {"content", *sys}});
  msgs.push_back({{"role", "user"}, {"content", *text}});
  return tok.encode(render_chat(tok, source, msgs), {.add_special = false, .parse_special = true});
}

// One request through the engine, its text streamed to on_text as it comes.
struct Outcome {
  std::string text, finish, error;
  std::vector<int32_t> ids;
  nlohmann::json logprobs = nlohmann::json::array();
  int cached_tokens = 0;  // prompt tokens the prefix cache held
  double first_token_seconds = 0, total_seconds = 0;
};

Outcome run_request(engine::LlmEngine& engine, const protocol::GenerationRequest& req,
                    const std::function<void(const std::string&)>& on_text) {
  using Clock = std::chrono::steady_clock;
  Outcome r;
  std::promise<void> done;
  const auto t0 = Clock::now();
  engine.submit(engine.validate(req), [&](const protocol::RequestOutput& o) {
    if (r.ids.empty() && !o.new_token_ids.empty())
      r.first_token_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    r.text += o.new_text;
    for (const auto& lp : o.logprobs) {
      nlohmann::json top = nlohmann::json::array();
      for (const auto& t : lp.top) top.push_back({t.token, t.logprob});
      r.logprobs.push_back({{"token", lp.token}, {"logprob", lp.logprob}, {"top", top}});
    }
    r.ids.insert(r.ids.end(), o.new_token_ids.begin(), o.new_token_ids.end());
    if (on_text) on_text(o.new_text);
    r.cached_tokens = o.cached_tokens;
    if (o.finished()) {
      r.finish = protocol::finish_reason_name(o.finish);
      r.error = o.error;
      r.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
      done.set_value();
    }
  });
  done.get_future().wait();
  if (!r.error.empty()) fail(ErrorCode::kInternal, "generation failed: ", r.error);
  return r;
}

// Time to first token covers the prompt (less what the prefix cache held); the rest is decode.
void print_speed(const Outcome& r, size_t prompt_tokens) {
  const size_t prefilled = prompt_tokens - std::min(prompt_tokens, size_t(r.cached_tokens));
  const double decode = r.total_seconds - r.first_token_seconds;
  std::fprintf(stderr,
               "\n[prefill: %zu tokens (+%d cached) in %.3f s, %.1f tok/s | decode: %zu tokens in "
               "%.3f s, %.1f tok/s]\n",
               prefilled, r.cached_tokens, r.first_token_seconds,
               r.first_token_seconds > 0 ? prefilled / r.first_token_seconds : 0.0, r.ids.size(),
               decode, decode > 0 && r.ids.size() > 1 ? (r.ids.size() - 1) / decode : 0.0);
}

}  // namespace

int cmd_models(const std::vector<std::string>& argv) {
  Args a(argv, {}, {});
  const auto& pos = a.positionals();
  if (pos.empty() || (pos[0] != "pull" && pos[0] != "path"))
    fail(ErrorCode::kInvalidArgument, "usage: tessera models pull|path [NAME]");
  const std::string name = pos.size() > 1 ? pos[1] : default_model().name;
  const KnownModel* m = find_known_model(name);
  if (!m) fail(ErrorCode::kNotFound, "unknown model '", name, "'");
  std::cout << (pos[0] == "pull" ? pull_model(*m) : resolve_model_path(name)) << "\n";
  return 0;
}

// `generate --config FILE`: one request through the worker group the file describes (the engine
// and its processes, no HTTP front end). Same output as the single-process path.
// `generate`: one request through the engine, on one in-process worker (--model, on --backend's
// device) or on a topology's worker group (--config): the same step loop, sampler, stop rules and
// detokenizer as `serve`, so the command line and the server cannot disagree.
int generate_with_engine(const Args& a, const engine::EngineConfig& cfg) {
  engine::LlmEngine engine(cfg);
  engine.start();
  const auto& tok = engine.tokenizer();
  protocol::GenerationRequest req;
  req.request_id = "generate";
  req.prompt_ids = prompt_from(a, tok, cfg.model_path);
  req.sampling = sampling_from(a);
  req.stopping.max_tokens = a.get_int("max-tokens", 128);
  if (req.stopping.max_tokens < 0) fail(ErrorCode::kInvalidArgument, "--max-tokens must be >= 0");
  req.stopping.ignore_eos = a.flag("ignore-eos");
  if (const int k = a.get_int("logprobs", -1); k >= 0) {
    req.sampling.logprobs = true;
    req.sampling.top_logprobs = k;
  }
  const bool json = a.flag("json");
  const Outcome r = run_request(engine, req, [json](const std::string& piece) {
    if (!json) std::cout << piece << std::flush;
  });
  engine.shutdown(0.0);
  if (json) {
    nlohmann::json out{{"text", r.text},
                       {"token_ids", r.ids},
                       {"prompt_token_ids", req.prompt_ids},
                       {"finish_reason", r.finish}};
    if (req.sampling.logprobs) out["logprobs"] = r.logprobs;
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
  }
  print_speed(r, req.prompt_ids.size());
  return 0;
}

int cmd_generate(const std::vector<std::string>& argv) {
  auto opts = kSamplingOptions;
  opts.insert("prompt-ids");
  opts.insert("config");
  opts.insert("logprobs");
  opts.insert("backend");
  opts.insert("kv-cache-mb");
  Args a(argv, opts, {"json", "chat", "ignore-eos"});
  apply_threads(a);
  if (a.get("config")) return generate_with_engine(a, launch_from_config(*a.get("config"), 0).engine);
  const std::string model_arg = a.get_or("model", default_model().name);
  const int kv_mb = a.get_int("kv-cache-mb", 256);
  if (kv_mb <= 0) fail(ErrorCode::kInvalidArgument, "--kv-cache-mb must be > 0");
  const std::string path = resolve_model_path(model_arg);
  return generate_with_engine(a, engine::EngineConfig{.model_path = path,
                                                      .served_model_name = model_arg,
                                                      .kv_cache_bytes = size_t(kv_mb) << 20,
                                                      .device = backend_device(a)});
}

// `chat`: a conversation through the engine (in-process worker on --backend's device). Each turn
// sends the whole conversation; the prefix cache holds the earlier turns' full blocks, so a turn
// prefills little more than what is new.
int cmd_chat(const std::vector<std::string>& argv) {
  auto opts = kSamplingOptions;
  opts.insert("backend");
  opts.insert("kv-cache-mb");
  Args a(argv, opts, {});
  apply_threads(a);
  const std::string model_arg = a.get_or("model", default_model().name);
  const int kv_mb = a.get_int("kv-cache-mb", 256);
  if (kv_mb <= 0) fail(ErrorCode::kInvalidArgument, "--kv-cache-mb must be > 0");
  const std::string path = resolve_model_path(model_arg);
  engine::LlmEngine engine(engine::EngineConfig{.model_path = path,
                                                .served_model_name = model_arg,
                                                .kv_cache_bytes = size_t(kv_mb) << 20,
                                                .device = backend_device(a)});
  engine.start();
  const auto& tok = engine.tokenizer();
  const int ctx = engine.model_info().max_model_len;
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  if (auto sys = a.get("system")) msgs.push_back({{"role", "system"}, {"content", *sys}});
  const int max_tokens = a.get_int("max-tokens", 512);
  std::string line;
  std::cerr << "tessera chat: " << path << " (empty line or EOF ends)\n";
  for (int turn = 0;; ++turn) {
    std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line) || line.empty()) break;
    msgs.push_back({{"role", "user"}, {"content", line}});
    protocol::GenerationRequest req;
    req.request_id = "chat-" + std::to_string(turn);
    req.prompt_ids = tok.encode(render_chat(tok, path, msgs),
                                {.add_special = false, .parse_special = true});
    const int room = ctx - static_cast<int>(req.prompt_ids.size());
    if (room < 1) fail(ErrorCode::kOutOfRange, "the conversation fills the context of ", ctx,
                       " tokens");
    req.sampling = sampling_from(a);
    req.stopping.max_tokens = std::min(max_tokens, room);
    const Outcome r = run_request(engine, req, [](const std::string& piece) {
      std::cout << piece << std::flush;
    });
    std::cout << "\n";
    print_speed(r, req.prompt_ids.size());
    msgs.push_back({{"role", "assistant"}, {"content", r.text}});
  }
  engine.shutdown(0.0);
  return 0;
}

int cmd_tokenize(const std::vector<std::string>& argv) {
  Args a(argv, {"model"}, {"json", "no-special"});
  LoadedModel m = load_model(a.get_or("model", default_model().name), /*with_weights=*/false);
  std::string text;
  for (size_t i = 0; i < a.positionals().size(); ++i) text += (i ? " " : "") + a.positionals()[i];
  auto ids =
      m.tokenizer->encode(text, {.add_special = !a.flag("no-special"), .parse_special = true});
  if (a.flag("json")) {
    std::cout << nlohmann::json{{"ids", ids}}.dump() << "\n";
  } else {
    for (int32_t id : ids) {
      nlohmann::json piece = m.tokenizer->token_bytes(id);
      std::cout << id << "\t"
                << piece.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
  }
  return 0;
}

int cmd_template(const std::vector<std::string>& argv) {
  Args a(argv, {"model", "messages"}, {});
  LoadedModel m = load_model(a.get_or("model", default_model().name), /*with_weights=*/false);
  auto file = a.get("messages");
  if (!file) fail(ErrorCode::kInvalidArgument, "template needs --messages FILE.json");
  std::ifstream in(*file);
  if (!in) fail(ErrorCode::kNotFound, "cannot read ", *file);
  nlohmann::ordered_json msgs;
  try {
    msgs = nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::kInvalidArgument, *file, " is not valid JSON: ", e.what());
  }
  if (msgs.is_object() && msgs.contains("messages")) msgs = msgs["messages"];
  if (!msgs.is_array()) fail(ErrorCode::kInvalidArgument, *file, " must hold a list of messages");
  std::cout << render_chat(m, msgs);
  return 0;
}

// Debug/test hook: teacher-forced logits of every position, raw float32 rows, written to --out.
// --chunks N splits the sequence into N prefill steps to exercise the paged cache.
int cmd_logits(const std::vector<std::string>& argv) {
  Args a(argv, {"model", "ids", "out", "threads", "chunk", "backend"}, {});
  apply_threads(a);
  LoadedModel m = load_model(a.get_or("model", default_model().name), true, backend_device(a));
  auto ids = parse_ids(a.get_or("ids", ""));
  if (ids.empty()) fail(ErrorCode::kInvalidArgument, "logits needs --ids 1,2,3");
  const auto out_path = a.get("out");
  if (!out_path) fail(ErrorCode::kInvalidArgument, "logits needs --out FILE");
  const size_t chunk = static_cast<size_t>(std::max(1, a.get_int("chunk", 1 << 30)));
  model::LocalRunner runner(
      *m.model, {.num_blocks = kv_cache::blocks_for(static_cast<int64_t>(ids.size()), 16) + 1});
  const int seq = runner.add_sequence();
  std::ofstream out(*out_path, std::ios::binary);
  for (size_t i = 0; i < ids.size(); i += chunk) {
    const size_t n = std::min(chunk, ids.size() - i);
    const model::LocalRunner::Chunk c{.seq = seq, .tokens = {ids.data() + i, n}};
    const Tensor logits = to_host(runner.step({&c, 1}, /*all_rows=*/true));
    out.write(static_cast<const char*>(logits.data()),
              static_cast<std::streamsize>(logits.nbytes()));
  }
  return out.good() ? 0 : 1;
}

}  // namespace tessera::cli
