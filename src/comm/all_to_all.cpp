// all_to_all_v support shared by every engine: the checked byte layout of the send and receive
// blocks, and exchange_counts (the receive counts from every rank's send counts, for callers
// where only the sender knows them).
#include <cstdint>
#include <cstring>

#include "group_util.h"
#include "tessera/comm/communicator.h"
#include "tessera/core/error.h"

namespace tessera::comm {

namespace group_util {
namespace {

// Bytes per row of `t` along dim 0 (a 1-d tensor has rows of one element).
size_t dim0_row_bytes(const Tensor& t) {
  int64_t n = 1;
  for (int d = 1; d < t.ndim(); ++d) n *= t.dim(d);
  return row_bytes(t.dtype(), n);
}

void blocks(const std::string& group, int rank, int size, const char* side, const Tensor& t,
            const std::vector<int64_t>& rows, size_t rb, std::vector<size_t>& off,
            std::vector<size_t>& bytes) {
  if (rows.size() != static_cast<size_t>(size))
    fail(ErrorCode::kInvalidArgument, "group ", group, ": all_to_all_v on rank ", rank, ": ",
         rows.size(), " ", side, " counts for a group of ", size);
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    const int64_t n = rows[static_cast<size_t>(r)];
    if (n < 0)
      fail(ErrorCode::kInvalidArgument, "group ", group, ": all_to_all_v on rank ", rank, ": ",
           side, " count ", n, " for rank ", r, " is negative");
    off.push_back(static_cast<size_t>(total) * rb);
    bytes.push_back(static_cast<size_t>(n) * rb);
    total += n;
  }
  const int64_t have = t.dim(0);
  if (total != have)
    fail(ErrorCode::kInvalidArgument, "group ", group, ": all_to_all_v on rank ", rank, ": ", side,
         " counts add up to ", total, " rows, the tensor is ", t.str());
}

}  // namespace

AllToAllLayout all_to_all_layout(const std::string& group, int rank, int size, const Tensor& in,
                                 const std::vector<int64_t>& send_rows, const Tensor& out,
                                 const std::vector<int64_t>& recv_rows) {
  if (!in.defined() || !out.defined() || !in.is_contiguous() || !out.is_contiguous())
    fail(ErrorCode::kInvalidArgument, "group ", group, ": all_to_all_v on rank ", rank,
         ": needs contiguous tensors, got ", in.defined() ? in.str() : "undefined", " and ",
         out.defined() ? out.str() : "undefined");
  bool same_rows = in.dtype() == out.dtype() && in.ndim() == out.ndim() && in.ndim() >= 1;
  for (int d = 1; same_rows && d < in.ndim(); ++d) same_rows = in.dim(d) == out.dim(d);
  if (!same_rows)
    fail(ErrorCode::kInvalidArgument, "group ", group, ": all_to_all_v on rank ", rank, ": in ",
         in.str(), " and out ", out.str(), " differ in dtype or row shape");
  const size_t rb = dim0_row_bytes(in);
  AllToAllLayout l;
  blocks(group, rank, size, "send", in, send_rows, rb, l.send_off, l.send_bytes);
  blocks(group, rank, size, "recv", out, recv_rows, rb, l.recv_off, l.recv_bytes);
  if (l.send_bytes[static_cast<size_t>(rank)] != l.recv_bytes[static_cast<size_t>(rank)])
    fail(ErrorCode::kInvalidArgument, "group ", group, ": all_to_all_v on rank ", rank,
         ": sends itself ", send_rows[static_cast<size_t>(rank)], " rows but expects ",
         recv_rows[static_cast<size_t>(rank)]);
  return l;
}

void copy_own_block(const AllToAllLayout& l, int rank, const Tensor& in, Tensor& out) {
  const auto me = static_cast<size_t>(rank);
  if (l.send_bytes[me] > 0)
    std::memmove(static_cast<uint8_t*>(out.data()) + l.recv_off[me],
                 static_cast<const uint8_t*>(in.data()) + l.send_off[me], l.send_bytes[me]);
}

}  // namespace group_util

std::vector<int64_t> exchange_counts(Communicator& c, const std::vector<int64_t>& send_rows) {
  const int n = c.size();
  if (send_rows.size() != static_cast<size_t>(n))
    fail(ErrorCode::kInvalidArgument, "group ", c.name(), ": exchange_counts on rank ", c.rank(),
         ": ", send_rows.size(), " counts for a group of ", n);
  Tensor mine = Tensor::empty({n}, DType::kI32);
  for (int r = 0; r < n; ++r) {
    const int64_t v = send_rows[static_cast<size_t>(r)];
    if (v < 0 || v > INT32_MAX)
      fail(ErrorCode::kInvalidArgument, "group ", c.name(), ": exchange_counts on rank ", c.rank(),
           ": count ", v, " for rank ", r, " is out of range");
    mine.data_as<int32_t>()[r] = static_cast<int32_t>(v);
  }
  Tensor all = Tensor::empty({n, n}, DType::kI32);
  c.all_gather(mine, all);
  std::vector<int64_t> recv(static_cast<size_t>(n));
  // Row r is what rank r sends to each rank; this rank receives column rank().
  for (int r = 0; r < n; ++r)
    recv[static_cast<size_t>(r)] = all.data_as<int32_t>()[r * n + c.rank()];
  return recv;
}

}  // namespace tessera::comm
