// What the engine sends to the workers each step and what comes back: only what changed (new
// sequences with their sampling parameters, finished ids) plus the step's chunks. Workers keep
// per-sequence state (samplers) between steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tessera/sampling/sampler.h"

namespace tessera::protocol {

struct NewSequence {
  uint64_t seq_id = 0;
  sampling::SamplingParams sampling;
  std::vector<int32_t> prompt;  // for the repetition penalty
  int32_t attention_rank = 0;   // data-parallel expert attention: the EP rank that holds it
};

struct ExecuteChunk {
  uint64_t seq_id = 0;
  std::vector<int32_t> tokens;       // fed this step
  int32_t start_pos = 0;             // position of tokens[0]
  std::vector<int32_t> block_table;  // all blocks of the sequence
  bool sample = false;               // sample the next token after the last fed one
  // Data-parallel expert attention: the EP rank whose KV blocks block_table names (the scheduler
  // picks it when the sequence is first admitted and keeps it); 0 otherwise.
  int32_t attention_rank = 0;
};

struct ExecutePlan {
  std::vector<NewSequence> new_sequences;
  std::vector<uint64_t> finished;  // drop their per-sequence state (after this step)
  std::vector<ExecuteChunk> chunks;
};

struct SampledToken {
  uint64_t seq_id = 0;
  sampling::SampleResult result;
};

// Tokens routed to one expert of one (global) layer in a step (top-k choices: a token counts
// once for each of its k experts). A rank reports the experts it holds, so disjoint expert sets
// (expert parallelism) and pipeline stages add up without double counting.
struct ExpertTokens {
  int32_t layer = 0;
  int32_t expert = 0;
  uint32_t tokens = 0;
};

// Bytes one rank's communicator of one group kind ("tp", "ep", "pp") put on the wire for one op
// during a step (comm::CountingCommunicator's conventions: exact for all_to_all_v and send, as
// a ring sends them for the collectives).
struct CommBytes {
  std::string group;
  std::string op;
  uint64_t calls = 0;
  uint64_t bytes = 0;
};

struct ExecuteResult {
  std::vector<SampledToken> sampled;        // one per chunk with sample == true, in chunk order
  std::vector<ExpertTokens> expert_tokens;  // MoE models: non-zero counts only
  std::vector<CommBytes> comm_bytes;        // ops with calls in this step only
};

}  // namespace tessera::protocol
