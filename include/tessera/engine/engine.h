// EngineInterface: what the front ends (HTTP, gRPC) see of the engine. Implementations own the
// step loop thread, the scheduler state and the executor; every method here is thread-safe and
// never blocks on a step. Output callbacks run on the engine thread: they must only hand the
// output over (post to an I/O strand, push to a queue) and never block.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "tessera/core/metrics.h"
#include "tessera/engine/request_check.h"
#include "tessera/protocol/request.h"
#include "tessera/tokenizer/tokenizer.h"

namespace tessera::engine {

struct EngineLimits {
  int max_num_seqs = 64;              // running sequences
  int max_num_batched_tokens = 2048;  // tokens per step
  int max_waiting = 1024;             // queued requests before submit() refuses (-> 429)
};

class EngineInterface {
 public:
  virtual ~EngineInterface() = default;
  using OutputCallback = std::function<void(const protocol::RequestOutput&)>;

  // The one validation of a request against this engine's model (request_check.h): throws
  // RequestError naming the field.
  ValidRequest validate(protocol::GenerationRequest req, FieldNamer name = openai_field,
                        std::string_view prompt_param = "prompt") const {
    return validate_request(std::move(req), model_info(), name, prompt_param);
  }
  // Queues a validated request. Throws tessera::Error: kInvalidArgument for a request id in use,
  // kResourceExhausted when the queue is full, kInternal when the engine is not running. After a
  // successful submit the callback is called at least once, last with finished() true.
  virtual void submit(ValidRequest req, OutputCallback cb) = 0;
  // The choices of one API request (several prompts, n > 1): queued together, so the step loop
  // sees all of them or none (they start in the same step, and a request's batches do not
  // depend on thread timing); all or none are accepted. The default submits one by one.
  virtual void submit_all(std::vector<std::pair<ValidRequest, OutputCallback>> reqs) {
    for (auto& [req, cb] : reqs) submit(std::move(req), std::move(cb));
  }
  // Stops a request within one step and frees its KV blocks; unknown ids are ignored.
  virtual void abort(const std::string& request_id) = 0;

  virtual const tokenizer::Tokenizer& tokenizer() const = 0;
  virtual const ModelInfo& model_info() const = 0;
  virtual const EngineLimits& limits() const = 0;
  virtual MetricsRegistry& metrics() = 0;

  virtual bool ready() const = 0;    // model loaded, workers up, not draining
  virtual bool healthy() const = 0;  // the step loop made progress within its bound
  // Stops admitting, lets running requests finish for up to `drain_seconds`, then aborts the
  // rest and stops the loop.
  virtual void shutdown(double drain_seconds) = 0;
};

}  // namespace tessera::engine
