// tessera generate, chat, tokenize, template, logits and models: the commands that run a model
// (or its tokenizer) in this process.
#include "commands.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "loaded_model.h"
#include "model_registry.h"
#include "tessera/core/error.h"
#include "tessera/engine/llm_engine.h"
#include "tessera/grammar/front_ends.h"
#include "tessera/json/bounded_json.h"
#include "tessera/kv_cache/kv_pool.h"
#include "tessera/model/local_runner.h"
#include "tessera/tokenizer/chat_template.h"
#include "topology_launch.h"

namespace tessera::cli {
namespace {

// The options generate and chat share: the model, the sampling parameters and the threads.
struct SamplingOpts {
  std::string model = default_model().name;
  std::string backend = "cpu";
  int kv_cache_mb = 256;
  int threads = 0;
  std::string activations = "int8";
  CLI::Option* activations_opt = nullptr;
  std::string kv_cache_dtype = config::SchedulerSpec{}.kv_cache_dtype;  // the topology's
  CLI::Option* kv_cache_dtype_opt = nullptr;
  int max_tokens;
  float temperature = 0, top_p = 1, min_p = 0, repetition_penalty = 1, presence_penalty = 0,
        frequency_penalty = 0;
  int top_k = 0;
  uint64_t seed = 0;
  CLI::Option* seed_opt = nullptr;
  std::string system;
  CLI::Option* system_opt = nullptr;
};

void add_sampling(CLI::App* c, SamplingOpts& o, int max_tokens) {
  o.max_tokens = max_tokens;
  c->add_option("--model", o.model, "a GGUF file, a Hugging Face directory or a known model name")
      ->capture_default_str();
  add_backend_option(c, o.backend);
  c->add_option("--kv-cache-mb", o.kv_cache_mb, "KV cache size in MiB")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  c->add_option("--threads", o.threads, "OpenMP threads (0: all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  o.activations_opt = add_activations_option(c, o.activations);
  o.kv_cache_dtype_opt = add_kv_cache_dtype_option(c, o.kv_cache_dtype);
  c->add_option("--max-tokens", o.max_tokens, "most tokens to generate")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--temperature", o.temperature, "sampling temperature (0: greedy), in [0, 2]")
      ->capture_default_str();
  c->add_option("--top-k", o.top_k, "sample from the k most likely tokens (0: all)")
      ->capture_default_str();
  c->add_option("--top-p", o.top_p, "nucleus sampling mass, in (0, 1]")->capture_default_str();
  c->add_option("--min-p", o.min_p, "drop tokens below min-p x the top probability, in [0, 1]")
      ->capture_default_str();
  o.seed_opt = c->add_option("--seed", o.seed, "sampling seed (default: random)");
  c->add_option("--repetition-penalty", o.repetition_penalty, "in (0, 10]")->capture_default_str();
  c->add_option("--presence-penalty", o.presence_penalty, "in [-2, 2]")->capture_default_str();
  c->add_option("--frequency-penalty", o.frequency_penalty, "in [-2, 2]")->capture_default_str();
  o.system_opt = c->add_option("--system", o.system, "a system message before the user's");
}

void apply_threads(const SamplingOpts& o) {
  if (o.threads > 0) omp_set_num_threads(o.threads);
}

sampling::SamplingParams sampling_from(const SamplingOpts& o) {
  sampling::SamplingParams s;
  s.temperature = o.temperature;
  s.top_k = o.top_k;
  s.top_p = o.top_p;
  s.min_p = o.min_p;
  s.repetition_penalty = o.repetition_penalty;
  s.presence_penalty = o.presence_penalty;
  s.frequency_penalty = o.frequency_penalty;
  if (o.seed_opt->count()) s.seed = o.seed;
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

struct GenerateOpts : SamplingOpts {
  std::string prompt, prompt_ids, config, json_schema, grammar;
  CLI::Option *prompt_opt = nullptr, *prompt_ids_opt = nullptr, *config_opt = nullptr,
              *logprobs_opt = nullptr;
  int logprobs = 0;
  bool json = false, chat = false, ignore_eos = false;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorCode::kNotFound, "cannot read ", path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// --json-schema FILE or --grammar FILE (GBNF) as the grammar the output must match ("": none).
std::string constraint_from(const GenerateOpts& o) {
  if (!o.json_schema.empty() && !o.grammar.empty())
    fail(ErrorCode::kInvalidArgument, "--json-schema and --grammar cannot be combined");
  if (!o.grammar.empty()) return read_file(o.grammar);
  if (o.json_schema.empty()) return "";
  return grammar::json_schema_to_gbnf(
      json::parse_ordered(read_file(o.json_schema), json::kRequestLimits, o.json_schema));
}

// The prompt of `generate`: --prompt-ids, or --prompt TEXT (with --chat: through the chat
// template, after an optional --system message).
std::vector<int32_t> prompt_from(const GenerateOpts& o, const tokenizer::Tokenizer& tok,
                                 const std::string& source) {
  if (o.prompt_ids_opt->count()) return parse_ids(o.prompt_ids);
  if (!o.prompt_opt->count())
    fail(ErrorCode::kInvalidArgument, "generate needs --prompt TEXT (or --prompt-ids)");
  if (!o.chat) return tok.encode(o.prompt);
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  if (o.system_opt->count()) msgs.push_back({{"role", "system"}, {"content", o.system}});
  msgs.push_back({{"role", "user"}, {"content", o.prompt}});
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

Command add_models(CLI::App& root) {
  struct Opts {
    std::string action, name = default_model().name;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = root.add_subcommand("models", "download a known model, or print its path");
  c->add_option("action", o->action,
                "pull: download (if missing) and print the path; path: print it")
      ->required()
      ->check(CLI::IsMember({"pull", "path"}));
  c->add_option("name", o->name, "a known model name")->capture_default_str();
  return {c, [o] {
            const KnownModel* m = find_known_model(o->name);
            if (!m) fail(ErrorCode::kNotFound, "unknown model '", o->name, "'");
            std::cout << (o->action == "pull" ? pull_model(*m) : resolve_model_path(o->name))
                      << "\n";
            return 0;
          }};
}

// `generate`: one request through the engine, on one in-process worker (--model, on --backend's
// device) or on a topology's worker group (--config): the same step loop, sampler, stop rules and
// detokenizer as `serve`, so the command line and the server cannot disagree.
int generate_with_engine(const GenerateOpts& o, const engine::EngineConfig& cfg) {
  engine::LlmEngine engine(cfg);
  engine.start();
  const auto& tok = engine.tokenizer();
  protocol::GenerationRequest req;
  req.request_id = "generate";
  req.prompt_ids = prompt_from(o, tok, cfg.model_path);
  req.sampling = sampling_from(o);
  req.sampling.grammar = constraint_from(o);
  req.stopping.max_tokens = o.max_tokens;
  req.stopping.ignore_eos = o.ignore_eos;
  if (o.logprobs_opt->count()) {
    req.sampling.logprobs = true;
    req.sampling.top_logprobs = o.logprobs;
  }
  const bool json = o.json;
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

Command add_generate(CLI::App& root) {
  auto o = std::make_shared<GenerateOpts>();
  CLI::App* c = root.add_subcommand(
      "generate", "one generation through the engine (in process, or a topology's worker group)");
  add_sampling(c, *o, 128);
  o->prompt_opt = c->add_option("--prompt", o->prompt, "the prompt text");
  o->prompt_ids_opt =
      c->add_option("--prompt-ids", o->prompt_ids, "the prompt as token ids: 1,2,3 (no tokenizer)");
  o->config_opt = c->add_option("--config", o->config,
                                "a topology YAML (configs/): generate through its worker group");
  o->logprobs_opt = c->add_option("--logprobs", o->logprobs,
                                  "return each token's logprob and the N most likely (default: "
                                  "none)")
                        ->check(CLI::NonNegativeNumber);
  c->add_option("--json-schema", o->json_schema,
                "a JSON Schema file: the output is JSON that satisfies it (constrained decoding)");
  c->add_option("--grammar", o->grammar,
                "a GBNF grammar file (start rule `root`) the output matches");
  c->add_flag("--json", o->json, "print one JSON object (text, token ids, finish reason)");
  c->add_flag("--chat", o->chat, "wrap the prompt in the model's chat template");
  c->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-sequence");
  return {c, [o] {
            apply_threads(*o);
            if (o->config_opt->count()) {
              // The flag, when given, wins over the topology's cpu_activations.
              engine::EngineConfig e = launch_from_config(o->config, 0).engine;
              if (o->activations_opt->count())
                e.cpu_activations = ops::cpu::parse_activations(o->activations);
              if (o->kv_cache_dtype_opt->count())
                e.kv_cache_dtype = kv_cache::parse_kv_dtype(o->kv_cache_dtype);
              return generate_with_engine(*o, e);
            }
            const std::string path = resolve_model_path(o->model);
            return generate_with_engine(
                *o, engine::EngineConfig{
                        .model_path = path,
                        .served_model_name = o->model,
                        .kv_cache_bytes = size_t(o->kv_cache_mb) << 20,
                        .kv_cache_dtype = kv_cache::parse_kv_dtype(o->kv_cache_dtype),
                        .device = {parse_device_type(o->backend), 0},
                        .cpu_activations = ops::cpu::parse_activations(o->activations)});
          }};
}

// `chat`: a conversation through the engine (in-process worker on --backend's device). Each turn
// sends the whole conversation; the prefix cache holds the earlier turns' full blocks, so a turn
// prefills little more than what is new.
int run_chat(const SamplingOpts& o) {
  apply_threads(o);
  const std::string path = resolve_model_path(o.model);
  engine::LlmEngine engine(
      engine::EngineConfig{.model_path = path,
                           .served_model_name = o.model,
                           .kv_cache_bytes = size_t(o.kv_cache_mb) << 20,
                           .kv_cache_dtype = kv_cache::parse_kv_dtype(o.kv_cache_dtype),
                           .device = {parse_device_type(o.backend), 0},
                           .cpu_activations = ops::cpu::parse_activations(o.activations)});
  engine.start();
  const auto& tok = engine.tokenizer();
  const int ctx = engine.model_info().max_model_len;
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  if (o.system_opt->count()) msgs.push_back({{"role", "system"}, {"content", o.system}});
  std::string line;
  std::cerr << "tessera chat: " << path << " (empty line or EOF ends)\n";
  for (int turn = 0;; ++turn) {
    std::cout << "> " << std::flush;
    if (!std::getline(std::cin, line) || line.empty()) break;
    msgs.push_back({{"role", "user"}, {"content", line}});
    protocol::GenerationRequest req;
    req.request_id = "chat-" + std::to_string(turn);
    req.prompt_ids =
        tok.encode(render_chat(tok, path, msgs), {.add_special = false, .parse_special = true});
    const int room = ctx - static_cast<int>(req.prompt_ids.size());
    if (room < 1)
      fail(ErrorCode::kOutOfRange, "the conversation fills the context of ", ctx, " tokens");
    req.sampling = sampling_from(o);
    req.stopping.max_tokens = std::min(o.max_tokens, room);
    const Outcome r = run_request(
        engine, req, [](const std::string& piece) { std::cout << piece << std::flush; });
    std::cout << "\n";
    print_speed(r, req.prompt_ids.size());
    msgs.push_back({{"role", "assistant"}, {"content", r.text}});
  }
  engine.shutdown(0.0);
  return 0;
}

Command add_chat(CLI::App& root) {
  auto o = std::make_shared<SamplingOpts>();
  CLI::App* c = root.add_subcommand(
      "chat", "an interactive conversation on stdin/stdout, through the model's chat template");
  add_sampling(c, *o, 512);
  return {c, [o] { return run_chat(*o); }};
}

Command add_tokenize(CLI::App& root) {
  struct Opts {
    std::string model = default_model().name;
    bool json = false, no_special = false;
    std::vector<std::string> text;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = root.add_subcommand("tokenize", "the token ids (and pieces) of a text");
  c->add_option("--model", o->model, "a GGUF file, a Hugging Face directory or a known model name")
      ->capture_default_str();
  c->add_flag("--json", o->json, "print {\"ids\": [...]}");
  c->add_flag("--no-special", o->no_special, "do not add the BOS/EOS tokens");
  c->add_option("text", o->text, "the text (several arguments are joined by spaces)");
  return {c, [o] {
            LoadedModel m = load_model(o->model, /*with_weights=*/false);
            std::string text;
            for (size_t i = 0; i < o->text.size(); ++i) text += (i ? " " : "") + o->text[i];
            auto ids =
                m.tokenizer->encode(text, {.add_special = !o->no_special, .parse_special = true});
            if (o->json) {
              std::cout << nlohmann::json{{"ids", ids}}.dump() << "\n";
            } else {
              for (int32_t id : ids) {
                nlohmann::json piece = m.tokenizer->token_bytes(id);
                std::cout << id << "\t"
                          << piece.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                          << "\n";
              }
            }
            return 0;
          }};
}

Command add_template(CLI::App& root) {
  struct Opts {
    std::string model = default_model().name, messages;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = root.add_subcommand(
      "template", "the prompt the model's chat template renders (with the generation prompt)");
  c->add_option("--model", o->model, "a GGUF file, a Hugging Face directory or a known model name")
      ->capture_default_str();
  c->add_option("--messages", o->messages,
                "a JSON file: a list of messages, or an object with \"messages\"")
      ->required();
  return {c, [o] {
            LoadedModel m = load_model(o->model, /*with_weights=*/false);
            std::ifstream in(o->messages);
            if (!in) fail(ErrorCode::kNotFound, "cannot read ", o->messages);
            nlohmann::ordered_json msgs;
            try {
              msgs = nlohmann::ordered_json::parse(in);
            } catch (const nlohmann::json::exception& e) {
              fail(ErrorCode::kInvalidArgument, o->messages, " is not valid JSON: ", e.what());
            }
            if (msgs.is_object() && msgs.contains("messages")) msgs = msgs["messages"];
            if (!msgs.is_array())
              fail(ErrorCode::kInvalidArgument, o->messages, " must hold a list of messages");
            std::cout << render_chat(m, msgs);
            return 0;
          }};
}

// Debug/test hook: teacher-forced logits of every position, raw float32 rows, written to --out.
// --chunk N prefills N tokens per step to exercise the paged cache.
Command add_logits(CLI::App& root) {
  struct Opts {
    std::string model = default_model().name, ids, out, backend = "cpu", activations = "int8",
                kv_cache_dtype = "f32";
    int threads = 0, chunk = 1 << 30;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = root.add_subcommand(
      "logits", "teacher-forced logits of every position, raw float32 rows (a test hook)");
  c->add_option("--model", o->model, "a GGUF file, a Hugging Face directory or a known model name")
      ->capture_default_str();
  c->add_option("--ids", o->ids, "the token ids: 1,2,3")->required();
  c->add_option("--out", o->out, "the file the rows are written to")->required();
  c->add_option("--threads", o->threads, "OpenMP threads (0: all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--chunk", o->chunk, "tokens per prefill step")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  add_backend_option(c, o->backend);
  add_activations_option(c, o->activations);
  add_kv_cache_dtype_option(c, o->kv_cache_dtype);
  return {c, [o] {
            if (o->threads > 0) omp_set_num_threads(o->threads);
            ops::cpu::set_activations(ops::cpu::parse_activations(o->activations));
            LoadedModel m = load_model(o->model, true, {parse_device_type(o->backend), 0});
            auto ids = parse_ids(o->ids);
            if (ids.empty()) fail(ErrorCode::kInvalidArgument, "logits needs --ids 1,2,3");
            const size_t chunk = static_cast<size_t>(o->chunk);
            model::LocalRunner runner(
                *m.model,
                {.num_blocks = kv_cache::blocks_for(static_cast<int64_t>(ids.size()), 16) + 1,
                 .kv_dtype = kv_cache::parse_kv_dtype(o->kv_cache_dtype)});
            const int seq = runner.add_sequence();
            std::ofstream out(o->out, std::ios::binary);
            for (size_t i = 0; i < ids.size(); i += chunk) {
              const size_t n = std::min(chunk, ids.size() - i);
              const model::LocalRunner::Chunk ch{.seq = seq, .tokens = {ids.data() + i, n}};
              const Tensor logits = to_host(runner.step({&ch, 1}, /*all_rows=*/true));
              out.write(static_cast<const char*>(logits.data()),
                        static_cast<std::streamsize>(logits.nbytes()));
            }
            return out.good() ? 0 : 1;
          }};
}

}  // namespace tessera::cli
