// The Generate/Chat stream reactor. Engine outputs arrive on the engine thread, which must not
// block: they are converted and queued under a mutex, and whoever finds no write in flight takes
// the "write token" and starts the next write; OnWriteDone passes the token on. Only the token
// holder calls StartWrite or Finish, so there is never more than one write outstanding and
// nothing is written after Finish. Holding the token also keeps the reactor alive (OnDone, which
// deletes it, can only run after Finish).
#if defined(TESSERA_HAVE_GRPC)
#include <deque>

#include "tessera/core/error.h"
#include "tessera/server/grpc_convert.h"
#include "tessera/server/grpc_service.h"

namespace tessera::server::rpc {
namespace {

using Response = pb::GenerateResponse;

class GenerationStream;

// Shared with the engine's output callback, which may outlive the reactor (and the server):
// `stream` is cleared in OnDone, after which outputs are dropped. The request id stays in the
// registry until both the call and the engine are done with it, so a client that reuses an id
// as soon as its call ends never meets the old request in the engine.
struct Link {
  std::mutex mu;
  GenerationStream* stream = nullptr;
  std::shared_ptr<StreamRegistry> registry;
  std::string id;
  bool submitted = false;    // submit() was called: abort on cancel
  bool engine_done = false;  // the engine sent its last output (or never got the request)
  bool call_done = false;    // Finish was (or is about to be) called
  bool released = false;

  void maybe_release_locked() {
    if (released || !call_done || !engine_done) return;
    released = true;
    registry->remove(id);
  }
};

class GenerationStream final : public grpc::ServerWriteReactor<Response> {
 public:
  GenerationStream(GrpcContext& ctx, std::string id, bool skip_text, StreamTools tools)
      : ctx_(ctx),
        id_(std::move(id)),
        skip_text_(skip_text),
        parallel_tools_(tools.parallel),
        link_(std::make_shared<Link>()) {
    if (tools.format != ToolFormat::kNone) parser_.emplace(tools.format);
    link_->stream = this;
    link_->registry = ctx.streams;
    link_->id = id_;
  }

  void start(engine::ValidRequest req) {
    std::shared_ptr<Link> link = link_;
    {
      // Set first: once submit() is under way, OnCancel must abort in the engine.
      std::lock_guard<std::mutex> lock(link->mu);
      link->submitted = true;
    }
    try {
      ctx_.engine.submit(std::move(req), [link](const protocol::RequestOutput& out) {
        std::unique_lock<std::mutex> lock(link->mu);
        if (out.finished()) {
          link->engine_done = true;
          link->maybe_release_locked();
        }
        if (link->stream != nullptr) link->stream->on_output(out, lock);
      });
    } catch (const Error& e) {
      grpc::Status status = to_status(e);
      if (!ctx_.engine.ready()) status = {grpc::StatusCode::UNAVAILABLE, e.what()};
      fail_now(std::move(status));
      return;
    }
    // A cancel that raced with submit() may have aborted before the engine knew the id.
    std::unique_lock<std::mutex> lock(link->mu);
    const bool cancelled = cancelled_ && !link->engine_done;
    lock.unlock();
    if (cancelled) ctx_.engine.abort(id_);
  }

 private:
  enum class Next { kNone, kWrite, kFinish };

  // Ends a call whose request the engine refused.
  void fail_now(grpc::Status status) {
    std::unique_lock<std::mutex> lock(link_->mu);
    link_->engine_done = true;
    if (link_->call_done || writing_) {  // a cancel got there first
      link_->maybe_release_locked();
      return;
    }
    pending_ = std::move(status);
    writing_ = true;
    act(take_next_locked(), lock);
  }

