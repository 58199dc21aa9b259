// Helpers shared by the engines (private to src/comm): parameter checks, deadlines, the
// registration step that lets a connect timeout name the ranks that never showed up, and
// all_to_all_v's checked block layout (all_to_all.cpp).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "tessera/comm/groups.h"

namespace tessera::comm::group_util {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double seconds);
double seconds_left(Clock::time_point deadline);       // >= 0
std::string rank_list(const std::vector<int>& ranks);  // "1, 3"
// Throws kInvalidArgument for a missing store, a bad rank/size or a non-positive timeout.
void check_params(const GroupParams& p, const char* engine);
// Publishes "<name>/joined/<rank>" and waits until every rank of the group has; throws
// kDeadlineExceeded naming the group and the ranks that never registered.
void join(const GroupParams& p, Clock::time_point deadline);

// reduce_scatter_sum's shapes: `in` F32, contiguous, size equal blocks along dim 0 of `out`'s
// shape. Returns the elements of one block; throws kInvalidArgument naming the group otherwise.
size_t reduce_scatter_block(const std::string& group, int size, const Tensor& in,
                            const Tensor& out);

}  // namespace tessera::comm::group_util

namespace tessera::comm::group_util {

// all_to_all_v's byte layout, checked: per rank, the byte offset and length of its block in
// `in` (send) and in `out` (recv). Throws kInvalidArgument naming the group and rank when the
// counts do not match the group size, are negative, do not add up to the tensors' rows, or the
// tensors differ in dtype or row shape.
struct AllToAllLayout {
  std::vector<size_t> send_off, send_bytes, recv_off, recv_bytes;
};
AllToAllLayout all_to_all_layout(const std::string& group, int rank, int size, const Tensor& in,
                                 const std::vector<int64_t>& send_rows, const Tensor& out,
                                 const std::vector<int64_t>& recv_rows);
// Host engines: rank `rank`'s own block of `in` into its place in `out` (it never leaves the
// process). The caller holds host access to both.
void copy_own_block(const AllToAllLayout& l, int rank, const Tensor& in, Tensor& out);

// What a Work's destructor does when nobody waited for it (communicator.h): waits, and drops the
// error (the communicator is aborted then, and its next call says so).
void wait_dropping_error(Work& w) noexcept;

}  // namespace tessera::comm::group_util
