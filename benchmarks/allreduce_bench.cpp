// All-reduce latency between 2 processes on this node: Gloo (TCP loopback) against the
// shared-memory engine (make_cpu_communicator), side by side in one run, for 1 KB .. 1 MB of F32.
// Beside each all-reduce, the pair that replaces it under sequence parallelism (model::ShardSpec::
// sequence_parallel): a reduce-scatter of the same buffer and an all-gather of the 1/W block
// back, timed as one op. Each rank is pinned to its own core (rank r on CPU r mod the online
// count) before its communicators exist, so Gloo's event-loop thread shares that core; --no-pin
// leaves every thread to the scheduler, as `tessera serve` does (Gloo's p50 at 64 KiB and above
// is several times lower unpinned on a 2-core VM: benchmarks/RESULTS.md). Rank 0 times every op
// separately and reports p50/p99 in microseconds, with the CPU model from /proc/cpuinfo.
//
//   allreduce_bench [--iters N] [--ranks W] [--no-pin] [--json]
//
// Ownership: the parent runs the rendezvous store and forks the ranks (tests/comm/multiproc.h);
// all state is per process.
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../tests/comm/multiproc.h"
#include "tessera/comm/groups.h"

namespace {

using namespace tessera;
using Clock = std::chrono::steady_clock;

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

struct Row {
  std::string engine, op;
  size_t bytes;
  double p50_us, p99_us;
  int iters;
};

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

std::string run_rank(int port, int rank, int ranks, int iters, bool pin) {
  cpu_set_t allowed, set;  // rank r on the r-th CPU this process may use
  CPU_ZERO(&set);
  std::vector<int> ids;
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) ids.push_back(c);
  if (pin && !ids.empty()) {
    CPU_SET(ids[static_cast<size_t>(rank) % ids.size()], &set);
    ::sched_setaffinity(0, sizeof(set), &set);
  }
  comm::StoreClient store({.host = "127.0.0.1", .port = port});
  auto make = [&](const std::string& name, bool shm) {
    return comm::make_cpu_communicator({.name = name,
                                        .rank = rank,
                                        .size = ranks,
                                        .timeout_seconds = 60.0,
                                        .store = &store,
                                        .intra_node_shm = shm});
  };
  auto gloo = make("bench-gloo", false);
  auto shm = make("bench-shm", true);
  std::ostringstream os;
  for (size_t bytes :
       {size_t{1} << 10, size_t{4} << 10, size_t{8} << 10, size_t{64} << 10, size_t{1} << 20}) {
    const int n = bytes >= (size_t{1} << 20) ? std::max(50, iters / 20) : iters;
    // Whole blocks for the reduce-scatter: the buffer rounded up to W equal blocks.
    const auto per = static_cast<int64_t>((bytes / sizeof(float) + ranks - 1) / ranks);
    for (comm::Communicator* c : {gloo.get(), shm.get()}) {
      Tensor t = Tensor::zeros({per * ranks}, DType::kF32),
             block = Tensor::zeros({per}, DType::kF32);
      std::fill_n(t.data_as<float>(), t.numel(), 1e-3f);
      for (const std::string op : {"all_reduce", "rs+ag"}) {
        auto once = [&] {
          if (op == "all_reduce") {
            c->all_reduce_sum(t);
          } else {
            c->reduce_scatter_sum(t, block);
            c->all_gather(block, t);
          }
        };
        for (int i = 0; i < n / 10 + 10; ++i) once();  // warm up
        c->barrier();
        std::vector<double> us(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) {
          const auto t0 = Clock::now();
          once();
          us[static_cast<size_t>(i)] =
              std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
        }
        os << c->engine() << ' ' << op << ' ' << bytes << ' ' << pct(us, 0.5) << ' '
           << pct(us, 0.99) << ' ' << n << '\n';
      }
    }
  }
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 5000, ranks = 2;
  bool json = false, pin = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json")
      json = true;
    else if (a == "--no-pin")
      pin = false;
    else if (a == "--iters" && i + 1 < argc)
      iters = std::atoi(argv[++i]);
    else if (a == "--ranks" && i + 1 < argc)
      ranks = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--iters N] [--ranks W] [--no-pin] [--json]\n", argv[0]);
      return 2;
    }
  }
  comm::StoreServer server(comm::StoreServerParams{});
  auto out = comm::testing::run_ranks(
      ranks, [&](int r) { return run_rank(server.port(), r, ranks, iters, pin); }, 600.0);
  for (const auto& o : out)
    if (!o.ok) {
      std::fprintf(stderr, "a rank failed: %s\n", comm::testing::describe(o).c_str());
      return 1;
    }
  std::vector<Row> rows;
  std::istringstream is(out[0].payload);
  Row r;
  while (is >> r.engine >> r.op >> r.bytes >> r.p50_us >> r.p99_us >> r.iters) rows.push_back(r);
  const std::string cpu = cpu_model();
  const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (json) {
    std::printf("{\"cpu\": \"%s\", \"cores\": %ld, \"ranks\": %d, \"pinned\": %s, \"results\": [",
                cpu.c_str(), cores, ranks, pin ? "true" : "false");
    for (size_t i = 0; i < rows.size(); ++i)
      std::printf(
          "%s{\"engine\": \"%s\", \"op\": \"%s\", \"bytes\": %zu, \"iters\": %d, "
          "\"p50_us\": %.2f, \"p99_us\": %.2f}",
          i ? ", " : "", rows[i].engine.c_str(), rows[i].op.c_str(), rows[i].bytes, rows[i].iters,
          rows[i].p50_us, rows[i].p99_us);
    std::printf("]}\n");
    return 0;
  }
  std::printf(
      "all_reduce_sum F32 (AR) and reduce_scatter_sum + all_gather (RS+AG), %d processes, %s; "
      "CPU: %s (%ld online)\n",
      ranks, pin ? "one core each" : "unpinned", cpu.c_str(), cores);
  std::printf("%10s  %10s %10s %10s  %10s %10s %10s  %8s\n", "bytes", "gloo AR", "p99",
              "gloo RS+AG", "shm AR", "p99", "shm RS+AG", "AR gloo/shm");
  // Rows come per size as gloo AR, gloo RS+AG, shm AR, shm RS+AG (p50 us unless marked p99).
  for (size_t i = 0; i + 3 < rows.size(); i += 4)
    std::printf("%10zu  %10.1f %10.1f %10.1f  %10.1f %10.1f %10.1f  %8.1f\n", rows[i].bytes,
                rows[i].p50_us, rows[i].p99_us, rows[i + 1].p50_us, rows[i + 2].p50_us,
                rows[i + 2].p99_us, rows[i + 3].p50_us, rows[i].p50_us / rows[i + 2].p50_us);
  return 0;
}