  // Engine thread, link->mu held.
  void on_output(const protocol::RequestOutput& out, std::unique_lock<std::mutex>& lock) {
    if (link_->call_done || pending_) return;  // cancelled or already complete
    std::vector<Response> msgs;
    append_responses(out, skip_text_, msgs);
    if (parser_) {
      parser_->feed(out.new_text, parsed_);
      if (out.finished() && !msgs.empty()) {
        parser_->finish(parsed_);
        if (!parallel_tools_ && parsed_.calls.size() > 1) parsed_.calls.resize(1);
        add_tool_calls(parsed_, "call_" + id_ + "-", msgs.back());
      }
    }
    for (Response& m : msgs) queue_.push_back(std::move(m));
    if (out.finished()) pending_ = grpc::Status::OK;
    if (writing_) return;
    writing_ = true;
    act(take_next_locked(), lock);
  }

  // Token held, mutex held: what to do next.
  Next take_next_locked() {
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      return Next::kWrite;
    }
    if (pending_) {
      link_->call_done = true;
      link_->maybe_release_locked();
      final_status_ = *pending_;
      return Next::kFinish;
    }
    writing_ = false;
    return Next::kNone;
  }

  // Releases the lock before calling into gRPC (its reactions take the same lock).
  void act(Next next, std::unique_lock<std::mutex>& lock) {
    lock.unlock();
    if (next == Next::kWrite) StartWrite(&current_);
    if (next == Next::kFinish) Finish(final_status_);
  }

  // Marks the call abandoned by the client; returns whether the engine must be told.
  bool cancel_locked(grpc::Status status) {
    cancelled_ = true;
    queue_.clear();
    if (!pending_ || pending_->ok()) pending_ = std::move(status);
    return link_->submitted && !link_->engine_done;
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(link_->mu);
    bool abort = false;
    // Not ok: the client is gone; stop generating.
    if (!ok) abort = cancel_locked({grpc::StatusCode::CANCELLED, "write failed"});
    const Next next = take_next_locked();
    lock.unlock();
    if (abort) ctx_.engine.abort(id_);
    lock.lock();
    act(next, lock);
  }

  // Client cancel, disconnect or deadline: abort in the engine and end the call now.
  void OnCancel() override {
    std::unique_lock<std::mutex> lock(link_->mu);
    if (link_->call_done) return;
    const bool abort = cancel_locked({grpc::StatusCode::CANCELLED, "cancelled"});
    Next next = Next::kNone;
    if (!writing_) {  // else the write in flight finishes (OnWriteDone)
      writing_ = true;
      next = take_next_locked();
    }
    lock.unlock();
    if (abort) ctx_.engine.abort(id_);
    lock.lock();
    act(next, lock);
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(link_->mu);
      link_->stream = nullptr;
    }
    delete this;
  }

  GrpcContext& ctx_;
  const std::string id_;
  const bool skip_text_;
  const bool parallel_tools_;
  std::shared_ptr<Link> link_;
  // Engine thread, link_->mu held: the Chat's tool-call parser and what it released so far.
  std::optional<ToolCallParser> parser_;
  ToolCallUpdate parsed_;
  // Guarded by link_->mu.
  std::deque<Response> queue_;
  std::optional<grpc::Status> pending_;  // finish with this once the queue is drained
  bool writing_ = false;                 // the write token is taken
  bool cancelled_ = false;               // the client went away (cancel, deadline, failed write)
  // Only the token holder touches these.
  Response current_;
  grpc::Status final_status_;
};

class FailedStream final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FailedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<Response>* start_stream(GrpcContext& ctx,
                                                 grpc::CallbackServerContext* call,
                                                 engine::ValidRequest req, bool skip_text,
                                                 StreamTools tools) {
  // gRPC also cancels the call at its deadline (OnCancel aborts); the engine gets it too, so a
  // queued request that can no longer finish in time is dropped before it costs a step.
  const auto left = call->deadline() - std::chrono::system_clock::now();
  if (left < std::chrono::hours(24 * 365)) {
    req.set_deadline(protocol::Clock::now() +
                     std::chrono::duration_cast<protocol::Clock::duration>(left));
  }
  auto* stream = new GenerationStream(ctx, req->request_id, skip_text, tools);
  stream->start(std::move(req));
  return stream;
}

grpc::ServerWriteReactor<Response>* failed_stream(grpc::Status status) {
  return new FailedStream(std::move(status));
}

}  // namespace tessera::server::rpc
#endif  // TESSERA_HAVE_GRPC
