// Helpers shared by the Gloo and NCCL engines (private to src/comm): parameter checks, deadlines,
// and the registration step that lets a connect timeout name the ranks that never showed up.
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

}  // namespace tessera::comm::group_util
