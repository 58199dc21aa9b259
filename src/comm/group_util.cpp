#include "group_util.h"

#include <algorithm>
#include <cmath>

#include "tessera/core/error.h"

namespace tessera::comm::group_util {

Clock::time_point deadline_after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

double seconds_left(Clock::time_point deadline) {
  return std::max(0.0, std::chrono::duration<double>(deadline - Clock::now()).count());
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return s;
}

void check_params(const GroupParams& p, const char* engine) {
  if (p.store == nullptr)
    fail(ErrorCode::kInvalidArgument, "group ", p.name, ": a ", engine,
         " communicator needs a rendezvous store");
  if (p.name.empty()) fail(ErrorCode::kInvalidArgument, "a ", engine, " group needs a name");
  if (p.size < 1 || p.rank < 0 || p.rank >= p.size)
    fail(ErrorCode::kInvalidArgument, "group ", p.name, ": rank ", p.rank, " of size ", p.size);
  if (!(p.timeout_seconds > 0))
    fail(ErrorCode::kInvalidArgument, "group ", p.name, ": timeout ", p.timeout_seconds,
         " s is not positive");
}

void join(const GroupParams& p, Clock::time_point deadline) {
  const std::string prefix = p.name + "/joined/";
  p.store->set_string(prefix + std::to_string(p.rank), "1");
  for (int r = 0; r < p.size; ++r) {
    if (r == p.rank) continue;
    try {
      p.store->get(prefix + std::to_string(r), seconds_left(deadline));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kDeadlineExceeded) throw;
      std::vector<int> missing;
      for (int q = 0; q < p.size; ++q)
        if (!p.store->has(prefix + std::to_string(q))) missing.push_back(q);
      fail(ErrorCode::kDeadlineExceeded, "group ", p.name, ": connect on rank ", p.rank,
           " timed out after ", p.timeout_seconds, " s waiting for rank ", rank_list(missing),
           " (never registered with the rendezvous store)");
    }
  }
}

size_t reduce_scatter_block(const std::string& group, int size, const Tensor& in,
                            const Tensor& out) {
  const auto n = static_cast<int64_t>(size);
  if (!in.defined() || !out.defined() || !in.is_contiguous() || !out.is_contiguous() ||
      in.dtype() != DType::kF32 || out.dtype() != DType::kF32 || in.ndim() < 1 || out.ndim() < 1 ||
      in.dim(0) != n * out.dim(0) || in.numel() != n * out.numel())
    fail(ErrorCode::kInvalidArgument, group, " reduce_scatter_sum: needs F32 `in` of ", size,
         " blocks of `out` along dim 0, got in ",
         in.defined() ? in.str() : std::string("undefined"), " and out ",
         out.defined() ? out.str() : std::string("undefined"));
  return static_cast<size_t>(out.numel());
}

void wait_dropping_error(Work& w) noexcept {
  try {
    w.wait();
  } catch (const std::exception&) {
    // Dropped, as communicator.h says: the communicator is aborted and says so next time.
  }
}

}  // namespace tessera::comm::group_util
