// The progress thread behind a communicator's *_async calls (private to src/comm): a FIFO of ops
// run one at a time on one thread, each op's completion and error held by the Work it returned.
// One thread per communicator keeps every rank's ops in issue order, which is what makes the
// collectives match across ranks; it is started on the first submit, so a communicator that never
// goes async costs no thread.
//
// Ownership: the Communicator that made it owns it; submit/drain/stop are called from the
// communicator's user thread only (drain is also safe, and a no-op, on the progress thread).
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "tessera/comm/communicator.h"

namespace tessera::comm::detail {

// Completion of one queued op, shared by the queue and its Work.
struct WorkState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  bool reported = false;  // wait() has thrown (or returned) once
  std::exception_ptr error;
};

class ProgressQueue {
 public:
  explicit ProgressQueue(std::string group);
  ~ProgressQueue();  // stop()
  ProgressQueue(const ProgressQueue&) = delete;
  ProgressQueue& operator=(const ProgressQueue&) = delete;

  std::unique_ptr<Work> submit(std::function<void()> fn);
  // Returns when every op submitted so far has run; a no-op on the progress thread.
  void drain();
  // Runs what is queued, then joins the thread. Later submits run inline (the engine is going).
  void stop();

 private:
  struct Item {
    std::function<void()> fn;
    std::shared_ptr<WorkState> state;
  };
  void run();

  std::string group_;
  std::mutex mu_;
  std::condition_variable cv_;       // items queued or stopping
  std::condition_variable idle_cv_;  // completed_ advanced
  std::deque<Item> items_;
  uint64_t submitted_ = 0, completed_ = 0;
  bool stopping_ = false;
  std::thread thread_;
  std::thread::id thread_id_;
};

}  // namespace tessera::comm::detail
