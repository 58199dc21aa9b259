// main() for the benchmarks that run the CPU integer kernels: Google Benchmark's, plus
// --int8-isa=NAME (auto, amx, avx512vnni, avxvnni, avx2, scalar; ops::cpu::set_int8_isa), so the
// paths a CPU offers can be timed against each other on the same machine in one session, and
// --activations=int8|fp32 (ops::cpu::set_activations: the integer path or the exact one). Include
// once, in place of BENCHMARK_MAIN().
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <exception>
#include <string_view>
#include <vector>

#include "tessera/ops/ops.h"

int main(int argc, char** argv) {
  std::vector<char*> rest;
  constexpr std::string_view kFlag = "--int8-isa=", kActs = "--activations=";
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    try {
      if (a.starts_with(kFlag))
        tessera::ops::cpu::set_int8_isa(a.substr(kFlag.size()));
      else if (a.starts_with(kActs))
        tessera::ops::cpu::set_activations(
            tessera::ops::cpu::parse_activations(a.substr(kActs.size())));
      else
        rest.push_back(argv[i]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 2;
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
  benchmark::AddCustomContext("int8_isa", tessera::ops::cpu::int8_isa());
  benchmark::AddCustomContext(
      "activations", tessera::ops::cpu::activations_name(tessera::ops::cpu::activations()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
